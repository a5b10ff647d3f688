"""Transformer ops against torch through the reference runner, float32 and float16, both emissions.

scaled_dot_product_attention, rotary_embedding and kv_cache_update each run as the backend's
layer ("fused") and as primitive layers ("decomposed"); every other op here (roll, triu, tril,
masked_fill, arange, cumsum, bmm, baddbmm, einsum, normalize, rms_norm, repeat_interleave,
dropout) is checked with static and dynamic shapes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import netdef
from netdef import functional as F
from netdef.errors import TraceError
from netdef.reference import run
from netdef.tolerance import assert_close

DTYPES = ["float32", "float16"]
EMISSIONS = ["fused", "decomposed"]


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _run(fn, inputs: dict, dtype: str = "float32", dynamic: tuple = (), **emission) -> torch.Tensor:
    """Trace fn(*inputs) (dims listed in `dynamic` as (input index, dim) are dynamic) and run it."""
    specs = []
    for i, (name, x) in enumerate(inputs.items()):
        shape = [("d%d" % d, 1, n, 2 * n + 3) if (i, d) in dynamic else n for d, n in enumerate(x.shape)]
        specs.append(netdef.Input(name, tuple(shape), str(x.dtype).replace("torch.", "")))
    with F.emission(**emission):
        net = netdef.trace(fn, *specs, dtype=dtype)
    return run(net, inputs)["output"]


def _sdpa_ref(q, k, v, mask=None, causal=False, scale=None, gqa=False):
    return TF.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=gqa)


# ---- scaled dot-product attention ---------------------------------------------------------------------
SDPA_CASES = [
    # id, q shape, kv shape, kwargs
    ("plain", (2, 3, 5, 8), (2, 3, 7, 8), {}),
    ("causal", (2, 3, 6, 8), (2, 3, 6, 8), {"causal": True}),
    ("causal_rect", (1, 2, 3, 8), (1, 2, 5, 8), {"causal": True}),
    ("scale", (2, 2, 4, 16), (2, 2, 4, 16), {"scale": 0.3}),
    ("gqa", (2, 4, 5, 8), (2, 2, 5, 8), {"gqa": True}),
    ("gqa_causal", (1, 6, 5, 8), (1, 2, 5, 8), {"gqa": True, "causal": True}),
    ("bool_mask", (2, 3, 5, 8), (2, 3, 7, 8), {"mask": "bool"}),
    ("bool_key_padding", (2, 3, 5, 8), (2, 3, 7, 8), {"mask": "keypad"}),
    ("float_mask", (2, 3, 5, 8), (2, 3, 7, 8), {"mask": "float"}),
    ("rank3", (4, 5, 8), (4, 6, 8), {}),
    ("head_dim_v", (2, 2, 5, 8), (2, 2, 6, 8), {"dv": 4}),
]


def _mask(kind, q, k):
    L, S = q.shape[-2], k.shape[-2]
    g = torch.Generator().manual_seed(3)
    if kind == "bool":
        m = torch.rand(q.shape[0], 1, L, S, generator=g) > 0.3
        m[..., 0] = True  # no fully masked row: torch gives NaN there
        return m
    if kind == "keypad":
        m = torch.ones(q.shape[0], 1, 1, S, dtype=torch.bool)
        m[0, ..., -2:] = False
        return m
    return torch.randn(1, q.shape[1], L, S, generator=g)


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SDPA_CASES, ids=[c[0] for c in SDPA_CASES])
def test_sdpa_matches_torch(case, dtype, emission):
    _, qs, ks, kw = case
    q, k = _randn(*qs, seed=1), _randn(*ks, seed=2)
    v = _randn(*ks[:-1], kw.get("dv", ks[-1]), seed=3)
    mask = _mask(kw["mask"], q, k) if "mask" in kw else None
    expected = _sdpa_ref(q, k, v, mask, kw.get("causal", False), kw.get("scale"), kw.get("gqa", False))
    inputs = {"q": q, "k": k, "v": v}
    if mask is not None:
        inputs["m"] = mask

    def fn(q, k, v, m=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=kw.get("causal", False),
                                              scale=kw.get("scale"), enable_gqa=kw.get("gqa", False))
    got = _run(fn, inputs, dtype, attention=emission)
    assert_close(got, expected, dtype, what=case[0])


@pytest.mark.parametrize("emission", EMISSIONS)
def test_sdpa_dynamic_sequence(emission):
    """One network, several sequence lengths: the causal mask follows the run-time length."""
    q = _randn(2, 2, 6, 8, seed=4)
    fn = lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True)  # noqa: E731
    with F.emission(attention=emission):
        net = netdef.trace(fn, netdef.Input("q", (2, 2, ("s", 1, 4, 9), 8)))
    for n in (1, 3, 6):
        x = q[:, :, :n]
        assert_close(run(net, {"q": x})["output"], _sdpa_ref(x, x, x, causal=True), "float32", what=f"seq {n}")


def test_sdpa_emissions_emit_their_layers():
    q = netdef.Input("q", (1, 2, 4, 8))
    kinds = {}
    for emission in EMISSIONS:
        with F.emission(attention=emission):
            net = netdef.trace(lambda q: F.scaled_dot_product_attention(q, q, q), q)
        kinds[emission] = {layer.type.name for layer in net.layers}
    assert {"ATTENTION_INPUT", "ATTENTION_OUTPUT"} <= kinds["fused"]
    assert "ATTENTION_INPUT" not in kinds["decomposed"] and "SOFTMAX" in kinds["decomposed"]


def test_sdpa_errors_name_the_problem():
    q = netdef.Input("q", (1, 4, 3, 8))
    k = netdef.Input("k", (1, 3, 3, 8))
    with pytest.raises(TraceError, match="enable_gqa"):
        netdef.trace(lambda q, k: F.scaled_dot_product_attention(q, k, k), netdef.Input("q", (1, 4, 3, 8)),
                     netdef.Input("k", (1, 2, 3, 8)))
    with pytest.raises(TraceError, match="divisible"):
        netdef.trace(lambda q, k: F.scaled_dot_product_attention(q, k, k, enable_gqa=True), q, k)
    with pytest.raises(TraceError, match="dropout_p"):
        netdef.trace(lambda q: F.scaled_dot_product_attention(q, q, q, dropout_p=0.1), q)
    with pytest.raises(TraceError, match="not both"):
        netdef.trace(lambda q: F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool),
                                                              is_causal=True), q)
    with pytest.raises(ValueError, match="emission"):
        with F.emission(attention="flash"):
            pass


# ---- rotary embedding ---------------------------------------------------------------------------------
def _rope_ref(x, cos, sin, interleaved, r):
    rot, rest = x[..., :r], x[..., r:]
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        y = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), -1).flatten(-2)
    else:  # Hugging Face's q * cos + rotate_half(q) * sin with cos = cat(c, c)
        cc, ss = torch.cat((c, c), -1), torch.cat((s, s), -1)
        y = rot * cc + torch.cat((-rot[..., r // 2:], rot[..., :r // 2]), -1) * ss
    return torch.cat((y, rest), -1)


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleaved", [False, True], ids=["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [None, 4])
@pytest.mark.parametrize("positions", [False, True], ids=["caches", "position_ids"])
def test_rotary_matches_torch(emission, dtype, interleaved, rotary_dim, positions):
    x = _randn(2, 3, 5, 8, seed=5)
    r = rotary_dim or 8
    theta = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
    if positions:
        pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
        angles = torch.arange(16).float()[:, None] * theta
        cos, sin, expected_angles = angles.cos(), angles.sin(), angles[pos]
        inputs = {"x": x, "cos": cos, "sin": sin, "pos": pos}
    else:
        expected_angles = (torch.arange(5).float()[:, None] * theta).expand(2, 5, r // 2)
        cos, sin = expected_angles.cos().contiguous(), expected_angles.sin().contiguous()
        inputs = {"x": x, "cos": cos, "sin": sin}
    expected = _rope_ref(x, expected_angles.cos(), expected_angles.sin(), interleaved, r)

    def fn(x, cos, sin, pos=None):
        return F.rotary_embedding(x, cos, sin, pos, interleaved=interleaved, rotary_dim=rotary_dim)
    got = _run(fn, inputs, dtype, rotary=emission)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("emission", EMISSIONS)
def test_rotary_tables_of_the_wrong_rank_are_refused(emission):
    """A (S, R/2) table without position_ids would line S up with the heads (here H == S): refused."""
    x = netdef.Input("x", (1, 5, 5, 8))
    table = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with F.emission(rotary=emission), pytest.raises(TraceError, match=r"cos must be \(B, S, R/2\) without"):
        netdef.trace(lambda x: F.rotary_embedding(x, table, table), x)
    pos = netdef.Input("pos", (1, 5), "int64")
    with F.emission(rotary=emission), pytest.raises(TraceError, match=r"sin must be \(max_position, R/2\)"):
        netdef.trace(lambda x, p: F.rotary_embedding(x, table, table[None], p), x, pos)


# ---- KV cache update ------------------------------------------------------------------------------------
@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kv_cache_update_matches_torch(emission, dtype):
    cache, update = _randn(2, 3, 8, 4, seed=6), _randn(2, 3, 3, 4, seed=7)
    idx = torch.tensor([0, 5], dtype=torch.int32)
    expected = cache.clone()
    for b, i in enumerate(idx.tolist()):
        expected[b, :, i:i + 3] = update[b]
    fn = lambda c, u, i: F.kv_cache_update(c, u, i)  # noqa: E731
    low = getattr(torch, dtype)  # the fused layer writes into the cache input itself: no cast before it
    got = _run(fn, {"cache": cache.to(low), "update": update.to(low), "idx": idx}, dtype, dynamic=((1, 2),),
               kv_cache=emission)
    assert_close(got.float(), expected, dtype)


def test_kv_cache_update_fused_needs_a_cache_input():
    fn = lambda c, u, i: F.kv_cache_update(c * 2, u, i)  # noqa: E731
    with F.emission(kv_cache="fused"), pytest.raises(TraceError, match="network input"):
        netdef.trace(fn, netdef.Input("c", (1, 2, 8, 4)), netdef.Input("u", (1, 2, 1, 4)),
                     netdef.Input("i", (1,), "int32"))


# ---- the other ops ---------------------------------------------------------------------------------------
W = _randn(5, 4, seed=8)
OPS = [
    # id, fn(ns, x), input shape, dynamic dims of x
    ("roll", lambda ns, x: ns.roll(x, 2, 1), (2, 5, 3), ((0, 1),)),
    ("roll_neg_multi", lambda ns, x: ns.roll(x, (-1, 3), (1, 2)), (2, 5, 4), ((0, 0),)),
    ("roll_flat", lambda ns, x: ns.roll(x, 4), (2, 5, 3), ()),
    ("triu", lambda ns, x: ns.triu(x), (2, 4, 6), ()),
    ("triu_dynamic", lambda ns, x: ns.triu(x, 1), (2, 4, 6), ((0, 1), (0, 2))),
    ("tril", lambda ns, x: ns.tril(x, -1), (3, 5), ()),
    ("tril_dynamic", lambda ns, x: ns.tril(x), (3, 5), ((0, 0),)),
    ("masked_fill", lambda ns, x: x.masked_fill(x > 0.5, -3.0), (2, 3, 4), ((0, 0),)),
    ("cumsum", lambda ns, x: ns.cumsum(x, 1), (2, 5, 3), ((0, 1),)),
    ("bmm", lambda ns, x: ns.bmm(x, x.transpose(1, 2)), (2, 3, 4), ((0, 1),)),
    ("baddbmm", lambda ns, x: ns.baddbmm(x[:, :, :3], x, x.transpose(1, 2), beta=0.5, alpha=2.0), (2, 3, 4), ()),
    ("matmul_method", lambda ns, x: x.matmul(x.transpose(1, 2)), (2, 3, 4), ()),
    ("einsum", lambda ns, x: ns.einsum("bij,bkj->bik", x, x), (2, 3, 4), ()),
    ("normalize", lambda ns, x: ns.normalize(x, dim=-1), (2, 3, 4), ((0, 0),)),
    ("normalize_p1", lambda ns, x: ns.normalize(x, p=1.0, dim=1), (2, 3, 4), ()),
    ("rms_norm", lambda ns, x: ns.rms_norm(x, (4,), W[0].numpy() if ns is F else W[0], 1e-6), (2, 3, 4), ((0, 1),)),
    ("rms_norm_default_eps", lambda ns, x: ns.rms_norm(x, (3, 4)), (2, 3, 4), ()),
    ("repeat_interleave", lambda ns, x: ns.repeat_interleave(x, 3, 1), (2, 3, 4), ((0, 0),)),
    ("repeat_interleave_flat", lambda ns, x: ns.repeat_interleave(x, 2), (2, 3), ()),
    ("dropout_eval", lambda ns, x: ns.dropout(x, 0.3, training=False) * 2, (2, 3), ()),
    ("arange_dynamic", lambda ns, x: x + ns.arange(x.size(1)).to(x.dtype), (2, 5), ((0, 1),)),
    ("arange_step", lambda ns, x: x + ns.arange(1, x.size(1) * 2 + 1, 2).to(x.dtype), (2, 5), ((0, 1),)),
]


class _Torch:
    def __getattr__(self, name):
        return getattr(TF, name, None) or getattr(torch, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=[o[0] for o in OPS])
def test_op_matches_torch(op, dtype):
    _, fn, shape, dynamic = op
    x = _randn(*shape, seed=9)
    expected = fn(_Torch(), x)
    got = _run(lambda x: fn(F, x), {"x": x}, dtype, dynamic)
    assert_close(got, expected, dtype, what=op[0])


def test_dropout_in_training_mode_is_an_error():
    with pytest.raises(TraceError, match="training=False"):
        netdef.trace(lambda x: F.dropout(x, 0.1), netdef.Input("x", (2, 3)))


def test_arange_static_is_a_constant():
    net = netdef.trace(lambda x: x + F.arange(0, 3, 0.5), netdef.Input("x", (6,)))
    got = run(net, {"x": torch.ones(6)})["output"]
    assert torch.equal(got, 1 + torch.arange(0, 3, 0.5))
    assert math.isclose(float(got[1]), 1.5)
