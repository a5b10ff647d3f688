"""where, masked_fill, clamp, pad, embedding, triu/tril and dropout, with torch's signatures."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef.arrays import to_numpy
from netdef import dtypes, network
from netdef.functional._core import cast, constant, dims_of, out, shape_tensor, to_tensor, trt
from netdef.functional.creation import arange
from netdef.functional.elementwise import add, broadcast_rank, ge, le, maximum, minimum, operands, sub
from netdef.functional.shape import unsqueeze
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


def masked_fill(input: Tensor, mask: Any, value: Any) -> Tensor:
    """torch.masked_fill: `value` where the bool `mask` (broadcast) is True; value takes input's dtype."""
    if isinstance(value, Tensor):
        value = cast(value, input.dtype)
    elif not isinstance(value, (bool, int, float, np.number)):
        network.current().fail(f"masked_fill value must be a number or a 0-d Tensor, got {type(value).__name__}")
    else:
        value = constant(np.array(value), input.dtype, op="fill_value")
    return where(mask, value, input)


def _band(input: Tensor, diagonal: int, upper: bool, op: str) -> Tensor:
    """Keep elements with col - row >= diagonal (triu) or <= diagonal (tril) of the last two dims."""
    net = network.current()
    if input.ndim < 2:
        net.fail(f"{op} needs a tensor of at least 2 dimensions, got shape {input.shape}")
    rows, cols = input.shape[-2:]
    if rows >= 0 and cols >= 0:  # static: one constant mask
        offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]
        keep = constant(offset >= diagonal if upper else offset <= diagonal, op=f"{op}_mask")
    else:
        offset = sub(unsqueeze(arange(input.size(-1)), 0), unsqueeze(arange(input.size(-2)), 1))
        keep = ge(offset, diagonal) if upper else le(offset, diagonal)
    return where(keep, input, constant(np.array(0), input.dtype, op="zero"))


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    return _band(input, diagonal, True, "triu")


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    return _band(input, diagonal, False, "tril")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Identity at inference. torch's F.dropout defaults to training=True, where it zeroes elements at
    random; a port passes training=self.training (False), as torch's modules do."""
    if not 0 <= p <= 1:
        network.current().fail(f"dropout probability has to be between 0 and 1, but got {p}")
    if training and p > 0:
        network.current().fail(f"dropout(p={p}, training=True) zeroes elements at random; netdef builds inference "
                               "networks: pass training=False (module.training) as torch's modules do")
    return input


def embedding(input: Tensor, weight: Any, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
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


__all__ = ["where", "masked_fill", "clamp", "pad", "embedding", "triu", "tril", "dropout"]
