"""Binary and unary math, with torch broadcasting and type promotion (TensorRT needs equal
ranks and dtypes, so operands are unsqueezed and cast first)."""
from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np

from netdef import dtypes, network
from netdef.functional._core import cast, constant, dims_of, out, reshape_to, to_tensor, trt
from netdef.tensor import Tensor

_SCALARS = (bool, int, float, np.number)


def broadcast_rank(x: Tensor, ndim: int) -> Tensor:
    """Prepend size-1 dimensions so `x` has rank `ndim` (torch aligns trailing dims)."""
    if x.ndim >= ndim:
        return x
    return reshape_to(x, [1] * (ndim - x.ndim) + dims_of(x), "unsqueeze")


def promote_types(a: str, b: str) -> str:
    """torch.promote_types for the dtypes TensorRT has: bool < integers < floating, wider wins."""
    if a == b:
        return a
    rank = {"bool": 0, "uint8": 1, "int8": 1, "int32": 1, "int64": 1}
    ka, kb = rank.get(a, 2), rank.get(b, 2)
    if ka != kb:
        return a if ka > kb else b
    if {a, b} == {"float16", "bfloat16"}:
        return "float32"
    return a if dtypes.to_numpy(a).itemsize >= dtypes.to_numpy(b).itemsize else b


def operands(*values: Any) -> list[Tensor]:
    """Tensors of one dtype and one rank for an elementwise layer.

    Python scalars take the tensors' dtype (torch's rule), except that a float scalar makes
    an integer operation floating, as in torch. Scalars become constants of shape (1,)*rank.
    Floating arrays and Parameters are stored in the floating dtype of the Tensors they meet.
    """
    net = network.current()
    if not any(isinstance(v, Tensor) for v in values):
        net.fail(f"an elementwise op needs at least one Tensor operand, got {values!r}")
    dtype = reduce(promote_types, [v.dtype for v in values if isinstance(v, Tensor)])
    like = dtype if dtypes.is_floating(dtype) else None
    values = [v if isinstance(v, (Tensor,) + _SCALARS) else to_tensor(v, dtype=like) for v in values]
    present = [v for v in values if isinstance(v, Tensor)]
    dtype = reduce(promote_types, [t.dtype for t in present])
    if not dtypes.is_floating(dtype) and any(isinstance(v, (float, np.floating)) for v in values):
        dtype = "float32"
    elif dtype == "bool" and any(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        dtype = "int64"
    ndim = max(t.ndim for t in present)
    result = []
    for v in values:
        t = v if isinstance(v, Tensor) else constant(np.full((1,) * ndim, v), dtype)
        result.append(broadcast_rank(cast(t, dtype), ndim))
    return result


def _binary(a: Any, b: Any, op: str, name: str) -> Tensor:
    a, b = operands(a, b)
    return out(network.current().network.add_elementwise(a.trt, b.trt, getattr(trt().ElementWiseOperation, op)), name)


def _unary(x: Tensor, op: str, name: str, floating: bool = False) -> Tensor:
    """One unary layer; `floating` ops (sqrt, exp, ...) compute integer inputs in float32 as torch does."""
    if floating and not dtypes.is_floating(x.dtype):
        x = cast(x, "float32")
    return out(network.current().network.add_unary(x.trt, getattr(trt().UnaryOperation, op)), name)


def add(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(input, other, "SUM", "add")


def sub(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(input, other, "SUB", "sub")


def mul(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "PROD", "mul")


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """torch.div: true division (integers are divided in float32), or 'floor' / 'trunc' rounding."""
    if rounding_mode == "floor":
        return _binary(input, other, "FLOOR_DIV", "floor_divide")
    if rounding_mode not in (None, "trunc"):
        network.current().fail(f"div rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    a, b = operands(input, other)
    int_dtype = None if dtypes.is_floating(a.dtype) else a.dtype
    if int_dtype is not None:
        a, b = cast(a, "float32"), cast(b, "float32")
    q = _binary(a, b, "DIV", "div")
    if rounding_mode is None:
        return q
    # trunc(q) = sign(q) * floor(|q|); TensorRT has no trunc
    q = mul(_unary(q, "SIGN", "sign"), _unary(_unary(q, "ABS", "abs"), "FLOOR", "floor"))
    return q if int_dtype is None else cast(q, int_dtype)


def floor_divide(input: Any, other: Any) -> Tensor:
    return div(input, other, rounding_mode="floor")


def pow(input: Any, exponent: Any) -> Tensor:
    return _binary(input, exponent, "POW", "pow")


def maximum(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "MAX", "maximum")


def minimum(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "MIN", "minimum")


def eq(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "EQUAL", "eq")


def ne(input: Any, other: Any) -> Tensor:
    return _unary(_binary(input, other, "EQUAL", "eq"), "NOT", "ne")


def lt(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "LESS", "lt")


def gt(input: Any, other: Any) -> Tensor:
    return _binary(input, other, "GREATER", "gt")


def le(input: Any, other: Any) -> Tensor:
    # OR(<, ==) rather than NOT(>): NaN compares False, as in torch
    a, b = operands(input, other)
    return _binary(_binary(a, b, "LESS", "lt"), _binary(a, b, "EQUAL", "eq"), "OR", "le")


def ge(input: Any, other: Any) -> Tensor:
    a, b = operands(input, other)
    return _binary(_binary(a, b, "GREATER", "gt"), _binary(a, b, "EQUAL", "eq"), "OR", "ge")


def _as_bool(x: Any) -> Any:
    return cast(x, "bool") if isinstance(x, Tensor) else bool(x)


def logical_and(input: Any, other: Any) -> Tensor:
    return _binary(_as_bool(input), _as_bool(other), "AND", "logical_and")


def logical_or(input: Any, other: Any) -> Tensor:
    return _binary(_as_bool(input), _as_bool(other), "OR", "logical_or")


def logical_not(input: Tensor) -> Tensor:
    return _unary(cast(input, "bool"), "NOT", "logical_not")


def neg(input: Tensor) -> Tensor:
    return _unary(input, "NEG", "neg")


def abs(input: Tensor) -> Tensor:
    return _unary(input, "ABS", "abs")


def sqrt(input: Tensor) -> Tensor:
    return _unary(input, "SQRT", "sqrt", floating=True)


def rsqrt(input: Tensor) -> Tensor:
    return _unary(sqrt(input), "RECIP", "rsqrt")


def reciprocal(input: Tensor) -> Tensor:
    return _unary(input, "RECIP", "reciprocal", floating=True)


def exp(input: Tensor) -> Tensor:
    return _unary(input, "EXP", "exp", floating=True)


def log(input: Tensor) -> Tensor:
    return _unary(input, "LOG", "log", floating=True)


def erf(input: Tensor) -> Tensor:
    return _unary(input, "ERF", "erf", floating=True)


def sin(input: Tensor) -> Tensor:
    return _unary(input, "SIN", "sin", floating=True)


def cos(input: Tensor) -> Tensor:
    return _unary(input, "COS", "cos", floating=True)


def floor(input: Tensor) -> Tensor:
    return _unary(input, "FLOOR", "floor")


def ceil(input: Tensor) -> Tensor:
    return _unary(input, "CEIL", "ceil")


__all__ = [
    "add", "sub", "mul", "div", "floor_divide", "pow", "maximum", "minimum",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
    "neg", "abs", "sqrt", "rsqrt", "reciprocal", "exp", "log", "erf", "sin", "cos", "floor", "ceil",
    "broadcast_rank", "promote_types", "operands",
]
