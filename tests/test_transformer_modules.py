"""nn.MultiheadAttention, the Transformer encoder/decoder layers and stacks, and nn.RMSNorm against
torch.nn through netdef.compare (every submodule's output), float32 and float16, both attention
emissions; state_dicts load unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
import netdef.reference as R
from netdef import functional as F
from netdef import nn
from netdef.tolerance import assert_close

DTYPES = ["float32", "float16"]


EMISSIONS = ["fused", "decomposed"]
E, H, L, S, N = 16, 4, 5, 7, 2


def _randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values for every floating entry (biases and norm weights too, so none hides)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.state_dict().values():
            if p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def _x(*shape, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class TorchCall(torch.nn.Module):
    """Calls `mod` with the test's inputs and keyword arguments; `mod` is the compared subtree."""

    def __init__(self, mod, call):
        super().__init__()
        self.mod, self.call = mod, call

    def forward(self, *xs):
        return self.call(self.mod, *xs)


class NetdefCall(nn.Module):
    def __init__(self, mod, call):
        super().__init__()
        self.mod, self.call = mod, call

    def forward(self, *xs):
        return self.call(self.mod, *xs)


def _check(torch_mod, ours, call, inputs, dtype, emission="fused", expect_rows=()):
    ours.load_state_dict({k: v.numpy() for k, v in torch_mod.state_dict().items()})
    with F.emission(attention=emission):
        report = netdef.compare(TorchCall(torch_mod, call), NetdefCall(ours, call), inputs, dtype=dtype)
    assert report.ok, str(report)
    paths = {r.path for r in report.rows if r.status == "ok"}
    for p in expect_rows:
        assert p in paths, f"no compared row for {p}: {sorted(paths)}"
    return report


def _bool_mask(shape, seed=2):
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.6  # True = not allowed
    m[..., 0] = False  # every query keeps a key (torch gives NaN for a fully masked row)
    return m


# ---- MultiheadAttention ---------------------------------------------------------------------------------
MHA_CASES = [
    # id, ctor kwargs, call(mod, *xs), inputs
    ("self_seq_first", {}, lambda m, x: m(x, x, x, need_weights=False), lambda: (_x(L, N, E),)),
    ("self_batch_first", {"batch_first": True}, lambda m, x: m(x, x, x, need_weights=False),
     lambda: (_x(N, L, E),)),
    ("weights_averaged", {"batch_first": True}, lambda m, x: m(x, x, x), lambda: (_x(N, L, E),)),
    ("weights_per_head", {}, lambda m, x: m(x, x, x, average_attn_weights=False), lambda: (_x(L, N, E),)),
    ("cross_kdim_vdim", {"kdim": 6, "vdim": 10, "batch_first": True},
     lambda m, q, k, v: m(q, k, v, need_weights=False), lambda: (_x(N, L, E), _x(N, S, 6, seed=2), _x(N, S, 10, seed=3))),
    ("key_padding_mask", {"batch_first": True},
     lambda m, q, k, kpm: m(q, k, k, key_padding_mask=kpm, need_weights=False),
     lambda: (_x(N, L, E), _x(N, S, E, seed=2), _bool_mask((N, S)))),
    ("attn_mask_bool", {}, lambda m, x, am: m(x, x, x, attn_mask=am, need_weights=False),
     lambda: (_x(L, N, E), _bool_mask((L, L)))),
    ("attn_mask_float_per_head", {"batch_first": True},
     lambda m, x, am: m(x, x, x, attn_mask=am, need_weights=False),
     lambda: (_x(N, L, E), _x(N * H, L, L, seed=4))),
    ("both_masks_weights", {"batch_first": True},
     lambda m, x, am, kpm: m(x, x, x, attn_mask=am, key_padding_mask=kpm),
     lambda: (_x(N, L, E), _bool_mask((L, L), 5), _bool_mask((N, L), 6))),
    ("causal_hint", {"batch_first": True},
     lambda m, x, am: m(x, x, x, attn_mask=am, is_causal=True, need_weights=False),
     lambda: (_x(N, L, E), torch.triu(torch.ones(L, L, dtype=torch.bool), 1))),
    ("bias_kv_zero_attn", {"add_bias_kv": True, "add_zero_attn": True},
     lambda m, x, kpm: m(x, x, x, key_padding_mask=kpm, need_weights=False),
     lambda: (_x(L, N, E), _bool_mask((N, L), 7))),
    ("no_bias", {"bias": False, "batch_first": True}, lambda m, x: m(x, x, x, need_weights=False),
     lambda: (_x(N, L, E),)),
    ("unbatched", {}, lambda m, x: m(x, x, x), lambda: (_x(L, E),)),
]


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention(case, dtype, emission):
    _, kwargs, call, inputs = case
    theirs = _randomized(torch.nn.MultiheadAttention(E, H, **kwargs))
    ours = nn.MultiheadAttention(E, H, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _check(theirs, ours, call, inputs(), dtype, emission, expect_rows=("mod",))


def _dead_layers(net) -> list[str]:
    """Layers none of whose outputs another layer reads or the network returns (work TensorRT prunes)."""
    d = net.network
    layers = [d.get_layer(i) for i in range(d.num_layers)]
    used = {d.get_output(i).name for i in range(d.num_outputs)}
    used |= {x.name for layer in layers for x in (layer.get_input(j) for j in range(layer.num_inputs)) if x is not None}
    return [layer.name for layer in layers if not any(layer.get_output(j).name in used for j in range(layer.num_outputs))]


@pytest.mark.parametrize("case", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_builds_no_dead_layer(case):
    """No mask for a call that ignores it (is_causal), no key/value copy of an unbatched self-attention."""
    _, kwargs, call, inputs = case
    ours = nn.MultiheadAttention(E, H, **kwargs)
    xs = inputs()
    net = netdef.trace(NetdefCall(ours, call), *(netdef.Input(f"x{i}", tuple(x.shape), str(x.dtype).split(".")[-1])
                                                 for i, x in enumerate(xs)))
    assert _dead_layers(net) == []


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("mask_kind", ["numpy", "tensor"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_unbatched_query_with_key_padding_mask(emission, mask_kind, need_weights):
    """An (L, E) query with an (S,) key_padding_mask: a Tensor input or a numpy constant alike."""
    kpm = _bool_mask((S,), 8)

    def call(m, q, k, *given):
        mask = given[0] if given else (kpm if isinstance(m, torch.nn.Module) else kpm.numpy())
        return m(q, k, k, key_padding_mask=mask, need_weights=need_weights)
    theirs = _randomized(torch.nn.MultiheadAttention(E, H))
    ours = nn.MultiheadAttention(E, H)
    inputs = (_x(L, E), _x(S, E, seed=2)) + ((kpm,) if mask_kind == "tensor" else ())
    _check(theirs, ours, call, inputs, "float32", emission, expect_rows=("mod",))


# ---- encoder / decoder layers and stacks ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer(norm_first, activation, dtype):
    kw = dict(dim_feedforward=24, activation=activation, norm_first=norm_first, batch_first=False)
    theirs = _randomized(torch.nn.TransformerEncoderLayer(E, H, **kw))
    ours = nn.TransformerEncoderLayer(E, H, **kw)
    call = lambda m, x, kpm: m(x, src_key_padding_mask=kpm)  # noqa: E731
    _check(theirs, ours, call, (_x(L, N, E), _bool_mask((N, L))), dtype,
           expect_rows=("mod.self_attn", "mod.linear1", "mod.linear2", "mod.norm1", "mod.norm2", "mod"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_layer(norm_first, dtype):
    kw = dict(dim_feedforward=24, activation="gelu", norm_first=norm_first, batch_first=True)
    theirs = _randomized(torch.nn.TransformerDecoderLayer(E, H, **kw))
    ours = nn.TransformerDecoderLayer(E, H, **kw)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L)
    call = lambda m, x, mem, mask, mkpm: m(x, mem, tgt_mask=mask, tgt_is_causal=True,  # noqa: E731
                                            memory_key_padding_mask=mkpm)
    _check(theirs, ours, call, (_x(N, L, E), _x(N, S, E, seed=2), causal, _bool_mask((N, S))), dtype,
           expect_rows=("mod.self_attn", "mod.multihead_attn", "mod.norm3", "mod"))


@pytest.mark.parametrize("emission", EMISSIONS)
def test_encoder_and_decoder_stacks(emission):
    kw = dict(dim_feedforward=24, batch_first=True)
    t_enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, **kw), 2,
                                        norm=torch.nn.LayerNorm(E), enable_nested_tensor=False)
    t_dec = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(E, H, **kw), 2, norm=torch.nn.LayerNorm(E))
    theirs = _randomized(torch.nn.ModuleDict({"encoder": t_enc, "decoder": t_dec}))
    ours = nn.ModuleDict({
        "encoder": nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, **kw), 2, norm=nn.LayerNorm(E)),
        "decoder": nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, **kw), 2, norm=nn.LayerNorm(E)),
    })
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L)

    def call(m, src, tgt, mask):
        return m["decoder"](tgt, m["encoder"](src), tgt_mask=mask)
    _check(theirs, ours, call, (_x(N, S, E), _x(N, L, E, seed=2), causal), "float32", emission,
           expect_rows=("mod.encoder.layers.1", "mod.encoder.norm", "mod.decoder.layers.0.multihead_attn",
                        "mod.decoder.norm"))


@pytest.mark.parametrize("aligned", [True, False], ids=["padding_at_end", "padding_inside"])
def test_encoder_nested_tensor_fast_path_zeroes_padding(aligned):
    """torch (enable_nested_tensor=True, eval, no grad) returns 0.0 before `norm` at padded positions
    when every row's padding is at its end; elsewhere it computes them. The port follows both."""
    kw = dict(dim_feedforward=24, batch_first=True)
    theirs = _randomized(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, **kw), 2,
                                                     norm=torch.nn.LayerNorm(E)))
    assert theirs.use_nested_tensor
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, **kw), 2, norm=nn.LayerNorm(E))
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, S - 3:] = True
    kpm[1, 2 if not aligned else S - 1] = True
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = _x(N, S, E)
    with torch.no_grad():  # compare can't record the nested tensors torch's layers return: check the output
        want = theirs(x, src_key_padding_mask=kpm)
    net = netdef.trace(lambda v, pad: ours(v, src_key_padding_mask=pad), netdef.Input("x", x.shape),
                       netdef.Input("pad", kpm.shape, "bool"))
    got = R.run(net, {"x": x, "pad": kpm})["output"]
    assert_close(got, want, "float32")
    if aligned:  # torch took the nested path: the norm of a zeroed row is the norm's bias
        assert torch.allclose(want[0, -1], theirs.norm.bias)


def test_compare_with_an_encoder_on_torchs_nested_tensor_path():
    """compare records no nested tensors: the layers torch ran on them are listed (not compared call
    by call), and the encoder's output and its norm, dense again, are compared and pass."""
    kw = dict(dim_feedforward=24, batch_first=True)
    theirs = _randomized(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, **kw), 2,
                                                     norm=torch.nn.LayerNorm(E)))
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, **kw), 2, norm=nn.LayerNorm(E))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})

    class TorchWrap(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, x, pad):
            return self.enc(x, src_key_padding_mask=pad)

    class Wrap(nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, x, pad):
            return self.enc(x, src_key_padding_mask=pad)

    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, S - 3:] = True
    report = netdef.compare(TorchWrap(theirs), Wrap(ours), (_x(N, S, E), kpm))
    assert report.ok, str(report)
    assert {"enc.layers.0", "enc.layers.1", "enc.layers.0.self_attn"} <= set(report.nested), report.nested
    assert {"enc", "enc.norm"} <= {r.path for r in report.rows if r.stats is not None}
    assert "torch ran them on nested tensors" in report.summary()
    broken = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, **kw), 2, norm=nn.LayerNorm(E))
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    state["layers.1.linear1.weight"] = state["layers.1.linear1.weight"] * 1.05  # a mistake inside a nested-path layer
    broken.load_state_dict(state)
    bad = netdef.compare(TorchWrap(theirs), Wrap(broken), (_x(N, S, E), kpm))
    assert not bad.ok and bad.first_failure.path == "enc.norm", str(bad)  # the first module torch ran densely again


# ---- RMSNorm ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [{}, {"eps": 1e-3}, {"elementwise_affine": False}], ids=["default", "eps", "plain"])
def test_rms_norm(kwargs, dtype):
    theirs = _randomized(torch.nn.RMSNorm((3, E), **kwargs))
    ours = nn.RMSNorm((3, E), **kwargs)
    _check(theirs, ours, lambda m, x: m(x), (_x(N, 3, E) * 4,), dtype, expect_rows=("mod",))


def test_modules_repr_and_errors():
    assert repr(nn.RMSNorm(8)) == repr(torch.nn.RMSNorm(8))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(netdef.TraceError, match="is_causal"):
        mha = nn.MultiheadAttention(E, H, batch_first=True)
        netdef.trace(lambda x: mha(x, x, x, is_causal=True)[0], netdef.Input("x", (N, L, E)))
    assert np.all(nn.MultiheadAttention(E, H).in_proj_bias.data == 0)
