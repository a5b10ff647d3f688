"""Reference semantics: quantize and dequantize (Q/DQ)."""
from __future__ import annotations

import torch

from netdef.errors import RunnerError
from netdef.reference.registry import register


def _scale_like(s: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-tensor (scalar), per-channel (1-D along `axis`) or block (same rank) scales, broadcast."""
    if s.numel() == 1:
        return s.reshape(())
    if s.ndim == 1:
        return s.reshape([-1 if d == axis % x.ndim else 1 for d in range(x.ndim)])
    for d in range(x.ndim):
        if s.shape[d] != x.shape[d]:
            s = s.repeat_interleave(x.shape[d] // s.shape[d], d)
    return s


_QRANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "FP8": (-448.0, 448.0)}


@register("QUANTIZE")
def quantize(layer, ctx):
    axis, to = layer.axis, layer.to_type.name
    if to not in _QRANGE:
        raise RunnerError(f"quantization to {to} is not supported")
    lo, hi = _QRANGE[to]

    def fn(x, s, zero=None):
        q = x / _scale_like(s, x, axis)
        if to == "FP8":  # saturate, then round to the nearest e4m3 value
            return q.clamp(lo, hi).to(torch.float8_e4m3fn)
        q = torch.round(q)  # half to even
        if zero is not None:
            q = q + _scale_like(zero, x, axis).to(q.dtype)
        return q.clamp(lo, hi)
    return fn


@register("DEQUANTIZE")
def dequantize(layer, ctx):
    axis = layer.axis

    def fn(x, s, zero=None):
        v = x.to(s.dtype)
        if zero is not None:
            v = v - _scale_like(zero, x, axis).to(s.dtype)
        return v * _scale_like(s, x, axis)
    return fn
