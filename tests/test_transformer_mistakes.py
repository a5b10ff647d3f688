"""Planted mistakes in transformer ports: compare must name the module that holds each, in float32
and float16. Each mistake is one a person porting the model could make: a missing attention scale,
softmax over the wrong axis, a wrong head split, the causal mask off by one, rotary embedding on
interleaved pairs instead of halves, grouped-query heads tiled instead of repeated, an RMSNorm
epsilon or a (1 + weight) scale, a shifted-window roll in the wrong direction."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import netdef
from netdef import functional as F
from netdef.models import _hf, llama
from test_hf_models import pair
from test_transformer_models import decoder_pair, swin_pair


DTYPES = ["float32", "float16"]
IDS = torch.randint(1, 97, (2, 7), generator=torch.Generator().manual_seed(3))


def _first_failure(torch_model, port, inputs, dtype):
    """The faulty module's path. Rows come in completion order, so when the mistake sits in a module's own
    code (the attention core between its projections), the first divergent row is the child module that
    first sees the wrong values (its output projection); the module is that row's parent."""
    report = netdef.compare(torch_model, port, inputs, dtype=dtype)
    assert not report.ok, "the planted mistake went unnoticed:\n" + str(report)
    first = report.first_failure.path
    parents = {r.path for r in report.rows}
    if first.rsplit(".", 1)[-1] in ("c_proj", "o_proj", "proj") and first.rsplit(".", 1)[0] in parents:
        return first.rsplit(".", 1)[0]
    return first


def _functional_with(**overrides):
    """netdef.functional with some ops replaced, for one module's global `F`."""
    return SimpleNamespace(**{**{k: getattr(F, k) for k in dir(F) if not k.startswith("_")}, **overrides})


@pytest.mark.parametrize("dtype", DTYPES)
def test_missing_attention_scale(dtype):
    hf, port = pair("gpt2", use_cache=False)
    port.transformer.h[1].attn.scaling = 1.0
    assert _first_failure(hf, port, (IDS,), dtype) == "transformer.h.1.attn"


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_mask_off_by_one(dtype, monkeypatch):
    hf, port = pair("gpt2", use_cache=False)
    sdpa = F.scaled_dot_product_attention

    def peeks_one_ahead(q, k, v, is_causal=False, **kw):  # j <= i + 1 instead of j <= i
        return sdpa(q, k, v, attn_mask=F.causal_mask(q.size(2), k.size(2), 1), **kw)
    monkeypatch.setattr(_hf, "F", _functional_with(scaled_dot_product_attention=peeks_one_ahead))
    assert _first_failure(hf, port, (IDS,), dtype) == "transformer.h.0.attn"


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_on_interleaved_pairs(dtype, monkeypatch):
    hf, port = pair("llama", use_cache=False)
    rope = F.rotary_embedding
    monkeypatch.setattr(llama, "F", _functional_with(
        rotary_embedding=lambda x, cos, sin: rope(x, cos, sin, interleaved=True)))  # GPT-J layout, not Llama's
    assert _first_failure(hf, port, (IDS,), dtype) == "model.layers.0.self_attn"


@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_query_heads_tiled(dtype, monkeypatch):
    hf, port = pair("llama", use_cache=False)
    sdpa = F.scaled_dot_product_attention

    def tiled(q, k, v, **kw):  # kv heads (0, 1, 0, 1) instead of (0, 0, 1, 1)
        g = q.shape[1] // k.shape[1]
        return sdpa(q, F.cat([k] * g, 1), F.cat([v] * g, 1), **kw)
    monkeypatch.setattr(_hf, "F", _functional_with(scaled_dot_product_attention=tiled))
    assert _first_failure(hf, port, (IDS,), dtype) == "model.layers.0.self_attn"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mistake", ["eps", "weight_plus_one"])
def test_rms_norm_mistakes(mistake, dtype):
    hf, port = pair("llama", use_cache=False)
    norm = port.model.layers[0].input_layernorm
    if mistake == "eps":
        norm.eps = 1e-2  # the config says 1e-6
    else:
        norm.weight.data = norm.weight.data + 1  # Gemma's (1 + weight) applied to a Llama checkpoint
    assert _first_failure(hf, port, (IDS,), dtype) == "model.layers.0.input_layernorm"


# ---- the hand-written causal decoder (matmul, masked_fill, softmax) and the Swin block ------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mistake", ["softmax_axis", "head_split", "mask_diagonal"])
def test_decoder_attention_mistakes(mistake, dtype):
    theirs, ours, x = decoder_pair(mistake=mistake)
    assert _first_failure(theirs, ours, (x,), dtype) == "blocks.0.attn"


@pytest.mark.parametrize("dtype", DTYPES)
def test_swin_shift_in_the_wrong_direction(dtype):
    theirs, ours, x = swin_pair(mistake="roll_sign")
    assert _first_failure(theirs, ours, (x,), dtype) == "features.1.1.attn"
