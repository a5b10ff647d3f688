"""matmul and linear with torch's semantics (1-D operands, batch broadcasting)."""
from __future__ import annotations

from functools import reduce
from typing import Any


from netdef.arrays import to_numpy
from netdef import network, quantize
from netdef.functional._core import cast, constant, out, to_tensor, trt
from netdef.functional.elementwise import add, broadcast_rank, mul, promote_types
from netdef.tensor import Tensor


def _matmul(a: Tensor, b: Tensor, transpose_b: bool, op: str) -> Tensor:
    """One matrix-multiply layer; a 1-D operand is a VECTOR, so no reshapes are needed.

    TensorRT wants the batch dims of both operands at equal rank, a vector counting one less.
    """
    net = network.current()
    if a.ndim == 0 or b.ndim == 0:
        net.fail(f"{op}: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    M = trt().MatrixOperation
    op_a = M.VECTOR if a.ndim == 1 else M.NONE
    op_b = M.VECTOR if b.ndim == 1 else (M.TRANSPOSE if transpose_b else M.NONE)
    batch = max(a.ndim - 2 if a.ndim > 1 else 0, b.ndim - 2 if b.ndim > 1 else 0)
    if a.ndim > 1 or b.ndim > 1:
        a = broadcast_rank(a, batch + (1 if a.ndim == 1 else 2))
        b = broadcast_rank(b, batch + (1 if b.ndim == 1 else 2))
    return out(net.network.add_matrix_multiply(a.trt, op_a, b.trt, op_b), op)


def matmul(input: Any, other: Any) -> Tensor:
    a, b = (to_tensor(v) for v in (input, other))
    dtype = reduce(promote_types, (a.dtype, b.dtype))
    return _matmul(cast(a, dtype), cast(b, dtype), False, "matmul")


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """torch.bmm: (b, n, m) @ (b, m, p) without broadcasting."""
    if input.ndim != 3 or mat2.ndim != 3:
        network.current().fail(f"bmm needs two 3-D tensors, got shapes {input.shape} and {mat2.shape}")
    return matmul(input, mat2)


def baddbmm(input: Any, batch1: Tensor, batch2: Tensor, *, beta: float = 1, alpha: float = 1) -> Tensor:
    """torch.baddbmm: beta * input + alpha * (batch1 @ batch2); beta=0 ignores input, as in torch."""
    y = bmm(batch1, batch2)
    if alpha != 1:
        y = mul(y, alpha)
    if beta == 0:
        return y
    return add(y, input if beta == 1 else mul(input, beta))


def einsum(equation: str, *operands: Any) -> Tensor:
    """torch.einsum over TensorRT's einsum layer (explicit or implicit output, no ellipsis)."""
    net = network.current()
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if "..." in equation:
        net.fail(f"einsum: TensorRT's einsum layer has no ellipsis ('...'); write the dimensions out in {equation!r}")
    tensors = [to_tensor(v) for v in operands]
    dtype = reduce(promote_types, [t.dtype for t in tensors])
    layer = net.network.add_einsum([cast(t, dtype).trt for t in tensors], equation.replace(" ", ""))
    return out(layer, "einsum")


def linear(input: Tensor, weight: Any, bias: Any = None) -> Tensor:
    """input @ weight.T + bias; constant weights are stored in the input's dtype.

    The bias add, when present, is the last layer, so a module's name lands on it. In a
    quantized module (netdef.quantize) input and constant weight pass through Q/DQ layers.
    """
    batch = (1,) * max(input.ndim - 2, 0)
    if isinstance(weight, Tensor):
        w = cast(weight, input.dtype)
    else:
        arr = to_numpy(weight)
        arr = arr.reshape(batch + arr.shape)
        input, w = quantize.operands(input, arr, axis=len(batch))
        if w is None:
            w = constant(arr, input.dtype, op="weight")
    y = _matmul(input, w, True, "matmul")
    if bias is None:
        return y
    if not isinstance(bias, Tensor):
        arr = to_numpy(bias)
        bias = constant(arr.reshape((1,) * (y.ndim - 1) + arr.shape), input.dtype, op="bias")
    return add(y, bias)


__all__ = ["matmul", "bmm", "baddbmm", "einsum", "linear"]
