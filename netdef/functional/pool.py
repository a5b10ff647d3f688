"""2-D pooling with torch's output sizes, ceil_mode and padding-count rules.

Output sizes are computed here with torch's formula and met with explicit pre/post padding
(EXPLICIT_ROUND_DOWN): TensorRT's round-up mode lets a last window start inside the right
padding, which torch forbids, so relying on it would change shapes. Extra post padding that
ceil_mode adds never counts in an average (torch clips those windows), so it is always
excluded; torch's count_include_pad padding is then made of real zeros when the two mix.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import network
from netdef.functional._core import constant, out, trt, tuple_n
from netdef.tensor import Tensor


def _pool_layer(input: Tensor, kind: str, window: tuple, stride: tuple, pre: tuple, post: tuple,
                exclude_padding: bool, op: str) -> Tensor:
    layer = network.current().network.add_pooling_nd(input.trt, getattr(trt().PoolingType, kind), window)
    if layer is None:
        network.current().add(layer, op)  # raises with TensorRT's message
    layer.stride_nd, layer.pre_padding, layer.post_padding = stride, pre, post
    if kind == "AVERAGE":
        layer.average_count_excludes_padding = exclude_padding
    return out(layer, op)


def _out_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape (dilation 1)."""
    num = size + 2 * p - k + ((s - 1) if ceil_mode else 0)
    n = num // s + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1  # the last window must start inside the input or the left padding
    return n


def _plan(op: str, input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
          ceil_mode: bool) -> tuple[tuple, tuple, tuple, tuple]:
    """Check arguments like torch; return (kernel, stride, padding, ceil extra per dim)."""
    net = network.current()
    try:
        k = tuple_n(kernel_size, 2)
        s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else tuple_n(stride, 2)
        p, d = tuple_n(padding, 2), tuple_n(dilation, 2)
    except ValueError as exc:
        net.fail(f"{op}: {exc}")
    if d != (1, 1):
        net.fail(f"{op} dilation={d} is not supported: TensorRT pooling has no dilation")
    if input.ndim not in (3, 4):
        net.fail(f"{op} expects a 3-D or 4-D input, got shape {input.shape}")
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        net.fail(f"{op} padding {p} must be at most half of kernel_size {k}")
    spatial = input.shape[-2:]
    if not ceil_mode:
        return k, s, p, (0, 0)
    if any(v < 0 for v in spatial):
        net.fail(f"{op} ceil_mode=True needs static spatial dimensions, got shape {input.shape}")
    outs = [_out_size(*a, True) for a in zip(spatial, k, s, p)]
    extra = tuple(max((o - 1) * si + ki - (n + 2 * pi), 0) for o, si, ki, n, pi in zip(outs, s, k, spatial, p))
    return k, s, p, extra


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    if return_indices:
        network.current().fail("max_pool2d return_indices=True is not supported")
    k, s, p, extra = _plan("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    post = tuple(pi + e for pi, e in zip(p, extra))
    return _pool_layer(input, "MAX", k, s, p, post, False, "max_pool2d")


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    from netdef import functional as F

    op = "avg_pool2d"
    k, s, p, extra = _plan(op, input, kernel_size, stride, padding, 1, ceil_mode)
    zeros = (0, 0)
    if divisor_override is not None:
        if divisor_override <= 0:
            network.current().fail(f"{op} divisor_override must be > 0, got {divisor_override}")
        # sum / divisor: pad with real zeros so every window is full, then rescale the mean
        post = tuple(pi + e for pi, e in zip(p, extra))
        if any(p) or any(extra):
            input = F.pad(input, [p[1], post[1], p[0], post[0]])
        y = _pool_layer(input, "AVERAGE", k, s, zeros, zeros, False, op)
        return F.mul(y, math.prod(k) / divisor_override)
    if not any(extra):
        return _pool_layer(input, "AVERAGE", k, s, p, p, not count_include_pad, op)
    if count_include_pad and any(p):
        input = F.pad(input, [p[1], p[1], p[0], p[0]])  # counted padding: real zeros
        p = zeros
    post = tuple(pi + e for pi, e in zip(p, extra))
    return _pool_layer(input, "AVERAGE", k, s, p, post, True, op)


def _adaptive_sizes(op: str, input: Tensor, output_size: Any) -> tuple[tuple, tuple]:
    net = network.current()
    if input.ndim not in (3, 4):
        net.fail(f"{op} expects a 3-D or 4-D input, got shape {input.shape}")
    spatial = tuple(input.shape[-2:])
    if any(v < 0 for v in spatial):
        net.fail(f"{op} needs static spatial dimensions, got shape {input.shape}")
    try:
        size = tuple_n(output_size, 2)
    except ValueError as exc:
        net.fail(f"{op}: {exc}")
    size = tuple(n if o is None else int(o) for o, n in zip(size, spatial))
    if any(o <= 0 for o in size):
        net.fail(f"{op} output_size must be positive, got {size}")
    return spatial, size


def _bins(n: int, o: int) -> list[tuple[int, int]]:
    """torch's adaptive bins: [floor(i*n/o), ceil((i+1)*n/o))."""
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """A pooling layer when each size divides evenly; otherwise averaging matrices.

    Non-divisible bins overlap and vary in size, which no single pooling layer expresses;
    the mean is linear, so y = A_h @ x @ A_w^T with A's rows holding 1/len(bin) is exact.
    """
    from netdef import functional as F

    op = "adaptive_avg_pool2d"
    spatial, size = _adaptive_sizes(op, input, output_size)
    if all(n % o == 0 for n, o in zip(spatial, size)):
        k = tuple(n // o for n, o in zip(spatial, size))
        return _pool_layer(input, "AVERAGE", k, k, (0, 0), (0, 0), False, op)
    mats = []
    for n, o in zip(spatial, size):
        a = np.zeros((o, n), np.float32)
        for i, (lo, hi) in enumerate(_bins(n, o)):
            a[i, lo:hi] = 1.0 / (hi - lo)
        mats.append(a)
    y = input
    if size[1] != spatial[1]:
        y = F.matmul(y, constant(mats[1].T.copy(), y.dtype, op="avg_matrix_w"))
    if size[0] != spatial[0]:
        y = F.matmul(constant(mats[0], y.dtype, op="avg_matrix_h"), y)
    return y


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Tensor:
    """A pooling layer when each size divides evenly; otherwise one dimension at a time:
    a stride-1 max pool per distinct bin length, concatenated, then one gather picks each
    bin's window start (bins overlap and vary in length, so no single pooling layer fits)."""
    net = network.current()
    op = "adaptive_max_pool2d"
    if return_indices:
        net.fail(f"{op} return_indices=True is not supported")
    spatial, size = _adaptive_sizes(op, input, output_size)
    if all(n % o == 0 for n, o in zip(spatial, size)):
        k = tuple(n // o for n, o in zip(spatial, size))
        return _pool_layer(input, "MAX", k, k, (0, 0), (0, 0), False, op)
    y = input
    for i, (n, o) in enumerate(zip(spatial, size)):
        if n == o:
            continue
        axis = y.ndim - 2 + i
        bins = _bins(n, o)
        lengths = sorted({hi - lo for lo, hi in bins})
        pooled, offset = [], {}
        for k in lengths:
            window = (k, 1) if i == 0 else (1, k)
            offset[k] = sum(n - j + 1 for j in lengths if j < k)
            pooled.append(_pool_layer(y, "MAX", window, (1, 1), (0, 0), (0, 0), False, f"{op}_window"))
        if len(pooled) > 1:
            cat = net.network.add_concatenation([p.trt for p in pooled])
            cat.axis = axis
            pooled = [out(cat, f"{op}_windows")]
        idx = constant(np.array([offset[hi - lo] + lo for lo, hi in bins], np.int32), op=f"{op}_starts")
        y = out(net.network.add_gather(pooled[0].trt, idx.trt, axis), op)
    return y


__all__ = ["adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "max_pool2d"]
