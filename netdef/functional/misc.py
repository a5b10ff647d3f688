"""where, clamp, pad and embedding, with torch's signatures."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef.arrays import to_numpy
from netdef import dtypes, network
from netdef.functional._core import cast, constant, dims_of, out, shape_tensor, to_tensor, trt
from netdef.functional.elementwise import add, broadcast_rank, maximum, minimum, operands
from netdef.tensor import Tensor

_PAD_MODES = {"constant": "FILL", "reflect": "REFLECT", "replicate": "CLAMP", "circular": "WRAP"}


def where(condition: Tensor, input: Any, other: Any) -> Tensor:
    cond = cast(to_tensor(condition), "bool")
    a, b = operands(input, other)
    n = max(cond.ndim, a.ndim)
    cond, a, b = (broadcast_rank(t, n) for t in (cond, a, b))
    return out(network.current().network.add_select(cond.trt, a.trt, b.trt), "where")


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """torch.clamp: bounds are scalars or tensors (broadcast); min > max gives max, as in torch."""
    if min is None and max is None:
        network.current().fail("clamp needs at least one of min and max")
    x = input if min is None else maximum(input, min)
    return x if max is None else minimum(x, max)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """torch.nn.functional.pad: (left, right, top, bottom, ...) from the last dim backwards.

    One slice layer over the padded axes, starting before 0 and reading past the end; its
    sample mode supplies the border: FILL (constant), REFLECT, CLAMP (replicate), WRAP (circular).
    Negative pads crop, as in torch.
    """
    net = network.current()
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        net.fail(f"pad needs an even number of values, at most 2 per dimension of the rank-{input.ndim} "
                 f"input, got {tuple(pad)}")
    if mode not in _PAD_MODES:
        net.fail(f"pad mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    if mode != "constant" and value not in (None, 0):
        net.fail(f"pad value is only meaningful with mode='constant', got value={value} with mode={mode!r}")
    axes, starts, sizes = [], [], []
    dims = dims_of(input)
    for i in range(len(pad) // 2):
        axis = input.ndim - 1 - i
        before, after = int(pad[2 * i]), int(pad[2 * i + 1])
        if before == 0 and after == 0:
            continue
        axes.append(axis)
        starts.append(-before)
        sizes.append(dims[axis] + before + after if isinstance(dims[axis], int)
                     else add(shape_tensor([dims[axis]]), before + after))
    if not axes:
        axes, starts, sizes = [input.ndim - 1], [0], [dims[-1]]
    size_tensor = None if all(isinstance(s, int) for s in sizes) else shape_tensor(sizes)
    fill = None
    if mode == "constant":
        fill = constant(np.array(0 if value is None else value), input.dtype, op="pad_value")
    layer = net.network.add_slice(input.trt, tuple(starts), tuple(s if isinstance(s, int) else 0 for s in sizes),
                                  (1,) * len(axes))
    layer.axes = tuple(axes)
    layer.mode = getattr(trt().SampleMode, _PAD_MODES[mode])
    if size_tensor is not None:
        layer.set_input(2, size_tensor.trt)
    if fill is not None:
        layer.set_input(4, fill.trt)
    return out(layer, "pad")


def embedding(input: Tensor, weight: Any, padding_idx: int | None = None, max_norm: float | None = None) -> Tensor:
    """Row lookup (a gather on axis 0). padding_idx only affects training, so it is accepted and unused."""
    net = network.current()
    if max_norm is not None:
        net.fail("embedding max_norm renormalizes the weight in place; renormalize the weights before tracing")
    if dtypes.is_floating(input.dtype) or input.dtype == "bool":
        net.fail(f"embedding indices must be an integer tensor, got {input.dtype}")
    if isinstance(weight, Tensor):
        table = weight
    else:
        arr = to_numpy(weight)
        table = constant(arr, net.dtype if dtypes.is_floating(arr.dtype) else None, op="weight")
    return out(net.network.add_gather(table.trt, input.trt, 0), "embedding")


__all__ = ["where", "clamp", "pad", "embedding"]
