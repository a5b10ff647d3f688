"""Reference semantics: constants, shapes and data movement (shuffle, slice, pad, gather, scatter, fill)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from netdef.errors import RunnerError
from netdef.reference.registry import flat_pad, input_rank, register


@register("CONSTANT")
def constant(layer, ctx):
    value = ctx.weights(layer.weights, tuple(layer.shape))
    out = layer.get_output(0)
    value = value.to(ctx.storage(out.dtype))
    return lambda: value


@register("SHAPE")
def shape(layer, ctx):
    return lambda x: torch.tensor(tuple(x.shape), dtype=torch.int64, device=ctx.device)


@register("CONCATENATION")
def concatenation(layer, ctx):
    axis = layer.axis % max(input_rank(layer), 1)
    return lambda *xs: torch.cat(xs, axis)


@register("SHUFFLE")
def shuffle(layer, ctx):
    rank_in, rank_out = input_rank(layer), len(layer.get_output(0).shape)
    first = tuple(layer.first_transpose)[:rank_in]
    second = tuple(layer.second_transpose)[:rank_out]
    first = None if first == tuple(range(rank_in)) else first
    second = None if second == tuple(range(rank_out)) else second
    static = layer.reshape_dims
    static = None if static is None else tuple(static)
    zero_copies = layer.zero_is_placeholder

    def fn(x, dims=None):
        if first is not None:
            x = x.permute(first)
        target = dims.tolist() if dims is not None else static
        if target is not None:
            if zero_copies:
                target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
            x = x.reshape(target)
        return x if second is None else x.permute(second)
    return fn


@register("SQUEEZE")
def squeeze(layer, ctx):
    # without an axes input TensorRT removes every dimension that is statically 1 in the
    # network definition; dynamic dimensions stay (add_squeeze's docstring)
    static = tuple(i for i, d in enumerate(layer.get_input(0).shape) if d == 1)

    def fn(x, axes=None):
        dims = static if axes is None else tuple(a % x.ndim for a in axes.tolist())
        return x.squeeze(dims) if dims else x
    return fn


@register("UNSQUEEZE")
def unsqueeze(layer, ctx):
    def fn(x, axes):
        axes = axes.tolist()
        for a in sorted(a % (x.ndim + len(axes)) for a in axes):
            x = x.unsqueeze(a)
        return x
    return fn


def _reflect(idx: torch.Tensor, n: int) -> torch.Tensor:
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


@register("SLICE")
def slice_(layer, ctx):
    rank, mode, name = input_rank(layer), layer.mode.name, layer.name
    static = [None if v is None else list(v) for v in (layer.start, layer.shape, layer.stride)]
    static_axes = getattr(layer, "axes", None)
    static_axes = None if static_axes is None else list(static_axes)

    def fn(x, start=None, size=None, stride=None, fill=None, axes=None):
        given = [t.tolist() if t is not None else s for t, s in zip((start, size, stride), static)]
        axes = axes.tolist() if axes is not None else static_axes
        starts, sizes, strides = [0] * rank, list(x.shape), [1] * rank
        for j, a in enumerate(axes if axes is not None else range(rank)):
            a %= rank
            starts[a], sizes[a], strides[a] = given[0][j], given[1][j], given[2][j]
        inside = all(
            n == 0 or (0 <= s < d and 0 <= s + (n - 1) * k < d)
            for s, n, k, d in zip(starts, sizes, strides, x.shape))
        if inside and all(k > 0 for k in strides):
            return x[tuple(slice(s, s + (n - 1) * k + 1, k) if n else slice(0, 0)
                           for s, n, k in zip(starts, sizes, strides))]
        if mode == "STRICT_BOUNDS" and not inside:
            raise RunnerError(f"slice layer {name!r}: start {starts}, size {sizes}, stride {strides} "
                              f"reach outside the input of shape {tuple(x.shape)} in STRICT_BOUNDS mode")
        mask = None
        for d, (s, n, k) in enumerate(zip(starts, sizes, strides)):
            dim = x.shape[d]
            idx = s + k * torch.arange(n, device=x.device)
            if mode == "WRAP":
                idx = idx.remainder(dim)
            elif mode == "REFLECT":
                idx = _reflect(idx, dim)
            elif mode in ("CLAMP", "FILL"):
                if mode == "FILL":
                    ok = ((idx >= 0) & (idx < dim)).reshape([-1 if i == d else 1 for i in range(rank)])
                    mask = ok if mask is None else mask & ok
                idx = idx.clamp(0, max(dim - 1, 0))
            x = x.index_select(d, idx) if dim else x.new_zeros([*x.shape[:d], n, *x.shape[d + 1:]])
        if mask is not None:
            value = fill.reshape(()) if fill is not None else torch.zeros((), dtype=x.dtype, device=x.device)
            x = torch.where(mask, x, value.to(x.dtype))
        return x
    return fn


@register("PADDING")
def padding(layer, ctx):
    pre, post = list(layer.pre_padding_nd), list(layer.post_padding_nd)
    pad = flat_pad(pre, post)
    return lambda x: F.pad(x, pad)  # zeros on the innermost len(pre) dims; negative crops


def _fix_negative(idx: torch.Tensor, n: int) -> torch.Tensor:
    idx = idx.long()
    return torch.where(idx < 0, idx + n, idx)


@register("GATHER")
def gather(layer, ctx):
    mode, axis, batch = layer.mode.name, layer.axis, layer.num_elementwise_dims
    axis = axis % max(input_rank(layer), 1)

    def take(data, idx, ax):
        out = data.index_select(ax, idx.reshape(-1))
        return out.reshape((*data.shape[:ax], *idx.shape, *data.shape[ax + 1:]))

    def default(data, idx):
        idx = _fix_negative(idx, data.shape[axis])
        if batch == 0:
            return take(data, idx, axis)
        return torch.stack([take(d, i, axis - 1) for d, i in zip(data, idx)])

    def element(data, idx):
        return torch.gather(data, axis, _fix_negative(idx, data.shape[axis]))

    def nd(data, idx):
        lead = data.shape[:batch]
        d = data.reshape(-1, *data.shape[batch:])
        i = idx.long().reshape(-1, *idx.shape[batch:])
        k = i.shape[-1]
        outs = [db[tuple(_fix_negative(ib[..., j], db.shape[j]) for j in range(k))] for db, ib in zip(d, i)]
        out = torch.stack(outs)
        return out.reshape((*lead, *out.shape[1:]))

    return {"DEFAULT": default, "ELEMENT": element, "ND": nd}[mode]


@register("SCATTER")
def scatter(layer, ctx):
    mode, axis = layer.mode.name, layer.axis

    def element(data, idx, updates):
        ax = axis % data.ndim
        return data.scatter(ax, _fix_negative(idx, data.shape[ax]), updates)

    def nd(data, idx, updates):
        out = data.clone()
        k = idx.shape[-1]
        out[tuple(_fix_negative(idx[..., j], data.shape[j]) for j in range(k))] = updates
        return out

    return {"ELEMENT": element, "ND": nd}[mode]


@register("ONE_HOT")
def one_hot(layer, ctx):
    axis = layer.axis

    def fn(idx, values, depth):
        n = int(depth.reshape(-1)[0])
        idx = _fix_negative(idx, n)
        valid = (idx >= 0) & (idx < n)
        hot = F.one_hot(idx.clamp(0, n - 1), n).bool() & valid.unsqueeze(-1)
        out = torch.where(hot, values[1], values[0])
        return out.movedim(-1, axis % out.ndim)
    return fn


@register("NON_ZERO")
def non_zero(layer, ctx):
    return lambda x: torch.nonzero(x).T.contiguous()


@register("FILL")
def fill(layer, ctx):
    op, name = layer.operation.name, layer.name
    static_shape = layer.shape
    a0, b0 = layer.alpha, layer.beta
    static_dt = ctx.float_dtype
    if not ctx.storage(layer.get_output(0).dtype).is_floating_point:
        # an integer output is computed exactly: int64 alpha/beta (setAlphaInt64) in int64, double
        # ones in float64 (exact to 2**53), not in float32, which rounds past 2**24
        static_dt = torch.int64 if isinstance(a0, int) and isinstance(b0, int) else torch.float64

    def fn(shape=None, alpha=None, beta=None):
        dims = shape.tolist() if shape is not None else list(static_shape)
        dt = static_dt if alpha is None else (ctx.float_dtype if alpha.is_floating_point() else alpha.dtype)
        a = alpha.reshape(()) if alpha is not None else torch.tensor(a0, dtype=dt, device=ctx.device)
        if op == "LINSPACE":
            if beta is None and len(dims) != 1:
                raise RunnerError(f"fill layer {name!r}: a LINSPACE of rank {len(dims)} needs a beta tensor")
            b = beta.reshape(-1) if beta is not None else torch.tensor([b0], dtype=dt, device=ctx.device)
            out = a.expand(dims).clone()
            for d, n in enumerate(dims):
                step = torch.arange(n, device=ctx.device, dtype=dt) * b[d]
                out = out + step.reshape([-1 if i == d else 1 for i in range(len(dims))])
            return out
        # random fills cannot reproduce TensorRT's generator: seeded torch values of the same law
        gen = torch.Generator(device=ctx.device).manual_seed(0)
        b = beta.reshape(()) if beta is not None else b0
        if op == "RANDOM_UNIFORM":
            return a + (b - a) * torch.rand(dims, generator=gen, device=ctx.device, dtype=ctx.float_dtype)
        return a + b * torch.randn(dims, generator=gen, device=ctx.device, dtype=ctx.float_dtype)
    return fn
