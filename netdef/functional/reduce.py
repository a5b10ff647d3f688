"""Reductions and softmax over torch-style dims (int, tuple or None; negative allowed)."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import dtypes, network
from netdef.functional._core import axis_or_fail, cast, constant, out, trt
from netdef.functional.elementwise import exp, log, sub
from netdef.tensor import Tensor


def axes_mask(x: Tensor, dim: Any, op: str = "reduce") -> int:
    """TensorRT's axes bitmask for torch's `dim` (None or () = every dim)."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        dims = range(x.ndim)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    mask = 0
    for d in dims:
        mask |= 1 << axis_or_fail(d, x.ndim, op)
    return mask


def _reduce(x: Tensor, op: str, dim: Any, keepdim: bool, name: str, dtype: Any = None) -> Tensor:
    if dtype is not None:
        x = cast(x, dtype)
    mask = axes_mask(x, dim, name)
    layer = network.current().network.add_reduce(x.trt, getattr(trt().ReduceOperation, op), mask, keepdim)
    return out(layer, name)


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    return _reduce(input, "SUM", dim, keepdim, "sum", dtype)


def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    if not dtypes.is_floating(dtype or input.dtype):
        network.current().fail(f"mean needs a floating input (or dtype=), got {input.dtype}")
    return _reduce(input, "AVG", dim, keepdim, "mean", dtype)


def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return _reduce(input, "MAX", dim, keepdim, "amax")


def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return _reduce(input, "MIN", dim, keepdim, "amin")


def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """torch.cumsum: integer and bool inputs accumulate in int64, as in torch."""
    if dtype is None and not dtypes.is_floating(input.dtype):
        dtype = "int64"
    x = input if dtype is None else cast(input, dtype)
    axis = axis_or_fail(dim, x.ndim, "cumsum")
    axis_t = constant(np.array(axis, np.int32), "int32", op="cumsum_axis")
    layer = network.current().network.add_cumulative(x.trt, axis_t.trt, trt().CumulativeOperation.SUM, False, False)
    return out(layer, "cumsum")


def softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    layer = network.current().network.add_softmax(input.trt)
    layer.axes = axes_mask(input, dim, "softmax")
    return out(layer, "softmax")


def log_softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """x - max - log(sum(exp(x - max))): finite where log(softmax(x)) would underflow to -inf."""
    if dtype is not None:
        input = cast(input, dtype)
    shifted = sub(input, amax(input, dim, keepdim=True))
    return sub(shifted, log(sum(exp(shifted), dim, keepdim=True)))


__all__ = ["sum", "mean", "amax", "amin", "cumsum", "softmax", "log_softmax", "axes_mask"]
