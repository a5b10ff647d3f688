"""Reference semantics of every TensorRT layer type: one builder per type, one registry.

A builder runs once per layer at compile time: it reads the layer's attributes and
weights through TensorRT's API and returns `fn(*inputs) -> Tensor | tuple[Tensor, ...]`
that does only tensor math. Floating inputs reach `fn` already in the compute dtype
and outputs are cast to the tensor's dtype by `program.py` — the one place of the
dtype policy — so builders never round or cast for precision's sake.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from netdef import dtypes
from netdef.errors import RunnerError




LAYERS: dict[str, Callable[[Any, "Context"], Callable]] = {}


def register(*kinds: str) -> Callable:
    def deco(builder: Callable) -> Callable:
        for kind in kinds:
            LAYERS[kind] = builder
        return builder
    return deco


# ---- reading what TensorRT holds ---------------------------------------------------------------
def weights_array(w: Any) -> np.ndarray | None:
    """A copy of the values a Weights (or the ndarray the bindings return) holds; None if empty."""
    if isinstance(w, np.ndarray):
        return w.copy() if w.size else None
    if w is None or w.size == 0:
        return None
    arr = w.numpy()
    if isinstance(arr, np.ndarray):
        return arr.copy()
    # bfloat16/fp8: the bindings cannot make an ndarray. pybind11 stores a pointer to the C++
    # nvinfer1::Weights {DataType type; void const* values; int64_t count;} right after the
    # PyObject header; check type and count against the Python view before trusting it.
    npd = dtypes.to_numpy(dtypes.name(w.dtype))
    ptr = ctypes.c_void_p.from_address(id(w) + object.__basicsize__).value
    if not ptr or ctypes.c_int32.from_address(ptr).value != int(w.dtype) \
            or ctypes.c_int64.from_address(ptr + 16).value != w.size:
        raise RunnerError(f"cannot read {w.dtype} weights through the TensorRT bindings")
    values = ctypes.c_void_p.from_address(ptr + 8).value
    buf = (ctypes.c_char * (w.size * npd.itemsize)).from_address(values)
    return np.frombuffer(buf, dtype=npd).copy()


def bits(mask: int, rank: int) -> list[int]:
    """Axes of a TensorRT axes bitmask (bit i = axis i)."""
    return [a for a in range(rank) if mask >> a & 1]


class Context:
    """What builders need from the compiler: device, compute dtype, weight conversion."""

    def __init__(self, device: torch.device, float_dtype: torch.dtype, storage: Callable) -> None:
        self.device = device
        self.float_dtype = float_dtype
        self.storage = storage  # TensorRT DataType -> torch dtype values of that type are held in

    def weights(self, w: Any, shape: tuple | None = None) -> torch.Tensor | None:
        """TensorRT weights as a torch tensor; floating weights in the compute dtype (exact)."""
        arr = weights_array(w)
        if arr is None:
            return None
        if dtypes.is_floating(arr.dtype):
            arr = arr.astype(np.float64 if self.float_dtype == torch.float64 else np.float32, copy=False)
        out = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        return out.reshape(shape) if shape is not None else out


def _input(layer: Any, i: int) -> Any:
    return layer.get_input(i) if i < layer.num_inputs else None


def _rank(layer: Any, i: int = 0) -> int:
    return len(layer.get_input(i).shape)


# ---- elementwise families ------------------------------------------------------------------------
@register("ACTIVATION")
def activation(layer, ctx):
    a, b = layer.alpha, layer.beta
    table = {
        "RELU": torch.relu,
        "SIGMOID": torch.sigmoid,
        "TANH": torch.tanh,
        "LEAKY_RELU": lambda x: torch.where(x >= 0, x, a * x),
        "ELU": lambda x: torch.where(x >= 0, x, a * torch.expm1(x)),
        "SELU": lambda x: b * torch.where(x >= 0, x, a * torch.expm1(x)),
        "SOFTSIGN": lambda x: x / (1 + x.abs()),
        "SOFTPLUS": lambda x: a * F.softplus(b * x),
        "CLIP": lambda x: x.clamp(a, b),
        "HARD_SIGMOID": lambda x: (a * x + b).clamp(0, 1),
        "SCALED_TANH": lambda x: a * torch.tanh(b * x),
        # ONNX ThresholdedRelu, which the ONNX parser maps here (see docs/reference.md)
        "THRESHOLDED_RELU": lambda x: torch.where(x > a, x, torch.zeros((), dtype=x.dtype, device=x.device)),
        "GELU_ERF": F.gelu,
        "GELU_TANH": lambda x: F.gelu(x, approximate="tanh"),
    }
    kind = layer.type.name  # after downcast, `type` is the ActivationType
    if kind not in table:
        raise RunnerError(f"activation {kind} is not supported")
    return table[kind]


def _int_div(a, b):
    return torch.div(a, b, rounding_mode="trunc")


def _div(a, b):
    return a / b if a.is_floating_point() else _int_div(a, b)


def _floor_div(a, b):
    return torch.floor(a / b) if a.is_floating_point() else torch.div(a, b, rounding_mode="floor")


@register("ELEMENTWISE")
def elementwise(layer, ctx):
    table = {
        "SUM": torch.add, "PROD": torch.mul, "MAX": torch.maximum, "MIN": torch.minimum,
        "SUB": torch.sub, "DIV": _div, "POW": torch.pow, "FLOOR_DIV": _floor_div,
        "AND": torch.logical_and, "OR": torch.logical_or, "XOR": torch.logical_xor,
        "EQUAL": torch.eq, "GREATER": torch.gt, "LESS": torch.lt,
    }
    return table[layer.op.name]


def _unary_table() -> dict[str, Callable]:
    return {
        "EXP": torch.exp, "LOG": torch.log, "SQRT": torch.sqrt, "RECIP": torch.reciprocal,
        "ABS": torch.abs, "NEG": torch.neg, "SIN": torch.sin, "COS": torch.cos, "TAN": torch.tan,
        "SINH": torch.sinh, "COSH": torch.cosh, "ASIN": torch.asin, "ACOS": torch.acos,
        "ATAN": torch.atan, "ASINH": torch.asinh, "ACOSH": torch.acosh, "ATANH": torch.atanh,
        "CEIL": torch.ceil, "FLOOR": torch.floor, "ERF": torch.erf, "NOT": torch.logical_not,
        "SIGN": torch.sign, "ROUND": torch.round,  # torch.round: half to even, as TensorRT
        "ISINF": torch.isinf, "ISNAN": torch.isnan,
    }


@register("UNARY")
def unary(layer, ctx):
    table = _unary_table()
    if layer.op.name not in table:
        raise RunnerError(f"unary operation {layer.op.name} is not supported")
    return table[layer.op.name]


@register("PARAMETRIC_RELU")
def parametric_relu(layer, ctx):
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@register("SELECT")
def select(layer, ctx):
    return torch.where


@register("IDENTITY", "CAST")
def identity(layer, ctx):
    # the cast itself is the dtype policy's output cast (program.py): float -> int truncates
    # toward zero, nonzero -> True, as torch's .to()
    return lambda x: x


@register("SCALE")
def scale(layer, ctx):
    rank, axis, mode = _rank(layer), layer.channel_axis, layer.mode.name
    axis = axis % rank if rank else 0

    def view(w):
        if w is None or mode == "UNIFORM":
            return None if w is None else w.reshape(())
        in_shape = layer.get_input(0).shape
        if mode == "CHANNEL":
            return w.reshape([-1 if d == axis else 1 for d in range(rank)])
        tail = [d if d >= 0 else -1 for d in in_shape[axis:]]
        return w.reshape([1] * axis + tail)

    s, t, p = (view(ctx.weights(w)) for w in (layer.scale, layer.shift, layer.power))

    def fn(x):
        if s is not None:
            x = x * s
        if t is not None:
            x = x + t
        return x if p is None else torch.pow(x, p)  # (x * scale + shift) ^ power
    return fn


# ---- data movement -------------------------------------------------------------------------------
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
    axis = layer.axis % max(_rank(layer), 1)
    return lambda *xs: torch.cat(xs, axis)


@register("SHUFFLE")
def shuffle(layer, ctx):
    rank_in, rank_out = _rank(layer), len(layer.get_output(0).shape)
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
    return lambda x, axes: x.squeeze(tuple(a % x.ndim for a in axes.tolist()))


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
    rank, mode, name = _rank(layer), layer.mode.name, layer.name
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
    pad = [p for pair in zip(reversed(pre), reversed(post)) for p in pair]
    return lambda x: F.pad(x, pad)  # zeros on the innermost len(pre) dims; negative crops


def _fix_negative(idx: torch.Tensor, n: int) -> torch.Tensor:
    idx = idx.long()
    return torch.where(idx < 0, idx + n, idx)


@register("GATHER")
def gather(layer, ctx):
    mode, axis, batch = layer.mode.name, layer.axis, layer.num_elementwise_dims
    axis = axis % max(_rank(layer), 1)

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

    def fn(shape=None, alpha=None, beta=None):
        dims = shape.tolist() if shape is not None else list(static_shape)
        dt = ctx.float_dtype if alpha is None or alpha.is_floating_point() else alpha.dtype
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


# ---- reductions and normalizations ---------------------------------------------------------------
@register("REDUCE")
def reduce(layer, ctx):
    axes, keep, op = bits(layer.axes, _rank(layer)), layer.keep_dims, layer.op.name
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
    (axis,) = bits(layer.axes, _rank(layer))
    return lambda x: torch.softmax(x, axis)


@register("TOPK")
def topk(layer, ctx):
    (axis,) = bits(layer.axes, _rank(layer))
    largest, k0 = layer.op.name == "MAX", layer.k

    def fn(x, k=None):
        kk = int(k.reshape(-1)[0]) if k is not None else k0
        values, indices = torch.topk(x, kk, axis, largest=largest, sorted=True)
        return values, indices
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
    axes, eps, groups = bits(layer.axes, _rank(layer)), layer.epsilon, layer.num_groups

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


# ---- linear algebra ------------------------------------------------------------------------------
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


# ---- convolution and pooling ---------------------------------------------------------------------
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


def _flat_pad(pre, post) -> list[int]:
    return [p for pair in zip(reversed(pre), reversed(post)) for p in pair]


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
    w0 = ctx.weights(layer.kernel, kshape) if _input(layer, 1) is None else None
    b0 = ctx.weights(layer.bias)

    def fn(x, w=None, b=None):
        w = w0 if w is None else w
        b = b0 if b is None else b.reshape(-1)
        B, A, E = _pads(mode, x.shape[-n:], window, stride, dilation, pre, post)
        A = [a + e for a, e in zip(A, E)]
        if B == A and all(p >= 0 for p in B):
            return conv(x, w, b, stride, B, dilation, groups)
        return conv(F.pad(x, _flat_pad(B, A)), w, b, stride, 0, dilation, groups)
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
    w0 = ctx.weights(layer.kernel, kshape) if _input(layer, 1) is None else None
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
        return F.pad(y, _flat_pad([-p for p in B], [-p for p in A]))  # crop (or pad if negative)
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
        return max_pool(F.pad(x, _flat_pad(B, [a + e for a, e in zip(A, E)]), value=-math.inf), window, stride)

    def pool_avg(x, B, A, E):
        if B == A and not any(E) and all(0 <= p <= k // 2 for p, k in zip(B, window)):
            return avg_pool(x, window, stride, B, count_include_pad=not exclude)
        # sum over the window / number of window cells on the input (exclude) or padded input
        total = avg_pool(F.pad(x, _flat_pad(B, [a + e for a, e in zip(A, E)])), window, stride,
                         divisor_override=1)
        mask = torch.ones((1, 1, *x.shape[-n:]), dtype=x.dtype, device=x.device)
        if not exclude:
            mask = F.pad(mask, _flat_pad(B, A), value=1.0)
            B, A = [0] * n, [0] * n
        mask = F.pad(mask, _flat_pad(B, [a + e for a, e in zip(A, E)]))
        return total / avg_pool(mask, window, stride, divisor_override=1)

    def fn(x):
        B, A, E = _pads(mode, x.shape[-n:], window, stride, ones, pre, post)
        if kind == "MAX":
            return pool_max(x, B, A, E)
        if kind == "AVERAGE":
            return pool_avg(x, B, A, E)
        return (1 - blend) * pool_max(x, B, A, E) + blend * pool_avg(x, B, A, E)
    return fn


# ---- resize and sampling -------------------------------------------------------------------------
def _cubic_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    """Keys cubic convolution weights of the taps at floor-1 .. floor+2 for fraction t."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@register("RESIZE")
def resize(layer, ctx):
    mode = layer.resize_mode.name
    transform = layer.coordinate_transformation.name
    rounding = layer.nearest_rounding.name
    upper = layer.selector_for_single_pixel.name == "UPPER"
    cubic_a, exclude_outside = layer.cubic_coeff, layer.exclude_outside
    scales = list(layer.scales)
    # with a shape-tensor input the layer has no static shape (reading it logs a TensorRT error)
    dynamic = layer.num_inputs > 1 and layer.get_input(1) is not None
    static_shape = None if scales or dynamic or layer.shape is None else list(layer.shape)
    cache: dict[tuple, tuple] = {}  # (in, out, scale) -> indices and weights

    def source(i: int, o: int, scale: float) -> torch.Tensor:
        """Input coordinate of each output index (float64), by the coordinate transformation."""
        out = torch.arange(o, dtype=torch.float64)
        if o == 1 and upper:
            return torch.zeros(1, dtype=torch.float64)
        if transform == "ALIGN_CORNERS":
            return out * ((i - 1) / (o - 1)) if o > 1 else torch.zeros(1, dtype=torch.float64)
        if transform == "ASYMMETRIC":
            return out * (i / o)
        if transform == "HALF_PIXEL":
            return (out + 0.5) * (i / o) - 0.5
        if transform == "HALF_PIXEL_SYMMETRIC":  # ONNX half_pixel_symmetric (classic TensorRT >= 10.x)
            return i / 2 * (1 - o / (scale * i)) + (out + 0.5) / scale - 0.5
        raise RunnerError(f"resize coordinate transformation {transform} is not supported")

    def taps(i: int, o: int, scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        key = (i, o, scale)
        if key not in cache:
            x = source(i, o, scale)
            if mode == "NEAREST":
                r = {"FLOOR": torch.floor, "CEIL": torch.ceil,
                     "HALF_UP": lambda v: torch.floor(v + 0.5), "HALF_DOWN": lambda v: torch.ceil(v - 0.5)}[rounding]
                cache[key] = ([r(x).long().clamp(0, i - 1)], None)
            else:
                base = torch.floor(x)
                t = x - base
                if mode == "LINEAR":
                    offsets, weights = [0, 1], [1 - t, t]
                else:
                    offsets, weights = [-1, 0, 1, 2], _cubic_weights(t, cubic_a)
                idx = [base.long() + k for k in offsets]
                if mode == "CUBIC" and exclude_outside:
                    weights = [w * ((j >= 0) & (j < i)) for w, j in zip(weights, idx)]
                    total = sum(weights)
                    weights = [w / total for w in weights]
                cache[key] = ([j.clamp(0, i - 1) for j in idx], weights)
        return cache[key]

    def fn(x, target=None):
        if target is not None and target.is_floating_point():
            factors = target.tolist()
        elif target is not None:
            factors, out = None, target.tolist()
        else:
            factors, out = scales or None, static_shape
        if factors is not None:
            out = [int(math.floor(d * f)) for d, f in zip(x.shape, factors)]
        for axis, (i, o) in enumerate(zip(x.shape, out)):
            if i == o:
                continue
            idx, weights = taps(i, o, factors[axis] if factors else o / i)
            if weights is None:
                x = x.index_select(axis, idx[0].to(x.device))
                continue
            shape = [-1 if d == axis else 1 for d in range(x.ndim)]
            acc = None
            for j, w in zip(idx, weights):
                term = x.index_select(axis, j.to(x.device)) * w.to(x.dtype).to(x.device).reshape(shape)
                acc = term if acc is None else acc + term
            x = acc
        return x
    return fn


@register("GRID_SAMPLE")
def grid_sample(layer, ctx):
    mode = {"NEAREST": "nearest", "LINEAR": "bilinear", "CUBIC": "bicubic"}[layer.interpolation_mode.name]
    padding = {"FILL": "zeros", "CLAMP": "border", "REFLECT": "reflection"}.get(layer.sample_mode.name)
    if padding is None:
        raise RunnerError(f"grid sample mode {layer.sample_mode.name} is not supported")
    align = layer.align_corners
    return lambda x, grid: F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=align)


# ---- quantization --------------------------------------------------------------------------------
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


# ---- control -------------------------------------------------------------------------------------
@register("ASSERTION")
def assertion(layer, ctx):
    name, message = layer.name, layer.message

    def fn(cond):
        if not bool(cond.all()):
            raise RunnerError(f"assertion layer {name!r} failed: {message}")
        return ()
    return fn
