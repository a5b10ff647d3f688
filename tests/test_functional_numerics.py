"""Numerics of the functional ops vs torch, through the reference runner, in fp32 and fp16,
with static and dynamic batch. One table drives one test: each entry is run as fn(F, x) to
build the network and as fn(torch, x) for the expected values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef import functional as F
from netdef import reference
from netdef.tolerance import assert_close


class _Torch:
    """torch.nn.functional, falling back to torch: the torch twin of netdef.functional."""

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name, None) or getattr(torch, name)


T = _Torch()
S = (2, 3, 4, 5)
_W = np.random.default_rng(7).standard_normal((6, 5)).astype(np.float32)
_B = np.random.default_rng(8).standard_normal(6).astype(np.float32)
_SLOPE = np.array([0.1, 0.25, -0.5], np.float32)


def _const(ns, a):
    """The same constant for both sides: a numpy array for netdef, a tensor for torch."""
    return torch.from_numpy(a) if ns is T else a


# (id, fn(ns, x), input shape, domain) — domain "pos" feeds |x| + 0.1 (sqrt, log, ...)
CASES = [
    ("add_scalar", lambda ns, x: ns.add(x, 2.5), S, "any"),
    ("add_bcast", lambda ns, x: x + x[0, :, :1], S, "any"),
    ("add_const_bcast", lambda ns, x: x + _const(ns, _B[:5]), S, "any"),
    ("sub_alpha", lambda ns, x: ns.sub(x, x * x, alpha=2), S, "any"),
    ("rsub", lambda ns, x: 1 - x, S, "any"),
    ("mul", lambda ns, x: x * x.sum(-1, keepdim=True), S, "any"),
    ("div", lambda ns, x: x / 3, S, "any"),
    ("rdiv", lambda ns, x: 2 / x, S, "pos"),
    ("div_tensor", lambda ns, x: x / (x[:, :1] + 3), S, "pos"),
    ("div_floor", lambda ns, x: ns.div(x * 4, 0.5, rounding_mode="floor"), S, "any"),
    ("div_trunc", lambda ns, x: ns.div(x * 4, 0.5, rounding_mode="trunc"), S, "any"),
    ("floordiv_op", lambda ns, x: (x * 4) // 2, S, "any"),
    ("pow_scalar", lambda ns, x: x ** 3, S, "any"),
    ("rpow", lambda ns, x: 2 ** x, S, "any"),
    ("pow_frac", lambda ns, x: ns.pow(x, 0.5), S, "pos"),
    ("maximum", lambda ns, x: ns.maximum(x, x[:, :1]), S, "any"),
    ("minimum", lambda ns, x: ns.minimum(x, x[:, 1:2]), S, "any"),
    ("neg", lambda ns, x: -x, S, "any"),
    *[(u, (lambda u: lambda ns, x: getattr(ns, u)(x))(u), S, "any")
      for u in ["abs", "exp", "erf", "sin", "cos", "floor", "ceil"]],
    *[(u, (lambda u: lambda ns, x: getattr(ns, u)(x))(u), S, "pos")
      for u in ["sqrt", "rsqrt", "log", "reciprocal"]],
    ("eq", lambda ns, x: ns.eq(ns.floor(x), ns.floor(x[:1])), S, "any"),
    ("ne", lambda ns, x: ns.ne(ns.floor(x), 0), S, "any"),
    ("lt", lambda ns, x: x < 0.25, S, "any"),
    ("le", lambda ns, x: ns.le(ns.floor(x), 0), S, "any"),
    ("gt", lambda ns, x: x > x[:, :1], S, "any"),
    ("ge", lambda ns, x: ns.ge(ns.ceil(x), 1), S, "any"),
    ("logical", lambda ns, x: ns.logical_or(ns.logical_and(x > -1, x < 1), ns.logical_not(x > -0.5)), S, "any"),
    ("relu", lambda ns, x: ns.relu(x), S, "any"),
    ("relu6", lambda ns, x: ns.relu6(x * 4), S, "any"),
    ("leaky_relu", lambda ns, x: ns.leaky_relu(x, 0.2), S, "any"),
    ("sigmoid", lambda ns, x: ns.sigmoid(x), S, "any"),
    ("tanh", lambda ns, x: ns.tanh(x), S, "any"),
    ("silu", lambda ns, x: ns.silu(x), S, "any"),
    ("gelu", lambda ns, x: ns.gelu(x), S, "any"),
    ("gelu_tanh", lambda ns, x: ns.gelu(x, approximate="tanh"), S, "any"),
    ("hardswish", lambda ns, x: ns.hardswish(x * 3), S, "any"),
    ("hardsigmoid", lambda ns, x: ns.hardsigmoid(x * 3), S, "any"),
    ("elu", lambda ns, x: ns.elu(x, alpha=0.7), S, "any"),
    ("selu", lambda ns, x: ns.selu(x), S, "any"),
    ("softplus", lambda ns, x: ns.softplus(x * 4), S, "any"),
    ("softplus_threshold", lambda ns, x: ns.softplus(x, beta=2.0, threshold=1.0), S, "any"),
    ("softplus_fp16_range", lambda ns, x: ns.softplus(x * 20), S, "any"),
    ("mish", lambda ns, x: ns.mish(x * 3), S, "any"),
    ("prelu", lambda ns, x: ns.prelu(x, _const(ns, _SLOPE)), S, "any"),
    ("reshape", lambda ns, x: x.reshape(x.size(0), -1, 5) * 2, S, "any"),
    ("view", lambda ns, x: x.view(-1, 20) * 2, S, "any"),
    ("flatten", lambda ns, x: x.flatten(1) * 2, S, "any"),
    ("flatten_mid", lambda ns, x: ns.flatten(x, 1, 2) * 2, S, "any"),
    ("permute", lambda ns, x: x.permute(0, 2, 3, 1), S, "any"),
    ("transpose", lambda ns, x: x.transpose(-1, 1), S, "any"),
    ("squeeze_unsqueeze", lambda ns, x: x[:, :1].squeeze(1).unsqueeze(-1), S, "any"),
    ("expand", lambda ns, x: x[:, :1].expand(-1, 6, 4, 5), S, "any"),
    ("expand_new", lambda ns, x: x[0, :, :1].expand(2, 3, 4, 5), S, "any"),
    ("cat", lambda ns, x: ns.cat([x, x[:, :2] * 2], 1), S, "any"),
    ("stack", lambda ns, x: ns.stack([x, -x], -1), S, "any"),
    ("split", lambda ns, x: ns.split(x, 2, 1), S, "any"),
    ("split_list", lambda ns, x: x.split([1, 3], -2), S, "any"),
    ("chunk", lambda ns, x: x.chunk(2, 3), S, "any"),
    ("getitem", lambda ns, x: x[:, 1], S, "any"),
    ("getitem_neg", lambda ns, x: x[-1, ..., -2], S, "any"),
    ("getitem_step", lambda ns, x: x[:, ::2, 1:-1, -3:], S, "any"),
    ("getitem_none", lambda ns, x: x[None, :, None, 0], S, "any"),
    ("getitem_batch", lambda ns, x: x[1:], (3, 3, 4, 5), "any"),
    ("getitem_batch_step", lambda ns, x: x[:-1:2], (5, 3, 4, 5), "any"),
    ("getitem_clamped", lambda ns, x: x[-10:10, -2:], S, "any"),
    ("sum_all", lambda ns, x: ns.sum(x), S, "any"),
    ("sum", lambda ns, x: x.sum((1, -1), keepdim=True), S, "any"),
    ("mean", lambda ns, x: x.mean(-1), S, "any"),
    ("amax", lambda ns, x: ns.amax(x, 1), S, "any"),
    ("amin", lambda ns, x: ns.amin(x, (0, 2), keepdim=True), S, "any"),
    ("softmax", lambda ns, x: ns.softmax(x * 3, 1), S, "any"),
    ("log_softmax", lambda ns, x: ns.log_softmax(x * 3, -1), S, "any"),
    ("matmul", lambda ns, x: x @ x.transpose(-1, -2), S, "any"),
    ("matmul_vec", lambda ns, x: ns.matmul(x, x[0, 0, 0]), S, "any"),
    ("matmul_vec_left", lambda ns, x: ns.matmul(x[0, 0, :, 0], x), S, "any"),
    ("matmul_dot", lambda ns, x: ns.matmul(x[0, 0, 0], x[1, 0, 0]), S, "any"),
    ("matmul_bcast", lambda ns, x: ns.matmul(x, x[0, 0].transpose(0, 1)), S, "any"),
    ("matmul_const", lambda ns, x: x @ _const(ns, _W.T.copy()), S, "any"),
    ("linear", lambda ns, x: ns.linear(x, _const(ns, _W), _const(ns, _B)), S, "any"),
    ("linear_nobias", lambda ns, x: ns.linear(x, _const(ns, _W)), S, "any"),
    ("where", lambda ns, x: ns.where(x > 0, x, x * 0.5), S, "any"),
    ("where_scalar", lambda ns, x: ns.where(x > 0, x, -1.0), S, "any"),
    ("clamp", lambda ns, x: ns.clamp(x, -0.5, 0.5), S, "any"),
    ("clamp_tensor", lambda ns, x: ns.clamp(x, min=x[:, :1], max=x[:, 1:2] + 1), S, "any"),
    ("pad", lambda ns, x: ns.pad(x, (1, 2, 0, 1)), S, "any"),
    ("pad_value", lambda ns, x: ns.pad(x, (1, 2), value=1.5), S, "any"),
    ("pad_reflect", lambda ns, x: ns.pad(x, (1, 2, 2, 1), mode="reflect"), S, "any"),
    ("pad_replicate", lambda ns, x: ns.pad(x, (2, 3, 1, 0), mode="replicate"), S, "any"),
    ("pad_circular", lambda ns, x: ns.pad(x, (2, 1, 1, 3), mode="circular"), S, "any"),
    ("pad_crop", lambda ns, x: ns.pad(x, (-1, 2, 0, -2)), S, "any"),
    ("pad_batch", lambda ns, x: ns.pad(x, (0, 0, 0, 0, 0, 0, 1, 1), value=2.0), S, "any"),
]

def _outputs(got: dict, n: int) -> list:
    return [got["output"]] if n == 1 else [got[f"output{i}"] for i in range(n)]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("fn,shape,domain", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_torch(fn, shape, domain, dtype, dynamic, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    if domain == "pos":
        x = np.abs(x) + 0.1
    dims = ((1, 2, 8),) + shape[1:] if dynamic else shape
    net = netdef.trace(lambda t: fn(F, t), netdef.Input("x", dims), dtype=dtype)
    xt = torch.from_numpy(x)
    got = reference.run(net, {"x": xt})
    # the expectation sees the same input the network computes on
    r = fn(T, xt.half().float() if dtype == "float16" else xt)
    want = list(r) if isinstance(r, (tuple, list)) else [r]
    for i, (g, w) in enumerate(zip(_outputs(got, len(want)), want)):
        assert tuple(g.shape) == tuple(w.shape), f"output {i}"
        assert g.dtype == (torch.bool if w.dtype == torch.bool else torch.float32), f"output {i}"
        assert_close(g, w, dtype, what=f"output {i}")


def test_integer_division_and_promotion():
    """torch's integer rules: / is true division, floor and trunc round as named, float scalars promote."""
    x = torch.tensor([[-7, -6, -1, 0, 1, 5, 7, 9]], dtype=torch.int32)
    net = netdef.trace(lambda t: (t / 2, F.div(t, 2, rounding_mode="floor"), F.div(t, 2, rounding_mode="trunc"),
                                  t * 0.5, t + 1, -t, abs(t)),
                       netdef.Input("x", (1, 8), "int32"))
    got = _outputs(reference.run(net, {"x": x}), 7)
    want = [x / 2, torch.div(x, 2, rounding_mode="floor"), torch.div(x, 2, rounding_mode="trunc"),
            x * 0.5, x + 1, -x, x.abs()]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype or (w.dtype == torch.int32 and g.dtype == torch.int32), f"output {i}"
        assert torch.equal(g.to(w.dtype), w), f"output {i}: {g} != {w}"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embedding_rows(dtype, rng):
    table = rng.standard_normal((10, 6)).astype(np.float32)
    idx = torch.from_numpy(rng.integers(0, 10, (3, 7)).astype(np.int32))
    net = netdef.trace(lambda i: F.embedding(i, table), netdef.Input("i", ((1, 2, 4), 7), "int32"), dtype=dtype)
    got = reference.run(net, {"i": idx})["output"]
    want = torch.nn.functional.embedding(idx.long(), torch.from_numpy(table))
    assert_close(got, want.half().float() if dtype == "float16" else want, dtype)


def test_dynamic_shape_arithmetic_at_another_batch(rng):
    """Shape tensors computed from x.size(0) and negative indices follow the runtime batch."""
    def fn(x):
        b = x.size(0)
        return x.view(b, -1)[-1], x[1:-1].reshape(-1, 4, 5).expand(2, -1, -1, -1), F.pad(x, (0, 0, 0, 0, 0, 0, 2, 1))

    net = netdef.trace(fn, netdef.Input("x", ((1, 2, 8), 3, 4, 5)))
    for batch in (3, 6):
        x = torch.from_numpy(rng.standard_normal((batch, 3, 4, 5)).astype(np.float32))
        got = _outputs(reference.run(net, {"x": x}), 3)
        want = [x.view(batch, -1)[-1], x[1:-1].reshape(-1, 4, 5).expand(2, -1, -1, -1),
                torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 2, 1))]
        for g, w in zip(got, want):
            assert_close(g, w, "float32")
