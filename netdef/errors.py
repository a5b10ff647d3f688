"""Exceptions that say where: the file, the weight key, or the module path and user line."""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class NetdefError(Exception):
    """Base class of every error netdef raises on purpose."""


class BackendError(NetdefError):
    """No usable TensorRT, or a feature the active backend lacks."""


class WeightsError(NetdefError, ValueError):
    """A weights file or state_dict is malformed or does not fit the model."""


class StateDictError(WeightsError):
    """A state_dict does not fit a module; the message summarizes, the attributes list everything.

    missing_keys / unexpected_keys: every key, in order; mismatched: key -> why it does not fit.
    """

    def __init__(self, message: str, missing_keys: list[str] = (), unexpected_keys: list[str] = (),
                 mismatched: dict[str, str] | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.mismatched = dict(mismatched or {})
        self.source = source


class TraceError(NetdefError):
    """An op could not be added to the network; names the module path and user line."""


class BuildError(NetdefError):
    """TensorRT refused to build the network."""


class RunnerError(NetdefError, ValueError):
    """The reference runner cannot run this network or these inputs."""


class QuantizationError(NetdefError, ValueError):
    """A calibration or quantization config is unusable; names the module, batch or file."""


class EngineError(NetdefError):
    """A plan file is missing, corrupt, or made for another backend or GPU."""


class MissingDependency(NetdefError, ImportError):
    """An optional package (torch, torchvision, scikit-learn, ...) is not installed; says what to
    install (netdef.optional.require). An ImportError too, so `except ImportError` still works."""


def shown(name: object, limit: int = 80) -> str:
    """repr of a key or name for a message, cut to about `limit` characters: a file can hold a
    1 MB key, and an error message must stay one readable line."""
    text = repr(name)
    if len(text) <= limit:
        return text
    size = f"{len(name):,} characters" if isinstance(name, str) else f"{len(text):,} characters as text"
    return f"{text[:limit - 24]}... ({size})"


def user_frame() -> str:
    """'file.py:LINE: source' of the innermost caller outside netdef itself.

    Tripy-style: errors point at the user's line, not at netdef internals.
    """
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(_PKG_DIR + os.sep) and "importlib" not in fname:
            import linecache

            line = linecache.getline(fname, frame.f_lineno).strip()
            rel = os.path.relpath(fname)
            return f"{fname if rel.startswith('..') else rel}:{frame.f_lineno}: {line}"
        frame = frame.f_back
    return "<unknown>"
