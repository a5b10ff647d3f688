"""Any array-like a user hands netdef (numpy, torch, Parameter, lazy default) as a numpy array.

One conversion for weights and constants everywhere, so bfloat16/float8 survive
(numpy has no such dtypes; ml_dtypes supplies them) and torch is never required.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

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
