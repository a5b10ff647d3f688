"""Reference semantics: reductions, softmax, top-k, cumulative sums and normalizations."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from netdef.errors import RunnerError
from netdef.reference.registry import bits, input_rank, one_axis, register


@register("REDUCE")
def reduce(layer, ctx):
    axes, keep, op = bits(layer.axes, input_rank(layer)), layer.keep_dims, layer.op.name
    if not axes:
        return lambda x: x

    def prod(x):
        for a in sorted(axes, reverse=True):
            x = torch.prod(x, a, keepdim=keep)
        return x

    table = {
        "SUM": lambda x: torch.sum(x, axes, keepdim=keep),
        "AVG": lambda x: torch.mean(x, axes, keepdim=keep),
        "MAX": lambda x: torch.amax(x, axes, keepdim=keep),
        "MIN": lambda x: torch.amin(x, axes, keepdim=keep),
        "PROD": prod,
    }
    if op not in table:
        raise RunnerError(f"reduce operation {op} is not supported")
    return table[op]


@register("SOFTMAX")
def softmax(layer, ctx):
    axis = one_axis(layer.axes, input_rank(layer))
    return lambda x: torch.softmax(x, axis)


@register("TOPK")
def topk(layer, ctx):
    axis = one_axis(layer.axes, input_rank(layer))
    largest, k0 = layer.op.name == "MAX", layer.k

    def fn(x, k=None):
        # ties go to the lower index: a stable sort keeps equal values in index order. NVIDIA's
        # ONNX parser lowers ArgMax/ArgMin/Hardmax (first index of the extreme value) onto
        # TopK with k=1, which only holds with this rule (ONNX node tests, docs/reference.md)
        kk = int(k.reshape(-1)[0]) if k is not None else k0
        values, indices = torch.sort(x, stable=True, dim=axis, descending=largest)
        return values.narrow(axis, 0, kk), indices.narrow(axis, 0, kk)
    return fn


@register("CUMULATIVE")
def cumulative(layer, ctx):
    exclusive, reverse = layer.exclusive, layer.reverse

    def fn(x, axis):
        a = int(axis.reshape(-1)[0]) % x.ndim
        if reverse:
            x = x.flip(a)
        y = torch.cumsum(x, a)
        if exclusive:
            y = torch.cat([torch.zeros_like(x.narrow(a, 0, 1)), y.narrow(a, 0, x.shape[a] - 1)], a)
        return y.flip(a) if reverse else y
    return fn


@register("NORMALIZATION")
def normalization(layer, ctx):
    axes, eps, groups = bits(layer.axes, input_rank(layer)), layer.epsilon, layer.num_groups

    def fn(x, s, b):
        if groups == 1:
            var, mean = torch.var_mean(x, axes, unbiased=False, keepdim=True)
            return (x - mean) / torch.sqrt(var + eps) * s + b
        n, c = x.shape[:2]
        xg = x.reshape(n, groups, c // groups, *x.shape[2:])
        gaxes = [2] + [a + 1 for a in axes if a >= 2]
        var, mean = torch.var_mean(xg, gaxes, unbiased=False, keepdim=True)
        yg = (xg - mean) / torch.sqrt(var + eps)
        if s.shape[1] == groups and groups != c:  # v1 layers: one scale/bias per group
            return (yg * s.unsqueeze(2) + b.unsqueeze(2)).reshape(x.shape)
        return yg.reshape(x.shape) * s + b  # v2 layers: one scale/bias per channel
    return fn


@register("LRN")
def lrn(layer, ctx):
    size, alpha, beta, k = layer.window_size, layer.alpha, layer.beta, layer.k
    return lambda x: F.local_response_norm(x, size, alpha, beta, k)
