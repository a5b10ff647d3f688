"""torch `.pt`/`.pth` files, loaded with `weights_only=True`: never an arbitrary pickle.

torch is imported here only, on demand, so reading .wts or safetensors never needs it.
torch's zip reader does not check the CRC-32 of the records it reads, so a damaged file
can load changed values or a renamed key; netdef checks every record with Python's
zipfile first. Refusals of the weights-only unpickler are reworded: the file holds code
or objects that are not tensors and is not loaded (torch's own text advises turning the
protection off, which netdef never does).
"""
from __future__ import annotations

import re
import zipfile
from typing import Any

from netdef.errors import WeightsError
from netdef.optional import install_hint

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # the PROTO opcode that starts every pickle of protocol 2 and up
_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")
_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)
_REFUSED = "Weights only load failed"


def read(path: str) -> Any:
    """The object torch.save stored (a state_dict or a checkpoint dict), tensors on CPU."""
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading .pt/.pth files needs torch ({install_hint('torch')}); "
                           "safetensors and .wts files load without it") from None
    _check_records(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path!r} not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise _error(path, exc) from None


def _check_records(path: str) -> None:
    """Every record of a zip-format torch file must pass its CRC-32 check (torch does not check)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            if magic[:1] == _PICKLE_PROTO:
                return  # torch's legacy (pre-1.6) format: a pickle stream, torch.load reads it
            if magic != _ZIP_MAGIC:
                what = "the file is empty" if not magic else "it is neither a zip archive nor a pickle"
                raise WeightsError(f"{path} is not a readable torch file ({what})")
            with zipfile.ZipFile(f) as archive:
                names = archive.namelist()
                twice = next((n for n in names if names.count(n) > 1), None) if len(set(names)) < len(names) else None
                bad = None if twice else archive.testzip()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc.strerror or exc}") from None
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile, EOFError, ValueError, zlib.error, ...
        raise WeightsError(f"{path} is not a readable torch file: its zip archive is damaged "
                           f"({type(exc).__name__}: {str(exc)[:160]})") from None
    if twice is not None:
        raise WeightsError(f"{path} is not a readable torch file: its zip archive holds record {twice[:120]!r} "
                           "twice, and readers disagree on which one counts (the file is damaged)")
    if bad is not None:
        raise WeightsError(f"{path} is not a readable torch file: record {bad[:120]!r} fails its CRC-32 "
                           "check, so the file was damaged after torch wrote it")


def _error(path: str, exc: Exception) -> WeightsError:
    text = str(exc)
    if _REFUSED in text:  # torch's weights-only unpickler refused something
        found = _GLOBAL.search(text)
        reason = _REASON.search(text)
        refused = _first_line(reason.group(1)) if reason else "unknown"
        what = (f"a pickled {found.group(1)}" if found
                else f"pickle instructions weights-only loading refuses ({refused})")
        return WeightsError(
            f"{path} contains code or objects that are not tensors ({what}) and will not be loaded: "
            "netdef reads torch files with weights_only=True and never runs pickled code. If the file "
            "is your own checkpoint, save only its tensors: torch.save(model.state_dict(), path)")
    detail = _first_line(text) or "empty or truncated"
    return WeightsError(f"{path} is not a readable torch file ({type(exc).__name__}: {detail})")


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[:limit] + "..."
