"""Reference semantics: matrix multiply and einsum."""
from __future__ import annotations

import torch

from netdef.reference.registry import register


@register("MATRIX_MULTIPLY")
def matrix_multiply(layer, ctx):
    op0, op1 = layer.op0.name, layer.op1.name

    def fn(a, b):
        if op0 == "VECTOR":
            a = a.unsqueeze(-2)
        elif op0 == "TRANSPOSE":
            a = a.transpose(-1, -2)
        if op1 == "VECTOR":
            b = b.unsqueeze(-1)
        elif op1 == "TRANSPOSE":
            b = b.transpose(-1, -2)
        out = torch.matmul(a, b)
        if op0 == "VECTOR":
            out = out.squeeze(-2)
        return out.squeeze(-1) if op1 == "VECTOR" else out
    return fn


@register("EINSUM")
def einsum(layer, ctx):
    eq = layer.equation
    return lambda *xs: torch.einsum(eq, *xs)
