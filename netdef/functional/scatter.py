"""Scatter ops: the layers that replace ONNX Scatter/ScatterND paths parsers have rejected."""
from __future__ import annotations

from typing import Any

from netdef import network
from netdef.functional._core import axis_or_fail, out, to_tensor, trt
from netdef.tensor import Tensor


def scatter(input: Tensor, dim: int, index: Any, src: Any) -> Tensor:
    """torch.scatter: out[index[i][j]][j] = src[i][j] along `dim` (TensorRT ScatterMode.ELEMENT)."""
    index = to_tensor(index)
    src = to_tensor(src, like=input)
    axis = axis_or_fail(dim, input.ndim, "scatter")
    layer = network.current().network.add_scatter(input.trt, index.trt, src.trt, trt().ScatterMode.ELEMENT)
    layer.axis = axis
    return out(layer, "scatter")


def scatter_nd(data: Tensor, indices: Any, updates: Any) -> Tensor:
    """ONNX ScatterND: data[indices[i]] = updates[i] for whole slices (TensorRT ScatterMode.ND).

    indices has shape (..., k) of int32/int64 coordinates into the first k dims of `data`.
    """
    indices = to_tensor(indices)
    updates = to_tensor(updates, like=data)
    layer = network.current().network.add_scatter(data.trt, indices.trt, updates.trt, trt().ScatterMode.ND)
    return out(layer, "scatter_nd")


__all__ = ["scatter", "scatter_nd"]
