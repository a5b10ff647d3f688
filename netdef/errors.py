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
