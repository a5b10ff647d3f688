"""Each TensorRT layer type, hand-built through the raw API, against torch (fp32 and fp16)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import netdef  # noqa: E402
import netdef.reference as R  # noqa: E402
from netdef.tolerance import assert_close  # noqa: E402

t = netdef.backend.trt()
DT = {"float32": t.float32, "float16": t.float16}


def rand(*shape, dtype="float32", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    assert x.abs().sum() > 0
    return x.to(getattr(torch, dtype))


def build(shapes: dict, make, dtype="float32"):
    """A netdef.Network whose raw INetworkDefinition `make(net, n, *inputs)` fills in."""
    net = netdef.Network()
    n = net.network
    typed = {k: v if isinstance(v[-1], t.DataType) else (v, DT[dtype]) for k, v in shapes.items()}
    ins = [n.add_input(k, dt, shape) for k, (shape, dt) in typed.items()]
    outs = make(net, n, *ins)
    for o in outs if isinstance(outs, (list, tuple)) else [outs]:
        n.mark_output(o)
    return net


def const(net, n, array):
    array = np.asarray(array)
    return n.add_constant(array.shape, net.weights(array)).get_output(0)


def run1(net, **inputs):
    return next(iter(R.run(net, inputs).values()))


def close(got, want, dtype):
    assert got.dtype == getattr(torch, dtype)
    # fp16 layers round once in TensorRT's dtype; the torch oracle computes in fp32 on fp16 inputs
    assert_close(got.float(), want.float(), dtype)


DTYPES = ["float32", "float16"]


def x_t(dtype):
    return getattr(torch, dtype)


# ---- convolution, deconvolution, pooling ----------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_groups_dilation_asymmetric_padding(dtype):
    w, b = rand(6, 2, 3, 3, seed=1) * 0.3, rand(6, seed=2)

    def make(net, n, x):
        c = n.add_convolution_nd(x, 6, (3, 3), net.weights(w.to(getattr(torch, dtype)).numpy()),
                                 net.weights(b.to(getattr(torch, dtype)).numpy()))
        c.num_groups, c.stride_nd, c.dilation_nd = 2, (2, 1), (1, 2)
        c.pre_padding, c.post_padding = (1, 0), (2, 3)
        return c.get_output(0)

    x = rand(2, 4, 9, 8, dtype=dtype)
    net = build({"x": (2, 4, 9, 8)}, make, dtype)
    want = F.conv2d(F.pad(x.float(), (0, 3, 1, 2)), w.to(x.dtype).float(), b.to(x.dtype).float(),
                    (2, 1), 0, (1, 2), 2)
    close(run1(net, x=x), want, dtype)


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "EXPLICIT_ROUND_UP"])
def test_conv_padding_modes(mode):
    w = rand(3, 2, 4, 4, seed=1)

    def make(net, n, x):
        c = n.add_convolution_nd(x, 3, (4, 4), net.weights(w.numpy()))
        c.stride_nd, c.pre_padding, c.post_padding = (3, 3), (1, 1), (0, 0)
        c.padding_mode = getattr(t.PaddingMode, mode)
        return c.get_output(0)

    x = rand(1, 2, 10, 10)
    if mode == "EXPLICIT_ROUND_UP":  # M = 11, O = ceil((11 - 4) / 3) + 1 = 4: one zero column past the end
        pad = (1, 2, 1, 2)
    else:  # O = ceil(10 / 3) = 4, P = 3 * 3 + 4 - 10 = 3
        pad = (1, 2, 1, 2) if mode == "SAME_UPPER" else (2, 1, 2, 1)
    want = F.conv2d(F.pad(x, pad), w, stride=3)
    close(run1(build({"x": (1, 2, 10, 10)}, make), x=x), want, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_deconv_kernel_as_input_tensor(dtype):
    w, b = rand(4, 3, 3, 3, seed=1), rand(6, seed=2)

    def make(net, n, x, k):
        d = n.add_deconvolution_nd(x, 6, (3, 3), t.Weights(DT[dtype]), net.weights(b.to(x_t(dtype)).numpy()))
        d.set_input(1, k)
        d.num_groups, d.stride_nd, d.pre_padding, d.post_padding = 2, (2, 2), (1, 0), (0, 1)
        return d.get_output(0)

    x = rand(2, 4, 5, 6, dtype=dtype)
    net = build({"x": (2, 4, 5, 6), "k": (4, 3, 3, 3)}, make, dtype)
    full = F.conv_transpose2d(x.float(), w.to(x.dtype).float(), b.to(x.dtype).float(), 2, groups=2)
    close(run1(net, x=x, k=w.to(x.dtype)), full[:, :, 1:, :-1], dtype)


POOL_CASES = {
    "max_ceil": ("MAX", (3, 3), (2, 2), (1, 1), (1, 1), "EXPLICIT_ROUND_UP", True),
    "avg_exclude_asym": ("AVERAGE", (3, 2), (2, 2), (1, 0), (2, 1), "EXPLICIT_ROUND_DOWN", True),
    "avg_include_asym": ("AVERAGE", (3, 2), (2, 2), (1, 0), (2, 1), "EXPLICIT_ROUND_DOWN", False),
    "avg_include_ceil": ("AVERAGE", (3, 3), (2, 2), (1, 1), (1, 1), "EXPLICIT_ROUND_UP", False),
    "avg_same_upper": ("AVERAGE", (2, 2), (2, 2), (0, 0), (0, 0), "SAME_UPPER", True),
    "blend": ("MAX_AVERAGE_BLEND", (2, 2), (2, 2), (0, 0), (0, 0), "EXPLICIT_ROUND_DOWN", True),
}


def pool_oracle(x, kind, k, s, pre, post, mode, exclude, blend=0.3):
    """Window-by-window loop: TensorRT's formulas written out, independent of the runner."""
    h, w = x.shape[-2:]
    dims = []
    for i, kk, ss, b, a in zip((h, w), k, s, pre, post):
        if mode.startswith("SAME"):
            o = -(-i // ss)
            p = max((i - 1) // ss * ss + kk - i, 0)
            b = p // 2 if mode == "SAME_UPPER" else p - p // 2
            a = p - b
        else:
            m = i + b + a
            o = (m - kk) // ss + 1 if mode == "EXPLICIT_ROUND_DOWN" else -(-(m - kk) // ss) + 1
        dims.append((o, b, a))
    (oh, bh, ah), (ow, bw, aw) = dims
    out = torch.empty(*x.shape[:-2], oh, ow)
    for r in range(oh):
        for c in range(ow):
            r0, c0 = r * s[0] - bh, c * s[1] - bw
            r1, c1 = r0 + k[0], c0 + k[1]
            win = x[..., max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)]
            mx = win.amax((-1, -2))
            if exclude:
                count = win.shape[-1] * win.shape[-2]
            else:  # overlap with the padded input
                count = (min(r1, h + ah) - max(r0, -bh)) * (min(c1, w + aw) - max(c0, -bw))
            avg = win.sum((-1, -2)) / count  # padding never enters a max (TensorRT pads with -inf)
            out[..., r, c] = {"MAX": mx, "AVERAGE": avg, "MAX_AVERAGE_BLEND": (1 - blend) * mx + blend * avg}[kind]
    return out


@pytest.mark.parametrize("case", sorted(POOL_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling(case, dtype):
    kind, k, s, pre, post, mode, exclude = POOL_CASES[case]

    def make(net, n, x):
        p = n.add_pooling_nd(x, getattr(t.PoolingType, kind), k)
        p.stride_nd, p.pre_padding, p.post_padding = s, pre, post
        p.padding_mode = getattr(t.PaddingMode, mode)
        p.average_count_excludes_padding = exclude
        p.blend_factor = 0.3
        return p.get_output(0)

    x = rand(2, 3, 9, 8, dtype=dtype)
    got = run1(build({"x": (2, 3, 9, 8)}, make, dtype), x=x)
    close(got, pool_oracle(x.float(), kind, k, s, pre, post, mode, exclude), dtype)


# ---- elementwise, unary, activation, scale -------------------------------------------------------
EW = {
    "SUM": torch.add, "PROD": torch.mul, "MAX": torch.maximum, "MIN": torch.minimum, "SUB": torch.sub,
    "DIV": torch.div, "POW": lambda a, b: torch.pow(a.abs() + 0.5, b), "FLOOR_DIV": lambda a, b: torch.floor(a / b),
    "EQUAL": torch.eq, "GREATER": torch.gt, "LESS": torch.lt,
}


@pytest.mark.parametrize("op", sorted(EW))
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_broadcast(op, dtype):
    def make(net, n, a, b):
        if op == "POW":
            a = n.add_unary(a, t.UnaryOperation.ABS).get_output(0)
            half = const(net, n, np.full((1, 1, 1), 0.5, dtype=dtype))
            a = n.add_elementwise(a, half, t.ElementWiseOperation.SUM).get_output(0)
        return n.add_elementwise(a, b, getattr(t.ElementWiseOperation, op)).get_output(0)

    a, b = rand(2, 1, 4, dtype=dtype), rand(1, 3, 4, dtype=dtype, seed=1)
    if op == "EQUAL":
        b = torch.where(torch.rand(1, 3, 4) > 0.5, a[:1], b)
    got = run1(build({"a": (2, 1, 4), "b": (1, 3, 4)}, make, dtype), a=a, b=b)
    want = EW[op](a.float(), b.float())
    if want.dtype == torch.bool:
        assert got.dtype == torch.bool and torch.equal(got, want)
    else:
        close(got, want, dtype)


def test_integer_and_bool_elementwise():
    def make(net, n, a, b):
        ops = [n.add_elementwise(a, b, getattr(t.ElementWiseOperation, o)).get_output(0)
               for o in ("DIV", "FLOOR_DIV", "POW")]
        ga = n.add_elementwise(a, b, t.ElementWiseOperation.GREATER).get_output(0)
        lb = n.add_elementwise(a, b, t.ElementWiseOperation.LESS).get_output(0)
        return ops + [n.add_elementwise(ga, lb, getattr(t.ElementWiseOperation, o)).get_output(0)
                      for o in ("AND", "OR", "XOR")]

    a = torch.tensor([7, -7, 5, -9, 3], dtype=torch.int32)
    b = torch.tensor([2, 2, -3, 4, 2], dtype=torch.int32)
    net = build({"a": ((5,), t.int32), "b": ((5,), t.int32)}, make)
    div, fdiv, pw, land, lor, lxor = R.run(net, {"a": a, "b": b}).values()
    assert div.tolist() == [3, -3, -1, -2, 1]  # integer DIV truncates toward zero
    assert fdiv.tolist() == [3, -4, -2, -3, 1]
    assert pw.dtype == torch.int32 and pw[[0, 1, 3, 4]].tolist() == [49, 49, 6561, 9]  # 5 ** -3: unspecified
    assert land.tolist() == [False] * 5 and lor.tolist() == (a != b).tolist() and lxor.tolist() == lor.tolist()


UNARY = {
    "EXP": torch.exp, "LOG": lambda x: torch.log(x.abs() + 0.1), "SQRT": lambda x: torch.sqrt(x.abs()),
    "RECIP": torch.reciprocal, "ABS": torch.abs, "NEG": torch.neg, "SIN": torch.sin, "COS": torch.cos,
    "TAN": lambda x: torch.tan(x * 0.5), "SINH": torch.sinh, "COSH": torch.cosh,
    "ASIN": lambda x: torch.asin(x.clamp(-0.9, 0.9)), "ACOS": lambda x: torch.acos(x.clamp(-0.9, 0.9)),
    "ATAN": torch.atan, "ASINH": torch.asinh, "ACOSH": lambda x: torch.acosh(x.abs() + 1.1),
    "ATANH": lambda x: torch.atanh(x.clamp(-0.9, 0.9)), "CEIL": torch.ceil, "FLOOR": torch.floor,
    "ERF": torch.erf, "SIGN": torch.sign, "ROUND": torch.round, "ISINF": torch.isinf, "ISNAN": torch.isnan,
}
# the same input transforms, expressed as TensorRT layers before the unary under test
PRE = {"LOG": "abs+0.1", "SQRT": "abs", "TAN": "*0.5", "ASIN": "clip", "ACOS": "clip", "ATANH": "clip",
       "ACOSH": "abs+1.1"}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(op):
    def make(net, n, x):
        pre = PRE.get(op, "")
        if pre.startswith("abs"):
            x = n.add_unary(x, t.UnaryOperation.ABS).get_output(0)
        if "+" in pre:
            x = n.add_elementwise(x, const(net, n, np.full((1, 1), float(pre.split("+")[1]), np.float32)),
                                  t.ElementWiseOperation.SUM).get_output(0)
        if pre == "*0.5":
            x = n.add_elementwise(x, const(net, n, np.full((1, 1), 0.5, np.float32)),
                                  t.ElementWiseOperation.PROD).get_output(0)
        if pre == "clip":
            a = n.add_activation(x, t.ActivationType.CLIP)
            a.alpha, a.beta = -0.9, 0.9
            x = a.get_output(0)
        return n.add_unary(x, getattr(t.UnaryOperation, op)).get_output(0)

    x = rand(3, 7) * 2
    x[0, :3] = torch.tensor([0.5, 1.5, -2.5])  # ROUND: halves go to even
    got = run1(build({"x": (3, 7)}, make), x=x)
    want = UNARY[op](x)
    if want.dtype == torch.bool:
        assert torch.equal(got, want)
    else:
        close(got, want, "float32")


ACT = {
    "RELU": (0, 0, torch.relu), "SIGMOID": (0, 0, torch.sigmoid), "TANH": (0, 0, torch.tanh),
    "LEAKY_RELU": (0.1, 0, lambda x: F.leaky_relu(x, 0.1)), "ELU": (0.7, 0, lambda x: F.elu(x, 0.7)),
    "SELU": (1.6732632, 1.0507010, F.selu), "SOFTSIGN": (0, 0, F.softsign),
    "SOFTPLUS": (1.5, 2.0, lambda x: 1.5 * torch.log1p(torch.exp(2.0 * x))),
    "CLIP": (-0.5, 0.7, lambda x: x.clamp(-0.5, 0.7)),
    "HARD_SIGMOID": (0.2, 0.5, lambda x: (0.2 * x + 0.5).clamp(0, 1)),
    "SCALED_TANH": (1.7, 0.6, lambda x: 1.7 * torch.tanh(0.6 * x)),
    "THRESHOLDED_RELU": (0.3, 0, lambda x: torch.where(x > 0.3, x, 0.0)),
    "GELU_ERF": (0, 0, F.gelu), "GELU_TANH": (0, 0, lambda x: F.gelu(x, approximate="tanh")),
}


@pytest.mark.parametrize("kind", sorted(ACT))
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation(kind, dtype):
    alpha, beta, ref = ACT[kind]

    def make(net, n, x):
        a = n.add_activation(x, getattr(t.ActivationType, kind))
        a.alpha, a.beta = alpha, beta
        return a.get_output(0)

    x = rand(4, 9, dtype=dtype) * 2
    close(run1(build({"x": (4, 9)}, make, dtype), x=x), ref(x.float()), dtype)


@pytest.mark.parametrize("mode", ["UNIFORM", "CHANNEL", "ELEMENTWISE"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_modes_and_power(mode, dtype):
    count = {"UNIFORM": 1, "CHANNEL": 3, "ELEMENTWISE": 3 * 4}[mode]
    npd = np.float16 if dtype == "float16" else np.float32
    s = (np.linspace(0.5, 1.5, count)).astype(npd)
    sh = (np.linspace(0.1, 0.4, count) + 2).astype(npd)  # keeps the base of the power positive
    pw = np.full(count, 1.5, npd)

    def make(net, n, x):
        return n.add_scale_nd(x, getattr(t.ScaleMode, mode), net.weights(sh), net.weights(s),
                              net.weights(pw), 2).get_output(0)

    x = rand(2, 5, 3, 4, dtype=dtype)
    view = {"UNIFORM": (), "CHANNEL": (3, 1), "ELEMENTWISE": (3, 4)}[mode]
    want = (x.float() * torch.tensor(s).float().reshape(view) + torch.tensor(sh).float().reshape(view)) ** 1.5
    close(run1(build({"x": (2, 5, 3, 4)}, make, dtype), x=x), want, dtype)


def test_parametric_relu_and_select():
    def make(net, n, x, slope):
        pr = n.add_parametric_relu(x, slope).get_output(0)
        cond = n.add_elementwise(x, slope, t.ElementWiseOperation.GREATER).get_output(0)
        return pr, n.add_select(cond, x, slope).get_output(0)

    x, slope = rand(2, 3, 4), rand(1, 3, 1, seed=1)
    pr, sel = R.run(build({"x": (2, 3, 4), "slope": (1, 3, 1)}, make), {"x": x, "slope": slope}).values()
    close(pr, torch.where(x >= 0, x, x * slope), "float32")
    close(sel, torch.where(x > slope, x, slope), "float32")


# ---- shape manipulation --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_shuffle_transpose_reshape_transpose(dtype):
    def make(net, n, x):
        s = n.add_shuffle(x)
        s.first_transpose, s.reshape_dims, s.second_transpose = (0, 2, 1, 3), (0, -1, 2), (2, 0, 1)
        return s.get_output(0)

    x = rand(2, 3, 4, 6, dtype=dtype)
    want = x.permute(0, 2, 1, 3).reshape(2, -1, 2).permute(2, 0, 1)
    close(run1(build({"x": (2, 3, 4, 6)}, make, dtype), x=x), want, dtype)


def test_shuffle_zero_is_not_placeholder():
    def make(net, n, x):
        s = n.add_shuffle(x)
        s.zero_is_placeholder = False
        s.reshape_dims = (0, 3)
        return s.get_output(0)

    got = run1(build({"x": (0, 3)}, make), x=torch.empty(0, 3))
    assert got.shape == (0, 3)


def test_dynamic_reshape_from_shape_tensors():
    """shape -> gather -> elementwise(int64) -> concat -> shuffle input 1, on a dynamic batch."""
    def make(net, n, x):
        shp = n.add_shape(x).get_output(0)
        batch = n.add_gather(shp, const(net, n, np.array([0], np.int64)), 0).get_output(0)
        two = const(net, n, np.array([2], np.int64))
        doubled = n.add_elementwise(batch, two, t.ElementWiseOperation.PROD).get_output(0)
        dims = n.add_concatenation([doubled, const(net, n, np.array([-1], np.int64))])
        dims.axis = 0
        s = n.add_shuffle(x)
        s.set_input(1, dims.get_output(0))
        return s.get_output(0)

    net = netdef.Network()
    x_in = net.network.add_input("x", t.float32, (-1, 4, 3))
    net.network.mark_output(make(net, net.network, x_in))
    net.inputs.append(netdef.Input("x", ((1, 2, 4), 4, 3)))
    for b in (1, 3):
        x = rand(b, 4, 3)
        assert torch.equal(run1(net, x=x), x.reshape(2 * b, -1))
    with pytest.raises(netdef.NetdefError, match=r"'x' dim 0 is \d+, outside the range"):
        R.run(net, {"x": rand(5, 4, 3)})


SLICE_MODES = {
    "STRICT_BOUNDS": lambda x: x[:, 1:6:2],
    "WRAP": lambda x: x[:, torch.tensor([-2, 1, 4, 7]) % 5],
    "CLAMP": lambda x: x[:, torch.tensor([-2, 1, 4, 7]).clamp(0, 4)],
    "REFLECT": lambda x: x[:, torch.tensor([2, 1, 4, 1])],  # -2 -> 2, 7 -> 1 (period 8)
    "FILL": lambda x: torch.cat([torch.full((2, 1), 9.0), x[:, [1, 4]], torch.full((2, 1), 9.0)], 1),
}


@pytest.mark.parametrize("mode", sorted(SLICE_MODES))
def test_slice_modes(mode):
    start, size, stride = ((0, 1), (2, 2), (1, 2)) if mode == "STRICT_BOUNDS" else ((0, -2), (2, 4), (1, 3))

    def make(net, n, x):
        s = n.add_slice(x, start, size, stride)
        s.mode = getattr(t.SampleMode, mode)
        if mode == "FILL":
            s.set_input(4, const(net, n, np.array(9.0, np.float32)))
        return s.get_output(0)

    x = rand(2, 5)
    assert torch.equal(run1(build({"x": (2, 5)}, make), x=x), SLICE_MODES[mode](x))


def test_slice_dynamic_inputs_with_axes():
    def make(net, n, x, start):
        s = n.add_slice(x, (0,), (2,), (1,))
        s.set_input(1, start)
        s.set_input(3, const(net, n, np.array([-1], np.int64)))  # stride
        s.set_input(5, const(net, n, np.array([-1], np.int64)))  # axes: the last one
        return s.get_output(0)

    x = rand(2, 3, 6)
    net = build({"x": (2, 3, 6), "start": ((1,), t.int64)}, make)
    got = run1(net, x=x, start=torch.tensor([4]))
    assert torch.equal(got, x[..., [4, 3]])


def test_concat_padding_squeeze_unsqueeze_identity_cast():
    def make(net, n, a, b):
        c = n.add_concatenation([a, b])
        c.axis = 2
        p = n.add_padding_nd(c.get_output(0), (1, 0), (0, -1)).get_output(0)
        u = n.add_unsqueeze(p, const(net, n, np.array([0, -1], np.int64))).get_output(0)
        s = n.add_squeeze(u, const(net, n, np.array([-1], np.int64))).get_output(0)
        i = n.add_identity(s).get_output(0)
        return n.add_cast(i, t.int32).get_output(0), n.add_cast(i, t.float16).get_output(0)

    a, b = rand(1, 2, 2, 4) * 3, rand(1, 2, 1, 4, seed=1) * 3
    net = build({"a": (1, 2, 2, 4), "b": (1, 2, 1, 4)}, make)
    as_int, as_half = R.run(net, {"a": a, "b": b}).values()
    want = F.pad(torch.cat([a, b], 2), (0, -1, 1, 0)).unsqueeze(0)
    assert as_int.dtype == torch.int32 and torch.equal(as_int, want.to(torch.int32))  # truncation
    assert as_half.dtype == torch.float16 and torch.equal(as_half, want.half())


# ---- gather / scatter / one-hot / nonzero / topk / cumulative / fill ------------------------------
@pytest.mark.parametrize("mode", ["DEFAULT", "DEFAULT_BATCHED", "ELEMENT", "ND"])
def test_gather_modes(mode):
    x = rand(3, 4, 5)
    cases = {
        "DEFAULT": (torch.tensor([[2, -1], [0, 0]], dtype=torch.int32), 1, 0,
                    lambda i: x[:, i.long() % 4]),
        "DEFAULT_BATCHED": (torch.tensor([[1, 2], [0, 0], [3, 1]], dtype=torch.int32), 1, 1,
                            lambda i: torch.stack([x[b, i[b].long()] for b in range(3)])),
        "ELEMENT": (torch.randint(0, 5, (3, 4, 2), dtype=torch.int32), 2, 0,
                    lambda i: torch.gather(x, 2, i.long())),
        "ND": (torch.tensor([[0, 1], [2, 3]], dtype=torch.int32), 0, 0,
               lambda i: x[i[:, 0].long(), i[:, 1].long()]),
    }
    idx, axis, nb, ref = cases[mode]

    def make(net, n, data, ind):
        g = n.add_gather_v2(data, ind, getattr(t.GatherMode, mode.split("_")[0]))
        g.axis, g.num_elementwise_dims = axis, nb
        return g.get_output(0)

    net = build({"x": (3, 4, 5), "i": (tuple(idx.shape), t.int32)}, make)
    assert torch.equal(R.run(net, {"x": x, "i": idx})[net.network.get_output(0).name], ref(idx))


@pytest.mark.parametrize("mode", ["ELEMENT", "ND"])
def test_scatter_modes(mode):
    x = rand(3, 4)
    if mode == "ELEMENT":
        idx, upd = torch.tensor([[1, 0, 3], [2, 2, 0], [0, 1, 2]], dtype=torch.int32), rand(3, 3, seed=1)
        want = x.scatter(1, idx.long(), upd)
    else:
        idx, upd = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32), torch.tensor([7.0, 8.0])
        want = x.clone()
        want[0, 1], want[2, 3] = 7.0, 8.0

    def make(net, n, data, ind, u):
        s = n.add_scatter(data, ind, u, getattr(t.ScatterMode, mode))
        s.axis = 1
        return s.get_output(0)

    net = build({"x": (3, 4), "i": (tuple(idx.shape), t.int32), "u": tuple(upd.shape)}, make)
    assert torch.equal(run1(net, x=x, i=idx, u=upd), want)


def test_one_hot_nonzero_topk_cumulative():
    def make(net, n, x, idx):
        oh = n.add_one_hot(idx, const(net, n, np.array([-1.0, 2.0], np.float32)),
                           const(net, n, np.array(4, np.int32)), 0).get_output(0)
        gt = n.add_elementwise(x, const(net, n, np.zeros((1, 1), np.float32)),
                               t.ElementWiseOperation.GREATER).get_output(0)
        nz = n.add_non_zero(gt).get_output(0)
        tk = n.add_topk(x, t.TopKOperation.MIN, 2, 2)
        cu = n.add_cumulative(x, const(net, n, np.array(1, np.int32)), t.CumulativeOperation.SUM, True, True)
        return [oh, nz, tk.get_output(0), tk.get_output(1), cu.get_output(0)]

    x, idx = rand(3, 5), torch.tensor([3, -1, 0], dtype=torch.int32)
    net = build({"x": (3, 5), "idx": ((3,), t.int32)}, make)
    oh, nz, vals, inds, cum = R.run(net, {"x": x, "idx": idx}).values()
    assert torch.equal(oh, torch.where(F.one_hot(idx.long() % 4, 4).T.bool(), 2.0, -1.0))
    assert nz.dtype == torch.int32 and torch.equal(nz.long(), torch.nonzero(x > 0).T)
    want_v, want_i = torch.topk(x, 2, 1, largest=False)
    assert torch.equal(vals, want_v) and torch.equal(inds.long(), want_i) and inds.dtype == torch.int32
    excl_rev = x.flip(1).cumsum(1).flip(1) - x
    close(cum, excl_rev, "float32")


def test_fill_linspace_dynamic():
    def make(net, n, shp):
        f = n.add_fill((0, 0), t.FillOperation.LINSPACE, t.float32)
        f.set_input(0, shp)
        f.set_input(1, const(net, n, np.array(1.5, np.float32)))
        f.set_input(2, const(net, n, np.array([0.5, -1.0], np.float32)))
        return f.get_output(0)

    net = build({"s": ((2,), t.int64)}, make)
    got = run1(net, s=torch.tensor([3, 4]))
    want = 1.5 + 0.5 * torch.arange(3.0)[:, None] - torch.arange(4.0)[None]
    assert torch.equal(got, want)


# ---- reductions, normalization, softmax, matmul, einsum, resize ------------------------------------
@pytest.mark.parametrize("op", ["SUM", "AVG", "MAX", "MIN", "PROD"])
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reduce(op, keep, dtype):
    def make(net, n, x):
        return n.add_reduce(x, getattr(t.ReduceOperation, op), 0b1010, keep).get_output(0)

    x = rand(2, 3, 4, 5, dtype=dtype) * 0.7 + (1 if op == "PROD" else 0)
    ref = {"SUM": torch.sum, "AVG": torch.mean, "MAX": torch.amax, "MIN": torch.amin,
           "PROD": lambda v, d, keepdim: v.prod(3, keepdim=keepdim).prod(1, keepdim=keepdim)}[op]
    close(run1(build({"x": (2, 3, 4, 5)}, make, dtype), x=x), ref(x.float(), (1, 3), keepdim=keep), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_matmul_ops(dtype):
    def make(net, n, a, b, v):
        sm = n.add_softmax(a)
        sm.axes = 1 << 1
        mm = n.add_matrix_multiply(sm.get_output(0), t.MatrixOperation.TRANSPOSE, b, t.MatrixOperation.NONE)
        mv = n.add_matrix_multiply(b, t.MatrixOperation.TRANSPOSE, v, t.MatrixOperation.VECTOR)
        return mm.get_output(0), mv.get_output(0)

    a, b, v = rand(2, 4, 3, dtype=dtype), rand(1, 4, 5, dtype=dtype, seed=1), rand(2, 4, dtype=dtype, seed=2)
    net = build({"a": (2, 4, 3), "b": (1, 4, 5), "v": (2, 4)}, make, dtype)
    mm, mv = R.run(net, {"a": a, "b": b, "v": v}).values()
    sm = torch.softmax(a.float(), 1).to(a.dtype).float()
    close(mm, sm.transpose(-1, -2) @ b.float(), dtype)
    close(mv, (b.float().transpose(-1, -2) @ v.float().unsqueeze(-1)).squeeze(-1), dtype)


def test_einsum():
    def make(net, n, a, b):
        return n.add_einsum([a, b], "bij,bjk->bik").get_output(0)

    a, b = rand(2, 3, 4), rand(2, 4, 5, seed=1)
    close(run1(build({"a": (2, 3, 4), "b": (2, 4, 5)}, make), a=a, b=b), a @ b, "float32")


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalization(groups, dtype):
    c = 4
    npd = np.float16 if dtype == "float16" else np.float32
    s_shape = (1, groups if groups > 1 else c, 1, 1)
    s = np.linspace(0.5, 1.5, s_shape[1]).astype(npd).reshape(s_shape)
    b = np.linspace(-1, 1, s_shape[1]).astype(npd).reshape(s_shape)

    def make(net, n, x):
        norm = n.add_normalization(x, const(net, n, s), const(net, n, b), 0b1100)
        norm.num_groups, norm.epsilon = groups, 1e-3
        return norm.get_output(0)

    x = rand(2, c, 3, 5, dtype=dtype) * 2 + 1
    xf = x.float()
    if groups == 1:
        want = F.instance_norm(xf, eps=1e-3) * torch.tensor(s).float() + torch.tensor(b).float()
    else:  # v1 layers: one scale/bias per group
        g = F.group_norm(xf, groups, eps=1e-3).reshape(2, groups, c // groups, 3, 5)
        want = (g * torch.tensor(s).float().unsqueeze(2) + torch.tensor(b).float().unsqueeze(2)).reshape(xf.shape)
    close(run1(build({"x": (2, c, 3, 5)}, make, dtype), x=x), want, dtype)


def test_layer_norm_negative_axis_v2():
    s, b = np.linspace(0.5, 1.5, 6).astype(np.float32), np.linspace(-1, 1, 6).astype(np.float32)

    def make(net, n, x):
        return n.add_normalization_v2(x, const(net, n, s.reshape(1, 1, 6)), const(net, n, b.reshape(1, 1, 6)),
                                      1 << 2).get_output(0)

    x = rand(2, 3, 6)
    want = F.layer_norm(x, (6,), torch.tensor(s), torch.tensor(b))
    close(run1(build({"x": (2, 3, 6)}, make), x=x), want, "float32")


RESIZE = {
    "nearest_asym_floor": ("NEAREST", "ASYMMETRIC", "FLOOR", lambda x: F.interpolate(x, size=(5, 9), mode="nearest")),
    "nearest_half_pixel_round": ("NEAREST", "HALF_PIXEL", "HALF_UP",
                                 lambda x: F.interpolate(x, size=(5, 9), mode="nearest-exact")),
    "linear_half_pixel": ("LINEAR", "HALF_PIXEL", "FLOOR",
                          lambda x: F.interpolate(x, size=(5, 9), mode="bilinear", align_corners=False)),
    "linear_align": ("LINEAR", "ALIGN_CORNERS", "FLOOR",
                     lambda x: F.interpolate(x, size=(5, 9), mode="bilinear", align_corners=True)),
    "cubic_half_pixel": ("CUBIC", "HALF_PIXEL", "FLOOR",
                         lambda x: F.interpolate(x, size=(5, 9), mode="bicubic", align_corners=False)),
}


@pytest.mark.parametrize("case", sorted(RESIZE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_resize(case, dtype):
    mode, transform, rounding, ref = RESIZE[case]

    def make(net, n, x):
        r = n.add_resize(x)
        r.shape = (1, 2, 5, 9)
        r.resize_mode = getattr(t.InterpolationMode, mode)
        r.coordinate_transformation = getattr(t.ResizeCoordinateTransformation, transform)
        r.nearest_rounding = getattr(t.ResizeRoundMode, rounding)
        r.cubic_coeff = -0.75
        return r.get_output(0)

    x = rand(1, 2, 4, 6, dtype=dtype)
    close(run1(build({"x": (1, 2, 4, 6)}, make, dtype), x=x), ref(x.float()), dtype)


def test_resize_scales_and_single_pixel_selector():
    def make(net, n, x):
        up = n.add_resize(x)
        up.scales = (1, 1, 2, 3)
        one = n.add_resize(x)
        one.shape = (1, 2, 1, 1)
        one.resize_mode = t.InterpolationMode.LINEAR
        one.coordinate_transformation = t.ResizeCoordinateTransformation.HALF_PIXEL
        one.selector_for_single_pixel = t.ResizeSelector.UPPER
        return up.get_output(0), one.get_output(0)

    x = rand(1, 2, 4, 6)
    up, one = R.run(build({"x": (1, 2, 4, 6)}, make), {"x": x}).values()
    assert torch.equal(up, x.repeat_interleave(2, 2).repeat_interleave(3, 3))
    assert torch.equal(one, x[..., :1, :1])  # UPPER picks the upper-left pixel


# ---- quantization, assertion, constants ---------------------------------------------------------
def test_quantize_dequantize_int8_per_channel_and_fp8():
    scale = np.array([0.02, 0.05, 0.1], np.float32)

    def make(net, n, x):
        s = const(net, n, scale)
        q = n.add_quantize(x, s, t.int8)
        q.axis = 1
        dq = n.add_dequantize(q.get_output(0), s, t.float32)
        dq.axis = 1
        s8 = const(net, n, np.array(0.01, np.float32))
        q8 = n.add_quantize(x, s8, t.fp8)
        return q.get_output(0), dq.get_output(0), n.add_dequantize(q8.get_output(0), s8, t.float32).get_output(0)

    x = rand(2, 3, 4) * 4
    q, dq, dq8 = R.run(build({"x": (2, 3, 4)}, make), {"x": x}).values()
    sc = torch.tensor(scale).reshape(1, 3, 1)
    want_q = torch.round(x / sc).clamp(-128, 127)
    assert q.dtype == torch.int8 and torch.equal(q.float(), want_q)
    assert torch.equal(dq, want_q * sc)
    assert torch.equal(dq8, (x / 0.01).clamp(-448, 448).to(torch.float8_e4m3fn).float() * 0.01)


def test_bfloat16_constant_weights_read_through_pointer():
    import ml_dtypes

    w = np.linspace(-2, 2, 6).astype(ml_dtypes.bfloat16).reshape(2, 3)

    def make(net, n, x):
        c = n.add_constant((2, 3), net.weights(w)).get_output(0)
        return n.add_elementwise(x, c, t.ElementWiseOperation.SUM).get_output(0)

    net = netdef.Network()
    x = net.network.add_input("x", t.bfloat16, (2, 3))
    net.network.mark_output(make(net, net.network, x))
    xv = rand(2, 3).to(torch.bfloat16)
    got = run1(net, x=xv)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, (xv.float() + torch.tensor(w.astype(np.float32))).to(torch.bfloat16))


def test_assertion_names_layer_and_message():
    def make(net, n, x):
        cond = n.add_elementwise(x, const(net, n, np.zeros((1,), np.float32)), t.ElementWiseOperation.GREATER)
        a = n.add_assertion(cond.get_output(0), "x must be positive")
        a.name = "check_positive"
        return n.add_identity(x).get_output(0)

    net = build({"x": (3,)}, make)
    assert torch.equal(run1(net, x=torch.tensor([1.0, 2.0, 3.0])), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(netdef.NetdefError, match="check_positive.*x must be positive"):
        R.run(net, {"x": torch.tensor([1.0, -2.0, 3.0])})


# ---- dtype policy, all_tensors, options, errors ----------------------------------------------------
def test_fp16_layers_round_each_output_and_float64_does_not():
    def make(net, n, x):
        y = n.add_elementwise(x, x, t.ElementWiseOperation.PROD).get_output(0)
        return n.add_elementwise(y, const(net, n, np.full((1,), 1e-4, np.float16)), t.ElementWiseOperation.SUM).get_output(0)

    x = torch.tensor([1.0001, 3.0, 0.1], dtype=torch.float16)
    net = build({"x": (3,)}, make, "float16")
    half = run1(net, x=x)
    want = ((x.float() * x.float()).half().float() + torch.tensor(1e-4, dtype=torch.float16).float()).half()
    assert half.dtype == torch.float16 and torch.equal(half, want)
    wide = R.run(net, {"x": x}, compute_dtype=torch.float64)
    (wide,) = wide.values()
    assert wide.dtype == torch.float64
    assert torch.equal(wide, x.double() * x.double() + torch.tensor(1e-4, dtype=torch.float16).double())


def test_all_tensors_numpy_inputs_and_cached_program():
    w = rand(4, 3, 1, 1).numpy()

    def make(net, n, x):
        c = n.add_convolution_nd(x, 4, (1, 1), net.weights(w))
        c.name = "conv"
        return n.add_activation(c.get_output(0), t.ActivationType.RELU).get_output(0)

    net = build({"x": (1, 3, 2, 2)}, make)
    x = rand(1, 3, 2, 2).numpy()
    every = R.run(net, {"x": x}, all_tensors=True)
    conv_out = net.network.get_layer(0).get_output(0).name
    assert list(every)[0] == net.network.get_output(0).name and "x" in every and conv_out in every
    close(every[conv_out], F.conv2d(torch.tensor(x), torch.tensor(w)), "float32")
    assert R.run(net, {"x": x}).keys() == {net.network.get_output(0).name}
    program = R.compile(net)
    close(program({"x": x})[net.network.get_output(0).name], torch.relu(every[conv_out]), "float32")


def test_bad_inputs_name_the_input():
    net = build({"x": (2, 3)}, lambda net, n, x: n.add_identity(x).get_output(0))
    with pytest.raises(netdef.NetdefError, match="unknown input 'y'"):
        R.run(net, {"y": rand(2, 3)})
    with pytest.raises(netdef.NetdefError, match="missing input 'x'"):
        R.run(net, {})
    with pytest.raises(netdef.NetdefError, match="'x' has rank 3"):
        R.run(net, {"x": rand(2, 3, 1)})
    with pytest.raises(netdef.NetdefError, match=r"'x' dim 1 is 4 but the network was built for 3; shape \(2, 4\)"):
        R.run(net, {"x": rand(2, 4)})
    with pytest.raises(netdef.NetdefError, match="'x' has dtype torch.float64"):
        R.run(net, {"x": rand(2, 3).double()})


def test_unsupported_layer_names_layer_and_type():
    # ragged softmax: no netdef op and no ONNX operator makes one, so the runner leaves it out
    assert "RAGGED_SOFTMAX" not in R.registry.LAYERS, "pick a layer type the runner still lacks"

    def make(net, n, x):
        r = n.add_ragged_softmax(x, const(net, n, np.array([[2], [1], [2]], np.int32)))
        r.name = "ragged"
        return r.get_output(0)

    net = build({"x": (3, 2)}, make)
    with pytest.raises(netdef.NetdefError, match="'ragged' has type RAGGED_SOFTMAX"):
        R.run(net, {"x": rand(3, 2)})
