"""One vocabulary for dtypes across numpy, TensorRT and torch.

netdef names dtypes with torch's spelling ("float32", "float16", "bfloat16", ...).
numpy has no bfloat16/float8, so `ml_dtypes` supplies them; that lets weights of
every dtype live in plain numpy arrays without importing torch.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from netdef.backend import trt

# name -> (numpy dtype, TensorRT DataType attribute name)
_TABLE: dict[str, tuple[np.dtype, str]] = {
    "float32": (np.dtype(np.float32), "FLOAT"),
    "float16": (np.dtype(np.float16), "HALF"),
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), "BF16"),
    "float8_e4m3fn": (np.dtype(ml_dtypes.float8_e4m3fn), "FP8"),
    "int8": (np.dtype(np.int8), "INT8"),
    "uint8": (np.dtype(np.uint8), "UINT8"),
    "int32": (np.dtype(np.int32), "INT32"),
    "int64": (np.dtype(np.int64), "INT64"),
    "bool": (np.dtype(np.bool_), "BOOL"),
}
_ALIASES = {
    "float": "float32", "fp32": "float32", "half": "float16", "fp16": "float16",
    "bf16": "bfloat16", "fp8": "float8_e4m3fn", "int": "int32", "long": "int64",
    "float64": "float32",  # TensorRT has no float64; weights are narrowed on load
}
FLOATING = ("float32", "float16", "bfloat16", "float8_e4m3fn")


def name(dtype: Any) -> str:
    """Canonical netdef name for a str / numpy / torch / TensorRT dtype."""
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        key = _ALIASES.get(key, key)
        if key in _TABLE:
            return key
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_TABLE)}")
    if type(dtype).__module__.startswith("torch"):
        return name(str(dtype))
    if type(dtype).__module__.startswith("tensorrt"):  # only then is TensorRT needed
        t = trt()
        for key, (_, attr) in _TABLE.items():
            if getattr(t.DataType, attr) == dtype:
                return key
        raise TypeError(f"TensorRT dtype {dtype} has no netdef name")
    try:
        npd = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if npd == np.float64:
        return "float32"
    for key, (n, _) in _TABLE.items():
        if n == npd:
            return key
    raise TypeError(f"numpy dtype {npd} has no TensorRT equivalent")


def to_numpy(dtype: Any) -> np.dtype:
    return _TABLE[name(dtype)][0]


def to_trt(dtype: Any):
    return getattr(trt().DataType, _TABLE[name(dtype)][1])


def is_floating(dtype: Any) -> bool:
    return name(dtype) in FLOATING


def to_torch(dtype: Any):
    import torch

    return getattr(torch, name(dtype))
