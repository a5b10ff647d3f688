"""torch `.pt`/`.pth` files, loaded with `weights_only=True`: never an arbitrary pickle.

torch is imported here only, on demand, so reading .wts or safetensors never needs it.
"""
from __future__ import annotations

import re
from typing import Any

from netdef.errors import WeightsError

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)


def read(path: str) -> Any:
    """The object torch.save stored (a state_dict or a checkpoint dict), tensors on CPU."""
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading .pt/.pth files needs torch (pip install torch); "
                           "safetensors and .wts files load without it") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path!r} not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(exc)
        found = _GLOBAL.search(text)
        if found:
            raise WeightsError(
                f"{path} holds a pickled {found.group(1)}, not a state_dict; netdef loads torch files "
                "with weights_only=True and never unpickles arbitrary objects. Save the weights with "
                "`torch.save(model.state_dict(), path)` instead") from None
        reason = _REASON.search(text)
        if reason:
            detail = reason.group(1).strip()
        else:
            detail = f"{type(exc).__name__}: {text[:200] or 'empty or truncated'}"
        raise WeightsError(f"{path} is not a readable torch file ({detail})") from None
