"""`Tensor`: a thin handle on a TensorRT ITensor with torch's operators and methods.

Every method forwards to `netdef.functional`, where each op is defined once.
Shapes follow TensorRT: a dynamic dimension reads as -1 in `.shape`; `size(d)`
returns it as a 0-d int64 shape Tensor that reshape/expand accept.
"""
from __future__ import annotations

from typing import Any

from netdef import dtypes


class Tensor:
    __slots__ = ("trt", "origin")

    def __init__(self, itensor: Any, origin: str | None = None) -> None:
        self.trt = itensor  # the ITensor
        self.origin = origin  # user line that created it, for error messages

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
        from netdef import functional as F

        if dim is None:
            return self.shape
        d = self.shape[dim]
        return d if d >= 0 else F.shape_of(self, dim)

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

    __hash__ = object.__hash__
