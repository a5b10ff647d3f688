"""Structural tests of the functional ops against the real TensorRT(-RTX) network API:
emitted layers, names, key attributes, output shapes and dtypes (fp32/fp16, static/dynamic),
one engine build per op family, and errors that name the module path and the user's line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef import backend, nn
from netdef import functional as F

trt = backend.trt()
ACT, EW, UN, RED = trt.ActivationType, trt.ElementWiseOperation, trt.UnaryOperation, trt.ReduceOperation


class _Torch:
    """torch.nn.functional, falling back to torch: the torch twin of netdef.functional."""

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name, None) or getattr(torch, name)


T = _Torch()
DTYPES = ["float32", "float16"]
SHAPE = (2, 3, 4, 5)


def trace(fn, shape=SHAPE, dtype="float32", dynamic=False, input_dtype="float32"):
    """Trace `fn(x)`; returns the network and the Tensors fn returned (before output casts).

    dynamic: the first dimension is (1, shape[0], 2*shape[0]).
    """
    got = []

    def model(x):
        r = fn(x)
        got.extend(r if isinstance(r, (tuple, list)) else [r])
        return r

    dims = tuple((1, d, 2 * d) if dynamic and i == 0 else d for i, d in enumerate(shape))
    net = netdef.trace(model, netdef.Input("x", dims, input_dtype), dtype=dtype)
    return net, got


def ops(net):
    """(name, layer type) of every layer except the casts at the network boundary."""
    result = []
    for layer in net.layers:
        if layer.type.name == "CAST" and (layer.get_input(0).is_network_input or layer.get_output(0).is_network_output):
            continue
        result.append((layer.name, layer.type.name))
    return result


def layer(net, name):
    found = [la for la in net.layers if la.name == name]
    assert found, f"no layer {name!r} in {[la.name for la in net.layers]}"
    return backend.downcast(found[0])


def expected_shapes(torch_fn, shape, dynamic):
    """torch's output shapes; with a dynamic batch, dims that change with the batch read -1."""
    def run(batch):
        x = torch.randn((batch,) + tuple(shape[1:]))
        r = torch_fn(x)
        return [tuple(t.shape) for t in (r if isinstance(r, (tuple, list)) else [r])]

    a = run(shape[0])
    if not dynamic:
        return a
    b = run(shape[0] + 3)
    return [tuple(p if p == q else -1 for p, q in zip(sa, sb)) for sa, sb in zip(a, b)]


# ---- every op: output shape and dtype agree with torch ------------------------------
# (id, fn(ns, x) run with ns = netdef.functional and with torch, input shape, output is bool)
W45 = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
CASES = [
    ("add_scalar", lambda ns, x: ns.add(x, 2.5), SHAPE, False),
    ("add_bcast", lambda ns, x: ns.add(x, x[0, :, :1]), SHAPE, False),
    ("sub_alpha", lambda ns, x: ns.sub(x, x, alpha=2), SHAPE, False),
    ("mul", lambda ns, x: ns.mul(x, x.sum(-1, keepdim=True)), SHAPE, False),
    ("div", lambda ns, x: ns.div(x, 3), SHAPE, False),
    ("div_floor", lambda ns, x: ns.div(x, 0.7, rounding_mode="floor"), SHAPE, False),
    ("div_trunc", lambda ns, x: ns.div(x, 0.7, rounding_mode="trunc"), SHAPE, False),
    ("pow", lambda ns, x: ns.pow(x, 2), SHAPE, False),
    ("maximum", lambda ns, x: ns.maximum(x, x[:, :1]), SHAPE, False),
    ("minimum", lambda ns, x: ns.minimum(x, x[:, :1]), SHAPE, False),
    ("eq", lambda ns, x: ns.eq(x, x[:1]), SHAPE, True),
    ("ne", lambda ns, x: ns.ne(x, 0.5), SHAPE, True),
    ("lt", lambda ns, x: ns.lt(x, 0.5), SHAPE, True),
    ("le", lambda ns, x: ns.le(x, 0.5), SHAPE, True),
    ("gt", lambda ns, x: ns.gt(x, 0.5), SHAPE, True),
    ("ge", lambda ns, x: ns.ge(x, 0.5), SHAPE, True),
    ("logical_and", lambda ns, x: ns.logical_and(x > 0, x < 1), SHAPE, True),
    ("logical_or", lambda ns, x: ns.logical_or(x > 0, x < 1), SHAPE, True),
    ("logical_not", lambda ns, x: ns.logical_not(x > 0), SHAPE, True),
    *[(u, (lambda u: lambda ns, x: getattr(ns, u)(x))(u), SHAPE, False)
      for u in ["neg", "abs", "sqrt", "rsqrt", "exp", "log", "erf", "sin", "cos", "floor", "ceil", "reciprocal"]],
    *[(a, (lambda a: lambda ns, x: getattr(ns, a)(x))(a), SHAPE, False)
      for a in ["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "gelu", "hardswish", "hardsigmoid",
                "elu", "selu", "softplus", "mish"]],
    ("prelu", lambda ns, x: ns.prelu(x, torch.full((3,), 0.25) if ns is T else np.full(3, 0.25, np.float32)), SHAPE, False),
    ("reshape", lambda ns, x: x.reshape(x.size(0), -1, 5), SHAPE, False),
    ("view", lambda ns, x: x.view(-1, 20), SHAPE, False),
    ("flatten", lambda ns, x: x.flatten(1), SHAPE, False),
    ("flatten_mid", lambda ns, x: ns.flatten(x, 1, 2), SHAPE, False),
    ("permute", lambda ns, x: x.permute(0, 2, 3, 1), SHAPE, False),
    ("transpose", lambda ns, x: x.transpose(-1, 1), SHAPE, False),
    ("squeeze", lambda ns, x: x[:, :1].squeeze(1), SHAPE, False),
    ("squeeze_all", lambda ns, x: x[:, :1, None].squeeze(), SHAPE, False),
    ("unsqueeze", lambda ns, x: x.unsqueeze(-2), SHAPE, False),
    ("expand", lambda ns, x: x[:, :1].expand(-1, 6, 4, 5), SHAPE, False),
    ("expand_new", lambda ns, x: x[0, :, :1].expand(2, 3, 4, 5), SHAPE, False),
    ("cat", lambda ns, x: ns.cat([x, x[:, :2]], 1), SHAPE, False),
    ("stack", lambda ns, x: ns.stack([x, x], -1), SHAPE, False),
    ("split_int", lambda ns, x: ns.split(x, 2, 1), SHAPE, False),
    ("split_list", lambda ns, x: x.split([1, 3], -2), SHAPE, False),
    ("chunk", lambda ns, x: x.chunk(2, 3), SHAPE, False),
    ("getitem_int", lambda ns, x: x[:, 1], SHAPE, False),
    ("getitem_neg", lambda ns, x: x[-1, ..., -2], SHAPE, False),
    ("getitem_step", lambda ns, x: x[:, ::2, 1:-1, -3:], SHAPE, False),
    ("getitem_none", lambda ns, x: x[None, :, None, 0], SHAPE, False),
    ("getitem_batch", lambda ns, x: x[1:], SHAPE, False),
    ("getitem_batch_step", lambda ns, x: x[:-1:2], SHAPE, False),
    ("getitem_clamped", lambda ns, x: x[:, -10:10], SHAPE, False),
    ("sum_all", lambda ns, x: ns.sum(x), SHAPE, False),
    ("sum", lambda ns, x: x.sum((1, -1), keepdim=True), SHAPE, False),
    ("mean", lambda ns, x: x.mean(-1), SHAPE, False),
    ("amax", lambda ns, x: ns.amax(x, 1), SHAPE, False),
    ("amin", lambda ns, x: ns.amin(x, (0, 2), keepdim=True), SHAPE, False),
    ("softmax", lambda ns, x: ns.softmax(x, 1), SHAPE, False),
    ("log_softmax", lambda ns, x: ns.log_softmax(x, -1), SHAPE, False),
    ("matmul", lambda ns, x: x @ x.transpose(-1, -2), SHAPE, False),
    ("matmul_vec", lambda ns, x: ns.matmul(x, x[0, 0, 0]), SHAPE, False),
    ("matmul_vec_left", lambda ns, x: ns.matmul(x[0, 0, :, 0], x), SHAPE, False),
    ("matmul_dot", lambda ns, x: ns.matmul(x[0, 0, 0], x[1, 0, 0]), SHAPE, False),
    ("matmul_bcast", lambda ns, x: ns.matmul(x, x[0, 0].transpose(0, 1)), SHAPE, False),
    ("linear", lambda ns, x: ns.linear(x, torch.from_numpy(W45) if ns is T else W45), SHAPE, False),
    ("where", lambda ns, x: ns.where(x > 0, x, 0.0), SHAPE, False),
    ("clamp", lambda ns, x: ns.clamp(x, -0.5, 0.5), SHAPE, False),
    ("clamp_tensor", lambda ns, x: ns.clamp(x, min=x[:, :1]), SHAPE, False),
    ("pad", lambda ns, x: ns.pad(x, (1, 2, 0, 1)), SHAPE, False),
    ("pad_reflect", lambda ns, x: ns.pad(x, (1, 2, 2, 1), mode="reflect"), SHAPE, False),
    ("pad_replicate_crop", lambda ns, x: ns.pad(x, (-1, 2, 0, 0, 1, 1), mode="replicate"), SHAPE, False),
    ("pad_batch", lambda ns, x: ns.pad(x, (0, 0, 0, 0, 0, 0, 1, 1), value=2.0), SHAPE, False),
]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,shape,is_bool", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_output_shape_and_dtype_match_torch(fn, shape, is_bool, dtype, dynamic):
    net, got = trace(lambda x: fn(F, x), shape, dtype, dynamic)
    want = expected_shapes(lambda x: fn(T, x), shape, dynamic)
    assert [t.shape for t in got] == want
    assert all(t.dtype == ("bool" if is_bool else dtype) for t in got)
    assert net.network.num_outputs == len(want)


# ---- elementwise ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,op,name", [
    (F.add, EW.SUM, "add"), (F.sub, EW.SUB, "sub"), (F.mul, EW.PROD, "mul"), (F.div, EW.DIV, "div"),
    (F.pow, EW.POW, "pow"), (F.maximum, EW.MAX, "maximum"), (F.minimum, EW.MIN, "minimum"),
    (F.eq, EW.EQUAL, "eq"), (F.lt, EW.LESS, "lt"), (F.gt, EW.GREATER, "gt"),
    (F.floor_divide, EW.FLOOR_DIV, "floor_divide"),
])
def test_binary_scalar_becomes_constant_of_tensor_dtype(fn, op, name, dtype):
    net, (y,) = trace(lambda x: fn(x, 3), dtype=dtype, dynamic=True)
    assert ops(net) == [("constant", "CONSTANT"), (name, "ELEMENTWISE")]
    assert layer(net, name).op == op
    const = layer(net, "constant")
    assert tuple(const.shape) == (1, 1, 1, 1)  # at the tensor's rank: no broadcast shuffle
    assert const.get_output(0).dtype == netdef.dtypes.to_trt(dtype)
    assert y.shape == (-1, 3, 4, 5)


def test_broadcast_prepends_dims_like_torch():
    bias = np.arange(5, dtype=np.float32) + 1
    net, (y,) = trace(lambda x: x + bias, dynamic=True)
    assert ops(net) == [("constant", "CONSTANT"), ("unsqueeze", "SHUFFLE"), ("add", "ELEMENTWISE")]
    assert tuple(layer(net, "unsqueeze").reshape_dims) == (1, 1, 1, 5)
    # the lower-rank operand may also be the dynamic one: its shape is read at run time
    net, (y,) = trace(lambda x: F.add(np.ones((2, 1, 3, 4, 5), np.float32), x), dynamic=True)
    assert y.shape == (2, -1, 3, 4, 5)
    assert tuple(layer(net, "unsqueeze").reshape_dims) == (1, -1, 3, 4, 5)


def test_type_promotion():
    net, (y, z, w) = trace(lambda x: (x * 0.5, x + 1, F.cast(x, "float16") + F.cast(x, "float32")),
                           input_dtype="int32")
    assert (y.dtype, z.dtype, w.dtype) == ("float32", "int32", "float32")
    # arrays are weights: stored in the dtype of the activation they meet, from either side
    bias = np.ones(5, np.float32)
    net, (y, z) = trace(lambda x: (x + bias, bias @ x.transpose(-1, -2)), dtype="float16")
    assert (y.dtype, z.dtype) == ("float16", "float16") and z.shape == (2, 3, 4)
    assert layer(net, "constant").get_output(0).dtype == netdef.dtypes.to_trt("float16")
    assert layer(net, "add").get_input(1).name == "unsqueeze"
    net, (y,) = trace(lambda x: F.div(x, 2), input_dtype="int32")
    assert y.dtype == "float32"  # torch: true division of integers is floating
    net, (y,) = trace(lambda x: F.div(x, 2, rounding_mode="trunc"), input_dtype="int32")
    assert y.dtype == "int32"


def test_div_rounding_modes_and_comparisons():
    net, _ = trace(lambda x: F.div(x, 2.0, rounding_mode="trunc"))
    assert [n for n, _ in ops(net)] == ["constant", "div", "sign", "abs", "floor", "mul"]
    assert [layer(net, n).op for n in ("sign", "abs", "floor")] == [UN.SIGN, UN.ABS, UN.FLOOR]
    net, _ = trace(lambda x: x <= 0.5)
    assert [(n, layer(net, n).op) for n, _ in ops(net)[1:]] == [("lt", EW.LESS), ("eq", EW.EQUAL), ("le", EW.OR)]
    net, _ = trace(lambda x: x != 0.5)
    assert [(n, layer(net, n).op) for n, _ in ops(net)[1:]] == [("eq", EW.EQUAL), ("ne", UN.NOT)]
    net, _ = trace(lambda x: F.logical_and(x, x > 0))
    assert "CAST" in [la.type.name for la in net.layers] and layer(net, "logical_and").op == EW.AND


@pytest.mark.parametrize("name,op", [
    ("neg", UN.NEG), ("abs", UN.ABS), ("sqrt", UN.SQRT), ("exp", UN.EXP), ("log", UN.LOG), ("erf", UN.ERF),
    ("sin", UN.SIN), ("cos", UN.COS), ("floor", UN.FLOOR), ("ceil", UN.CEIL), ("reciprocal", UN.RECIP),
])
def test_unary_ops(name, op):
    net, (y,) = trace(lambda x: getattr(F, name)(x), dtype="float16")
    assert ops(net) == [(name, "UNARY")] and layer(net, name).op == op and y.dtype == "float16"


def test_rsqrt_and_integer_unary_compute_in_float():
    net, _ = trace(F.rsqrt)
    assert [(n, layer(net, n).op) for n, _ in ops(net)] == [("sqrt", UN.SQRT), ("rsqrt", UN.RECIP)]
    net, (y,) = trace(F.exp, input_dtype="int32")
    assert [la.type.name for la in net.layers] == ["CAST", "UNARY"] and y.dtype == "float32"


# ---- activations --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,kind,alpha,beta", [
    (F.relu, ACT.RELU, None, None),
    (F.relu6, ACT.CLIP, 0.0, 6.0),
    (lambda x: F.leaky_relu(x, 0.2), ACT.LEAKY_RELU, 0.2, None),
    (F.sigmoid, ACT.SIGMOID, None, None),
    (F.tanh, ACT.TANH, None, None),
    (F.gelu, ACT.GELU_ERF, None, None),
    (lambda x: F.gelu(x, approximate="tanh"), ACT.GELU_TANH, None, None),
    (F.hardsigmoid, ACT.HARD_SIGMOID, 1 / 6, 0.5),
    (lambda x: F.elu(x, alpha=0.5), ACT.ELU, 0.5, None),
    (F.selu, ACT.SELU, 1.6732632423543772, 1.0507009873554805),
])
def test_single_layer_activations(fn, kind, alpha, beta, dtype):
    net, (y,) = trace(fn, dtype=dtype, dynamic=True)
    (name, ltype), = ops(net)
    act = layer(net, name)
    assert ltype == "ACTIVATION" and act.type == kind
    if alpha is not None:
        assert act.alpha == pytest.approx(alpha, rel=1e-6)
    if beta is not None:
        assert act.beta == pytest.approx(beta, rel=1e-6)
    assert (y.shape, y.dtype) == ((-1, 3, 4, 5), dtype)


def test_composed_activations():
    net, _ = trace(F.silu)
    assert ops(net) == [("sigmoid", "ACTIVATION"), ("mul", "ELEMENTWISE")]
    net, _ = trace(F.hardswish)
    assert ops(net) == [("hardsigmoid", "ACTIVATION"), ("mul", "ELEMENTWISE")]
    net, _ = trace(lambda x: F.softplus(x, beta=2.0, threshold=10.0))
    assert [n for n, _ in ops(net)] == ["softplus", "constant", "mul", "constant_1", "gt", "where"]
    sp = layer(net, "softplus")
    assert (sp.type, sp.alpha, sp.beta) == (ACT.SOFTPLUS, 0.5, 2.0)
    assert layer(net, "where").type == trt.LayerType.SELECT
    net, _ = trace(F.mish)
    assert [n for n, _ in ops(net)][-3:] == ["where", "tanh", "mul"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_slope_per_channel(dtype):
    net, (y,) = trace(lambda x: F.prelu(x, np.full(3, 0.25, np.float32)), dtype=dtype, dynamic=True)
    assert ops(net) == [("weight", "CONSTANT"), ("prelu", "PARAMETRIC_RELU")]
    w = layer(net, "weight")
    assert tuple(w.shape) == (1, 3, 1, 1) and w.get_output(0).dtype == netdef.dtypes.to_trt(dtype)
    with pytest.raises(netdef.TraceError, match="4 slopes"):
        trace(lambda x: F.prelu(x, np.ones(4, np.float32)))


# ---- shape ops ------------------------------------------------------------------------
def test_reshape_static_and_dynamic_batch():
    net, _ = trace(lambda x: x.view(6, 20))
    assert tuple(layer(net, "reshape").reshape_dims) == (6, 20)
    assert layer(net, "reshape").zero_is_placeholder is False
    # one unknown entry: TensorRT infers it, no shape arithmetic
    net, (y,) = trace(lambda x: x.flatten(1), dynamic=True)
    assert ops(net) == [("flatten", "SHUFFLE")] and tuple(layer(net, "flatten").reshape_dims) == (-1, 60)
    net, (y,) = trace(lambda x: x.reshape(-1, 5), dynamic=True)
    assert ops(net) == [("reshape", "SHUFFLE")] and y.shape == (-1, 5)
    # x.size(0) with -1: a runtime shape tensor feeds the shuffle
    net, (y,) = trace(lambda x: x.view(x.size(0), -1), dynamic=True)
    shuffle = layer(net, "reshape")
    assert shuffle.num_inputs == 2 and shuffle.get_input(1).name == "shape_concat"
    assert y.shape == (-1, 60)


def test_flatten_with_two_dynamic_dims_reads_the_shape():
    net = netdef.trace(lambda x: x.flatten(0, 1), netdef.Input("x", ((1, 2, 4), 3, (2, 4, 8))))
    names = [n for n, _ in ops(net)]
    assert names == ["shape_const", "shape", "dim_index", "dims", "shape_concat", "flatten"]
    assert tuple(layer(net, "dim_index").weights) == (2,)
    assert net.network.get_output(0).shape == (-1, -1)


def test_permute_transpose_squeeze_unsqueeze():
    net, _ = trace(lambda x: x.permute(0, 2, 3, 1))
    assert tuple(layer(net, "permute").first_transpose)[:4] == (0, 2, 3, 1)
    net, _ = trace(lambda x: F.transpose(x, 1, -1))
    assert tuple(layer(net, "transpose").first_transpose)[:4] == (0, 3, 2, 1)
    net, (y,) = trace(lambda x: x.unsqueeze(1), dynamic=True)
    assert tuple(layer(net, "unsqueeze").reshape_dims) == (-1, 1, 3, 4, 5)
    net, (y,) = trace(lambda x: x.squeeze(0), shape=(1, 3, 1, 5))
    assert y.shape == (3, 1, 5)
    net, (y,) = trace(lambda x: x.squeeze((2, 1)), shape=(1, 3, 1, 5))
    assert y.shape == (1, 3, 5)  # dim 1 has size 3: left alone, as in torch


def test_expand_uses_stride_zero_on_broadcast_axes_only():
    net, (y,) = trace(lambda x: x[:, :1].expand(-1, 6, -1, -1), dynamic=True)
    ex = layer(net, "expand")
    assert ex.type == trt.LayerType.SLICE
    assert (tuple(ex.axes), tuple(ex.start), tuple(ex.shape), tuple(ex.stride)) == ((1,), (0,), (6,), (0,))
    assert y.shape == (-1, 6, 4, 5)
    # a runtime size from x.size(0) goes in as a shape tensor
    net, (y,) = trace(lambda x: x[0, None].expand(x.size(0), 3, 4, 5), dynamic=True)
    assert layer(net, "expand").get_input(2) is not None and y.shape == (-1, 3, 4, 5)


def test_cat_stack_split_chunk():
    net, (y,) = trace(lambda x: F.cat([x, x], -1), dynamic=True)
    assert layer(net, "cat").axis == 3 and y.shape == (-1, 3, 4, 10)
    net, (y,) = trace(lambda x: F.stack([x, x], 1), dynamic=True)
    assert [n for n, _ in ops(net)] == ["unsqueeze", "unsqueeze_1", "stack"] and y.shape == (-1, 2, 3, 4, 5)
    net, parts = trace(lambda x: x.split([1, 2], 1), dynamic=True)
    s0, s1 = layer(net, "split"), layer(net, "split_1")
    assert (tuple(s0.axes), tuple(s0.start), tuple(s0.shape)) == ((1,), (0,), (1,))
    assert (tuple(s1.axes), tuple(s1.start), tuple(s1.shape)) == ((1,), (1,), (2,))
    assert [p.shape for p in parts] == [(-1, 1, 4, 5), (-1, 2, 4, 5)]
    net, parts = trace(lambda x: x.chunk(3, -1))
    assert [p.shape for p in parts] == [(2, 3, 4, 2), (2, 3, 4, 2), (2, 3, 4, 1)]


def test_getitem_layers():
    net, (y,) = trace(lambda x: x[:, 1:, ::2], dynamic=True)
    sl = layer(net, "getitem")
    assert ops(net) == [("getitem", "SLICE")]
    assert (tuple(sl.axes), tuple(sl.start), tuple(sl.shape), tuple(sl.stride)) == ((1, 2), (1, 0), (2, 2), (1, 2))
    net, (y,) = trace(lambda x: x[:, 0, None], dynamic=True)
    assert [n for n, _ in ops(net)] == ["slice", "getitem"]
    assert tuple(layer(net, "getitem").reshape_dims) == (-1, 1, 4, 5)
    # a negative index on the dynamic batch: the start is computed at run time
    net, (y,) = trace(lambda x: x[-1], dynamic=True)
    assert layer(net, "slice").get_input(1) is not None and y.shape == (3, 4, 5)


# ---- reductions -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,name,op,mask,keep", [
    (lambda x: x.sum(), "sum", RED.SUM, 0b1111, False),
    (lambda x: x.sum((1, -1), keepdim=True), "sum", RED.SUM, 0b1010, True),
    (lambda x: x.mean(-2), "mean", RED.AVG, 0b0100, False),
    (lambda x: F.amax(x, 0), "amax", RED.MAX, 0b0001, False),
    (lambda x: F.amin(x, keepdim=True), "amin", RED.MIN, 0b1111, True),
])
def test_reduce_axes_bitmask(fn, name, op, mask, keep, dtype):
    net, (y,) = trace(fn, dtype=dtype)
    red = layer(net, name)
    assert (red.op, red.axes, red.keep_dims) == (op, mask, keep) and y.dtype == dtype


def test_softmax_and_log_softmax():
    net, (y,) = trace(lambda x: x.softmax(-1), dtype="float16", dynamic=True)
    assert ops(net) == [("softmax", "SOFTMAX")] and layer(net, "softmax").axes == 0b1000
    net, (y,) = trace(lambda x: F.softmax(x, 1, dtype="float32"), dtype="float16")
    assert [t for _, t in ops(net)] == ["CAST", "SOFTMAX"] and y.dtype == "float32"
    net, _ = trace(lambda x: F.log_softmax(x, 1))
    assert [n for n, _ in ops(net)] == ["amax", "sub", "exp", "sum", "log", "sub_1"]
    assert layer(net, "amax").axes == layer(net, "sum").axes == 0b0010


# ---- linalg -------------------------------------------------------------------------
def test_matmul_vector_operands_and_broadcast_ranks():
    M = trt.MatrixOperation
    net, (y,) = trace(lambda x: F.matmul(x, x[0, 0, 0]), dynamic=True)
    mm = layer(net, "matmul")
    assert (mm.op0, mm.op1) == (M.NONE, M.VECTOR) and y.shape == (-1, 3, 4)
    net, (y,) = trace(lambda x: F.matmul(x[0, 0, 0], x[0, 0, 1]))
    assert (layer(net, "matmul").op0, layer(net, "matmul").op1) == (M.VECTOR, M.VECTOR) and y.shape == ()


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 7)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_is_transposed_matmul_then_bias_named_after_module(dtype):
    net = netdef.trace(Head(), netdef.Input("x", ((1, 2, 4), 3, 5)), dtype=dtype)
    names = [n for n, _ in ops(net)]
    assert names == ["fc/weight", "fc/matmul", "fc/bias", "fc"]
    assert tuple(layer(net, "fc/weight").shape) == (1, 7, 5)
    assert tuple(layer(net, "fc/bias").shape) == (1, 1, 7)
    mm = layer(net, "fc/matmul")
    assert (mm.op0, mm.op1) == (trt.MatrixOperation.NONE, trt.MatrixOperation.TRANSPOSE)
    assert layer(net, "fc").op == EW.SUM
    # in float16 a cast back to float32 follows; in float32 the module output is the network output
    assert net.module_outputs["fc"] == [["fc" if dtype == "float16" else "output"]]
    assert layer(net, "fc/weight").get_output(0).dtype == netdef.dtypes.to_trt(dtype)


def test_linear_without_bias_and_1d_input():
    net, (y,) = trace(lambda x: F.linear(x[0, 0, 0], W45), dtype="float16")
    assert y.shape == (4,) and layer(net, "matmul").op0 == trt.MatrixOperation.VECTOR


# ---- misc -----------------------------------------------------------------------------
def test_where_and_clamp():
    net, (y,) = trace(lambda x: F.where(x > 0, x, -1), dtype="float16", dynamic=True)
    assert layer(net, "where").type == trt.LayerType.SELECT and y.dtype == "float16"
    net, _ = trace(lambda x: F.clamp(x, 0.5))
    assert [(n, layer(net, n).op) for n, t in ops(net) if t == "ELEMENTWISE"] == [("maximum", EW.MAX)]
    net, _ = trace(lambda x: F.clamp(x, max=x[:1]))
    assert [n for n, t in ops(net) if t == "ELEMENTWISE"] == ["minimum"]


@pytest.mark.parametrize("mode,sample", [("constant", "FILL"), ("reflect", "REFLECT"),
                                         ("replicate", "CLAMP"), ("circular", "WRAP")])
def test_pad_is_one_slice_over_the_padded_axes(mode, sample):
    net, (y,) = trace(lambda x: F.pad(x, (1, 2, 3, 0), mode=mode), dynamic=True)
    pad = layer(net, "pad")
    assert pad.mode == getattr(trt.SampleMode, sample)
    assert (tuple(pad.axes), tuple(pad.start), tuple(pad.shape)) == ((3, 2), (-1, -3), (8, 7))
    assert y.shape == (-1, 3, 7, 8)
    assert (pad.num_inputs == 5) == (mode == "constant")


def test_pad_dynamic_axis_computes_its_size():
    net, (y,) = trace(lambda x: F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1), value=2.0), dtype="float16", dynamic=True)
    pad = layer(net, "pad")
    assert pad.get_input(2) is not None and tuple(pad.axes) == (0,) and y.shape == (-1, 3, 4, 5)
    assert layer(net, "pad_value").get_output(0).dtype == netdef.dtypes.to_trt("float16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_gathers_rows(dtype):
    table = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    net = netdef.trace(lambda i: F.embedding(i, table), netdef.Input("i", ((1, 2, 4), 7), "int32"), dtype=dtype)
    assert [n for n, _ in ops(net)] == ["weight", "embedding"]
    g = layer(net, "embedding")
    assert g.axis == 0 and g.get_output(0).shape == (-1, 7, 6)
    assert layer(net, "weight").get_output(0).dtype == netdef.dtypes.to_trt(dtype)


# ---- Tensor operators -----------------------------------------------------------------
@pytest.mark.parametrize("expr,name,first_is_input", [
    (lambda x: x + 1, "add", True), (lambda x: 1 + x, "add", False),
    (lambda x: x - 1, "sub", True), (lambda x: 1 - x, "sub", False),
    (lambda x: x * 2, "mul", True), (lambda x: 2 * x, "mul", False),
    (lambda x: x / 2, "div", True), (lambda x: 2 / x, "div", False),
    (lambda x: x // 2, "floor_divide", True), (lambda x: x ** 2, "pow", True),
    (lambda x: 2 ** x, "pow", False), (lambda x: x == 1, "eq", True), (lambda x: x < 1, "lt", True),
    (lambda x: x > 1, "gt", True), (lambda x: np.ones(5, np.float32) + x, "add", False),
    (lambda x: np.ones((2, 4), np.float32) @ x, "matmul", False), (lambda x: x @ np.ones((5, 2), np.float32), "matmul", True),
])
def test_operators_forward_to_functional(expr, name, first_is_input):
    net, _ = trace(expr)
    op = layer(net, name)
    assert (op.get_input(0).name == "x") == first_is_input
    assert (op.get_input(1).name == "x") != first_is_input


def test_tensor_methods():
    net, (a, b, c, d, e, f) = trace(lambda x: (-x, x @ x.transpose(2, 3), x.half(), x.to("float16").float(),
                                               x.contiguous(), x.mean((2, 3))), dynamic=True)
    assert layer(net, "neg").op == UN.NEG and b.shape == (-1, 3, 4, 4)
    assert (c.dtype, d.dtype) == ("float16", "float32") and e.name == "x"
    assert f.shape == (-1, 3)


# ---- one build per family ------------------------------------------------------------------
FAMILIES = {
    "elementwise_activation": lambda x: F.gelu(F.silu(x) * 2 - abs(F.sqrt(x)) / 3) + F.where(x > 0, F.mish(x), x),
    "shape": lambda x: F.cat([x.flatten(1).view(x.size(0), 3, -1), x[:, :, 1:].reshape(x.size(0), 3, -1)], 2)
    .permute(0, 2, 1)[..., None, ::2].expand(-1, -1, 4, -1),
    "reduce": lambda x: F.log_softmax(x, 1) + x.softmax(-1).sum(1, keepdim=True) + F.amax(x, -1, keepdim=True),
    "linalg": lambda x: F.linear(x, W45, np.ones(4, np.float32)) @ x + F.matmul(x[0, 0, :, 0], x)[..., None, :],
    "misc": lambda x: F.pad(F.clamp(x, -1, 1), (1, 1, 2, 2), mode="reflect") + F.pad(x, (1, 1, 2, 2), value=1.0),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_builds_and_serializes(family):
    plan = netdef.build(FAMILIES[family], netdef.Input("x", (("batch", 1, 2, 4), 3, 4, 5)),
                        dtype="float16", progress=False)
    assert len(plan) > 1000 and plan.metadata["dtype"] == "float16"


# ---- errors name the module path and the user's line -----------------------------------------
class Wrapper(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        object.__setattr__(self, "fn", fn)

    def forward(self, x):
        return self.fn(x)


class Outer(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.inner = Wrapper(fn)

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("fn,message", [
    (lambda x: x.sum(4), "sum: dimension 4 is out of range for a tensor of rank 4"),
    (lambda x: F.cumsum(x, -5), "cumsum: dimension -5 is out of range"),
    (lambda x: F.scatter(x, 4, np.zeros(SHAPE, np.int32), x), "scatter: dimension 4 is out of range"),
    (lambda x: x.permute(0, 0, 1, 2), "not a permutation"),
    (lambda x: x + np.ones((7, 5), np.float32), "TensorRT rejected the add layer"),
    (lambda x: x.view(7, -1), "invalid for input of size 120"),
    (lambda x: x.reshape(-1, -1), "only one dimension"),
    (lambda x: F.cat([x, x[:, :, :2, :2]], 1), "sizes must match"),
    (lambda x: x[:, 5], "out of bounds"),
    (lambda x: x[:, ::-1], "step must be greater than zero"),
    (lambda x: x[x > 0], "indexing with Tensor"),
    (lambda x: x.expand(2, 5, 4, 5), "does not match the existing size 3"),
    (lambda x: x.split([1, 1], 1), "sum exactly to 3"),
    (lambda x: F.matmul(x, x), "rejected the matmul"),
    (lambda x: F.pad(x, (1, 2, 3)), "even number"),
    (lambda x: F.div(x, 2, rounding_mode="round"), "rounding_mode"),
    (lambda x: F.gelu(x, approximate="fast"), "approximate"),
    (lambda x: F.embedding(x, W45), "integer tensor"),
])
def test_errors_name_module_and_line(fn, message):
    with pytest.raises(netdef.TraceError) as info:
        netdef.trace(Outer(fn), netdef.Input("x", SHAPE))
    text = str(info.value)
    assert message in text and "module 'inner'" in text and "test_functional_ops.py" in text


def test_squeeze_of_dynamic_dim_and_split_of_dynamic_dim_are_errors():
    with pytest.raises(netdef.TraceError, match="dynamic"):
        trace(lambda x: x.squeeze(0), dynamic=True)
    with pytest.raises(netdef.TraceError, match="dynamic"):
        trace(lambda x: x.chunk(2, 0), dynamic=True)
