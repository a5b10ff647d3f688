"""Binary and unary math, with torch broadcasting (TensorRT needs equal ranks)."""
from __future__ import annotations

from typing import Any

from netdef import network
from netdef.functional._core import out, to_tensor, trt
from netdef.tensor import Tensor


def broadcast_rank(x: Tensor, ndim: int) -> Tensor:
    """Prepend size-1 dimensions so `x` has rank `ndim` (torch aligns trailing dims)."""
    if x.ndim >= ndim:
        return x
    net = network.current().network
    layer = net.add_shuffle(x.trt)
    shape = x.shape
    if all(d >= 0 for d in shape):
        layer.reshape_dims = (1,) * (ndim - x.ndim) + tuple(shape)
    else:
        from netdef.functional import _core

        ones = _core.constant(__import__("numpy").ones(ndim - x.ndim, dtype="int64"), op="ones")
        cat = net.add_concatenation([ones.trt, _core.shape_of(x).trt])
        cat.axis = 0
        layer.set_input(1, _core.out(cat, "broadcast_shape").trt)
    return out(layer, "unsqueeze")


def _binary(a: Any, b: Any, op: Any, name: str) -> Tensor:
    like = a if isinstance(a, Tensor) else b
    a, b = to_tensor(a, like), to_tensor(b, like)
    n = max(a.ndim, b.ndim)
    a, b = broadcast_rank(a, n), broadcast_rank(b, n)
    return out(network.current().network.add_elementwise(a.trt, b.trt, op), name)


def add(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(input, other, trt().ElementWiseOperation.SUM, "add")


def sub(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(input, other, trt().ElementWiseOperation.SUB, "sub")


def mul(input: Any, other: Any) -> Tensor:
    return _binary(input, other, trt().ElementWiseOperation.PROD, "mul")


def div(input: Any, other: Any) -> Tensor:
    return _binary(input, other, trt().ElementWiseOperation.DIV, "div")


__all__ = ['add', 'sub', 'mul', 'div', 'broadcast_rank']
