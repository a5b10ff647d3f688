"""Any array-like a user hands netdef (numpy, torch, Parameter, lazy default) as a numpy array,
and the values TensorRT holds in a layer's weights as one (`weights_array`).

One conversion for weights and constants everywhere, so bfloat16/float8 survive
(numpy has no such dtypes; ml_dtypes supplies them) and torch is never required.
"""
from __future__ import annotations

import ctypes
from typing import Any

import ml_dtypes
import numpy as np

from netdef import dtypes
from netdef.errors import RunnerError

_ML_DTYPES = {name: np.dtype(getattr(ml_dtypes, name)) for name in
              ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")}


def to_numpy(value: Any) -> np.ndarray:
    """numpy view of an array, torch tensor, netdef Parameter or lazy default value."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        t = value.detach().cpu()
        special = _ML_DTYPES.get(str(t.dtype).removeprefix("torch."))
        if special is not None:  # numpy has no such dtype: reinterpret the bits via ml_dtypes
            import torch

            bits = t.contiguous().view(torch.uint16 if special.itemsize == 2 else torch.uint8).numpy()
            return bits.view(special)
        return t.numpy()
    materialize = getattr(value, "materialize", None)  # netdef.nn.init.Lazy
    if materialize is not None:
        return materialize()
    data = getattr(value, "data", None)  # netdef.nn.Parameter
    if isinstance(data, np.ndarray):
        return data
    return np.asarray(value)


def numpy_to_torch(array: np.ndarray) -> Any:
    """A torch tensor of `array`, sharing memory; bfloat16/float8 bits reinterpreted exactly."""
    import torch

    array = np.require(array, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    special = next((name for name, dt in _ML_DTYPES.items() if dt == array.dtype), None)
    if special is not None:  # torch has the same formats under the same names
        bits = torch.from_numpy(array.view(np.uint16 if array.dtype.itemsize == 2 else np.uint8))
        return bits.view(getattr(torch, special))
    return torch.from_numpy(array)


def weights_array(w: Any) -> np.ndarray | None:
    """A copy of the values a Weights (or the ndarray the bindings return) holds; None if empty."""
    if isinstance(w, np.ndarray):
        return w.copy() if w.size else None
    if w is None or w.size == 0:
        return None
    arr = w.numpy()
    if isinstance(arr, np.ndarray):
        return arr.copy()
    # bfloat16/fp8: the bindings cannot make an ndarray. pybind11 stores a pointer to the C++
    # nvinfer1::Weights {DataType type; void const* values; int64_t count;} right after the
    # PyObject header; check type and count against the Python view before trusting it.
    npd = dtypes.to_numpy(dtypes.name(w.dtype))
    ptr = ctypes.c_void_p.from_address(id(w) + object.__basicsize__).value
    if not ptr or ctypes.c_int32.from_address(ptr).value != int(w.dtype) \
            or ctypes.c_int64.from_address(ptr + 16).value != w.size:
        raise RunnerError(f"cannot read {w.dtype} weights through the TensorRT bindings")
    values = ctypes.c_void_p.from_address(ptr + 8).value
    buf = (ctypes.c_char * (w.size * npd.itemsize)).from_address(values)
    return np.frombuffer(buf, dtype=npd).copy()
