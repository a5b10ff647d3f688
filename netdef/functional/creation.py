"""Tensor creation: arange, with torch's signature.

Static bounds give one constant layer; a bound that is a shape tensor (`x.size(1)` of a
dynamic dimension) gives a LINSPACE fill layer whose length is read at run time, so masks
and position indices follow dynamic sequence lengths.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import dtypes, network
from netdef.functional._core import cast, constant, out, shape_tensor, trt
from netdef.functional.elementwise import add, floor_divide, sub
from netdef.tensor import Tensor

_NUMBER = (int, float, np.integer, np.floating)


def arange(start: Any = 0, end: Any = None, step: Any = 1, *, dtype: Any = None) -> Tensor:
    """torch.arange(end) / arange(start, end, step): int64 for integer bounds, else float32.

    `end` (or `start`) may be a 0-d int shape tensor such as `x.size(1)`; `step` is a number.
    """
    net = network.current()
    if end is None:
        start, end = 0, start
    if not isinstance(step, _NUMBER) or step == 0:
        net.fail(f"arange step must be a nonzero number, got {step!r}")
    for v in (start, end):
        if not (isinstance(v, _NUMBER) or (isinstance(v, Tensor) and v.ndim == 0 and not dtypes.is_floating(v.dtype))):
            net.fail(f"arange bounds are numbers or 0-d int shape tensors such as x.size(1), got {v!r}")
    floating = any(isinstance(v, (float, np.floating)) for v in (start, end, step))
    dtype = dtypes.name(dtype) if dtype is not None else ("float32" if floating else "int64")
    if not isinstance(start, Tensor) and not isinstance(end, Tensor):
        return constant(np.arange(start, end, step, dtype=dtypes.to_numpy(dtype)), dtype, op="arange")
    if floating:
        net.fail("arange with a run-time bound takes integer start and step")
    count = end if not isinstance(start, Tensor) and start == 0 else sub(end, start)
    if step != 1:
        count = floor_divide(add(count, step - 1 if step > 0 else step + 1), step)
    length = shape_tensor([cast(count, "int64")])
    layer = net.network.add_fill((0,), trt().FillOperation.LINSPACE, dtypes.to_trt(dtype))
    layer.set_input(0, length.trt)
    layer.set_input(1, _scalar_tensor(start, dtype).trt)
    layer.set_input(2, constant(np.array([step], dtypes.to_numpy(dtype)), dtype, op="arange_step").trt)
    return out(layer, "arange")


def _scalar_tensor(v: Any, dtype: str) -> Tensor:
    if isinstance(v, Tensor):
        return cast(v, dtype)
    return constant(np.array(v, dtypes.to_numpy(dtype)), dtype, op="arange_start")


__all__ = ["arange"]
