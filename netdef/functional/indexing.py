"""Indexing by tensors: gather, index_select, topk/argmax, arange and nonzero, with torch's signatures.

These are the building blocks of in-engine post-processing (netdef.ops): picking the boxes
NMS kept, the best class of each anchor, or row numbers of a data-dependent result. Lengths
may be dynamic (a size from `x.size(d)` or a data-dependent dimension such as NMS's output).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import dtypes, network
from netdef.functional._core import axis_or_fail, cast, out, to_tensor, trt
from netdef.tensor import Tensor

_INT = (int, np.integer)


def _indices(index: Any, op: str) -> Tensor:
    index = to_tensor(index)
    if dtypes.is_floating(index.dtype) or index.dtype == "bool":
        network.current().fail(f"{op} indices must be an integer tensor, got {index.dtype}")
    return index


def gather(input: Tensor, dim: int, index: Any) -> Tensor:
    """torch.gather: out[i][j] = input[index[i][j]][j] along `dim` (TensorRT GatherMode.ELEMENT)."""
    net = network.current()
    index = _indices(index, "gather")
    if index.ndim != input.ndim:
        net.fail(f"gather: index (shape {index.shape}) must have the rank of input (shape {input.shape})")
    layer = net.network.add_gather_v2(input.trt, index.trt, trt().GatherMode.ELEMENT)
    layer.axis = axis_or_fail(dim, input.ndim, "gather")
    return out(layer, "gather")


def index_select(input: Tensor, dim: int, index: Any) -> Tensor:
    """torch.index_select: the slices of `input` along `dim` at the 1-D `index`."""
    net = network.current()
    index = _indices(index, "index_select")
    if index.ndim != 1:
        net.fail(f"index_select: index must be 1-D, got shape {index.shape}")
    axis = axis_or_fail(dim, input.ndim, "index_select")
    return out(net.network.add_gather(input.trt, index.trt, axis), "index_select")


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> tuple[Tensor, Tensor]:
    """torch.topk: (values, int64 indices), sorted. TensorRT's TopK takes k <= 3840 (k is static here)."""
    net = network.current()
    if not sorted:
        net.fail("topk(sorted=False) is not supported: TensorRT's TopK always returns sorted values")
    if not isinstance(k, _INT) or k < 1:
        net.fail(f"topk: k must be a positive int, got {k!r}")
    axis = axis_or_fail(dim, input.ndim, "topk")
    if input.shape[axis] >= 0 and k > input.shape[axis]:
        net.fail(f"topk: k={k} is larger than dimension {axis} of shape {input.shape}")
    op = trt().TopKOperation.MAX if largest else trt().TopKOperation.MIN
    layer = net.network.add_topk(input.trt, op, int(k), 1 << axis)
    net.add(layer, "topk")
    values, indices = Tensor(layer.get_output(0)), Tensor(layer.get_output(1))
    return values, cast(indices, "int64")


def argmax(input: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """torch.argmax along `dim` (the first index of the maximum, as torch returns)."""
    _, idx = topk(input, 1, dim)
    return idx if keepdim else _squeeze(idx, axis_or_fail(dim, input.ndim, "argmax"))


def _squeeze(x: Tensor, axis: int) -> Tensor:
    from netdef.functional.shape import squeeze

    return squeeze(x, axis)


def nonzero(input: Tensor) -> Tensor:
    """torch.nonzero: int64 [count, rank] coordinates of the non-zero elements (a data-dependent count).

    TensorRT's NonZero layer gives them as [rank, count]; a transpose makes torch's layout.
    """
    net = network.current()
    coords = out(net.network.add_non_zero(input.trt), "nonzero")  # int32: the overload every TensorRT 10 has
    t = net.network.add_shuffle(coords.trt)
    t.first_transpose = (1, 0)
    return cast(out(t, "nonzero_t"), "int64")


__all__ = ["gather", "index_select", "topk", "argmax", "nonzero"]
