"""Reference semantics: convolution, transposed convolution and pooling, with TensorRT's padding modes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from netdef.reference.registry import flat_pad, input_or_none, register


def _pads(mode: str, sizes, window, stride, dilation, pre, post) -> tuple[list, list, list]:
    """(pre, post, overhang) per spatial dim for conv/pool, by TensorRT's PaddingMode formulas.

    `overhang` is the extra reach of EXPLICIT_ROUND_UP's last window past the padded input.
    """
    B, A, E = [], [], []
    for i, k, s, d, b, a in zip(sizes, window, stride, dilation, pre, post):
        dk = 1 + d * (k - 1)
        e = 0
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            p = max((i - 1) // s * s + dk - i, 0)
            small = p // 2
            b, a = (small, p - small) if mode == "SAME_UPPER" else (p - small, small)
        elif mode == "EXPLICIT_ROUND_UP":
            m = i + b + a
            o = -((m - dk) // -s) + 1
            e = max((o - 1) * s + dk - m, 0)
        B.append(b)
        A.append(a)
        E.append(e)
    return B, A, E


def _read_padding(layer):
    return layer.padding_mode.name, list(layer.pre_padding), list(layer.post_padding)


@register("CONVOLUTION")
def convolution(layer, ctx):
    n = len(layer.kernel_size_nd)
    conv = getattr(F, f"conv{n}d")
    mode, pre, post = _read_padding(layer)
    stride, dilation, groups = list(layer.stride_nd), list(layer.dilation_nd), layer.num_groups
    window = list(layer.kernel_size_nd)
    c_in = layer.get_input(0).shape[-n - 1]
    kshape = (layer.num_output_maps, c_in // groups if c_in > 0 else -1, *window)
    w0 = ctx.weights(layer.kernel, kshape, operand=True) if input_or_none(layer, 1) is None else None
    b0 = ctx.weights(layer.bias)

    def fn(x, w=None, b=None):
        w = w0 if w is None else w
        b = b0 if b is None else b.reshape(-1)
        B, A, E = _pads(mode, x.shape[-n:], window, stride, dilation, pre, post)
        A = [a + e for a, e in zip(A, E)]
        if B == A and all(p >= 0 for p in B):
            return conv(x, w, b, stride, B, dilation, groups)
        return conv(F.pad(x, flat_pad(B, A)), w, b, stride, 0, dilation, groups)
    return fn


@register("DECONVOLUTION")
def deconvolution(layer, ctx):
    n = len(layer.kernel_size_nd)
    deconv = getattr(F, f"conv_transpose{n}d")
    mode, pre, post = _read_padding(layer)
    stride, dilation, groups = list(layer.stride_nd), list(layer.dilation_nd), layer.num_groups
    window = list(layer.kernel_size_nd)
    c_in = layer.get_input(0).shape[-n - 1]
    kshape = (c_in if c_in > 0 else -1, layer.num_output_maps // groups, *window)
    w0 = ctx.weights(layer.kernel, kshape, operand=True) if input_or_none(layer, 1) is None else None
    b0 = ctx.weights(layer.bias)

    def fn(x, w=None, b=None):
        w = w0 if w is None else w
        b = b0 if b is None else b.reshape(-1)
        B, A = pre, post
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            B, A = [], []
            for k, s, d in zip(window, stride, dilation):
                p = max(1 + d * (k - 1) - s, 0)
                small = p // 2
                B.append(small if mode == "SAME_UPPER" else p - small)
                A.append(p - B[-1])
        if B == A and all(p >= 0 for p in B):
            return deconv(x, w, b, stride, B, 0, groups, dilation)
        y = deconv(x, w, b, stride, 0, 0, groups, dilation)
        return F.pad(y, flat_pad([-p for p in B], [-p for p in A]))  # crop (or pad if negative)
    return fn


@register("POOLING")
def pooling(layer, ctx):
    n = len(layer.window_size_nd)
    max_pool, avg_pool = getattr(F, f"max_pool{n}d"), getattr(F, f"avg_pool{n}d")
    kind = layer.type.name  # after downcast, `type` is the PoolingType
    mode, pre, post = _read_padding(layer)
    window, stride = list(layer.window_size_nd), list(layer.stride_nd)
    exclude, blend = layer.average_count_excludes_padding, layer.blend_factor
    ones = [1] * n

    def pool_max(x, B, A, E):
        if B == A and not any(E) and all(0 <= p <= k // 2 for p, k in zip(B, window)):
            return max_pool(x, window, stride, B)
        return max_pool(F.pad(x, flat_pad(B, [a + e for a, e in zip(A, E)]), value=-math.inf), window, stride)

    def pool_avg(x, B, A, E):
        if B == A and not any(E) and all(0 <= p <= k // 2 for p, k in zip(B, window)):
            return avg_pool(x, window, stride, B, count_include_pad=not exclude)
        # sum over the window / number of window cells on the input (exclude) or padded input
        total = avg_pool(F.pad(x, flat_pad(B, [a + e for a, e in zip(A, E)])), window, stride,
                         divisor_override=1)
        mask = torch.ones((1, 1, *x.shape[-n:]), dtype=x.dtype, device=x.device)
        if not exclude:
            mask = F.pad(mask, flat_pad(B, A), value=1.0)
            B, A = [0] * n, [0] * n
        mask = F.pad(mask, flat_pad(B, [a + e for a, e in zip(A, E)]))
        return total / avg_pool(mask, window, stride, divisor_override=1)

    def fn(x):
        B, A, E = _pads(mode, x.shape[-n:], window, stride, ones, pre, post)
        if kind == "MAX":
            return pool_max(x, B, A, E)
        if kind == "AVERAGE":
            return pool_avg(x, B, A, E)
        return (1 - blend) * pool_max(x, B, A, E) + blend * pool_avg(x, B, A, E)
    return fn
