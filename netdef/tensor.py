"""`Tensor`: a thin handle on a TensorRT ITensor with torch's operators and methods.

Every method forwards to `netdef.functional`, where each op is defined once.
Shapes follow TensorRT: a dynamic dimension reads as -1 in `.shape`; `size(d)`
returns it as a 0-d int64 shape Tensor that reshape/expand accept.
"""
from __future__ import annotations

from typing import Any

from netdef import dtypes


class Tensor:
    __slots__ = ("trt",)

    def __init__(self, itensor: Any) -> None:
        self.trt = itensor  # the ITensor

    # ---- metadata ----------------------------------------------------------
    @property
    def name(self) -> str:
        return self.trt.name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.trt.shape)

    @property
    def dtype(self) -> str:
        return dtypes.name(self.trt.dtype)

    @property
    def ndim(self) -> int:
        return len(self.trt.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self.shape
        d = self.shape[dim]
        return d if d >= 0 else _F().shape_of(self, dim)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def __len__(self) -> int:
        n = self.shape[0]
        if n < 0:
            raise TypeError("len() of a Tensor with a dynamic first dimension; use x.size(0)")
        return n

    def __bool__(self) -> bool:
        raise TypeError("a netdef Tensor has no value at trace time; use netdef.functional.where "
                        "instead of Python control flow on tensor values")

    # ---- operators: each forwards to the one functional op ---------------------
    __array_ufunc__ = None  # numpy defers to our reflected operators: `array + x` is an add layer

    def __add__(self, other: Any) -> "Tensor":
        return _F().add(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return _F().add(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return _F().sub(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return _F().sub(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return _F().mul(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return _F().mul(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return _F().div(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return _F().div(other, self)

    def __floordiv__(self, other: Any) -> "Tensor":
        return _F().floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> "Tensor":
        return _F().floor_divide(other, self)

    def __pow__(self, other: Any) -> "Tensor":
        return _F().pow(self, other)

    def __rpow__(self, other: Any) -> "Tensor":
        return _F().pow(other, self)

    def __matmul__(self, other: Any) -> "Tensor":
        return _F().matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return _F().matmul(other, self)

    def __neg__(self) -> "Tensor":
        return _F().neg(self)

    def __abs__(self) -> "Tensor":
        return _F().abs(self)

    def __eq__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return _F().eq(self, other)

    def __ne__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return _F().ne(self, other)

    def __lt__(self, other: Any) -> "Tensor":
        return _F().lt(self, other)

    def __le__(self, other: Any) -> "Tensor":
        return _F().le(self, other)

    def __gt__(self, other: Any) -> "Tensor":
        return _F().gt(self, other)

    def __ge__(self, other: Any) -> "Tensor":
        return _F().ge(self, other)

    def __invert__(self) -> "Tensor":
        return _F().logical_not(self)

    def __and__(self, other: Any) -> "Tensor":
        return _F().logical_and(self, other)

    def __rand__(self, other: Any) -> "Tensor":
        return _F().logical_and(other, self)

    def __or__(self, other: Any) -> "Tensor":
        return _F().logical_or(self, other)

    def __ror__(self, other: Any) -> "Tensor":
        return _F().logical_or(other, self)

    def __getitem__(self, index: Any) -> "Tensor":
        return _F().getitem(self, index)

    # ---- methods ----------------------------------------------------------------
    def reshape(self, *shape: Any) -> "Tensor":
        return _F().reshape(self, *shape)

    def view(self, *shape: Any) -> "Tensor":
        return _F().view(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        return _F().flatten(self, start_dim, end_dim)

    def permute(self, *dims: Any) -> "Tensor":
        return _F().permute(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        return _F().transpose(self, dim0, dim1)

    def squeeze(self, dim: Any = None) -> "Tensor":
        return _F().squeeze(self, dim)

    def unsqueeze(self, dim: int) -> "Tensor":
        return _F().unsqueeze(self, dim)

    def expand(self, *sizes: Any) -> "Tensor":
        return _F().expand(self, *sizes)

    def split(self, split_size: Any, dim: int = 0) -> tuple["Tensor", ...]:
        return _F().split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple["Tensor", ...]:
        return _F().chunk(self, chunks, dim)

    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
        return _F().sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
        return _F().mean(self, dim, keepdim, dtype=dtype)

    def softmax(self, dim: int, dtype: Any = None) -> "Tensor":
        return _F().softmax(self, dim, dtype=dtype)

    def matmul(self, other: Any) -> "Tensor":
        return _F().matmul(self, other)

    def bmm(self, mat2: Any) -> "Tensor":
        return _F().bmm(self, mat2)

    def masked_fill(self, mask: Any, value: Any) -> "Tensor":
        return _F().masked_fill(self, mask, value)

    def roll(self, shifts: Any, dims: Any = None) -> "Tensor":
        return _F().roll(self, shifts, dims)

    def triu(self, diagonal: int = 0) -> "Tensor":
        return _F().triu(self, diagonal)

    def tril(self, diagonal: int = 0) -> "Tensor":
        return _F().tril(self, diagonal)

    def cumsum(self, dim: int, *, dtype: Any = None) -> "Tensor":
        return _F().cumsum(self, dim, dtype=dtype)

    def repeat_interleave(self, repeats: int, dim: int | None = None) -> "Tensor":
        return _F().repeat_interleave(self, repeats, dim)

    def exp(self) -> "Tensor":
        return _F().exp(self)

    def sqrt(self) -> "Tensor":
        return _F().sqrt(self)

    def rsqrt(self) -> "Tensor":
        return _F().rsqrt(self)

    def pow(self, exponent: Any) -> "Tensor":
        return _F().pow(self, exponent)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def to(self, dtype: Any) -> "Tensor":
        """Only dtypes (or another Tensor's dtype): a netdef Tensor has no device."""
        return _F().cast(self, dtype.dtype if isinstance(dtype, Tensor) else dtype)

    def float(self) -> "Tensor":
        return self.to("float32")

    def half(self) -> "Tensor":
        return self.to("float16")

    def contiguous(self) -> "Tensor":
        return self  # TensorRT tensors have no strides

    __hash__ = object.__hash__


def _F() -> Any:
    """netdef.functional, imported late: it imports this module."""
    from netdef import functional

    return functional
