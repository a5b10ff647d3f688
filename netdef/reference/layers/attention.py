"""Reference semantics: attention (ATTENTION_INPUT/ATTENTION_OUTPUT), ROTARY_EMBEDDING, KV_CACHE_UPDATE.

Sources: TensorRT's operator pages (Attention, RotaryEmbedding, KVCacheUpdate) and the
"Working with Transformers" guide; validated on ONNX's Attention and RotaryEmbedding node
tests through NVIDIA's ONNX parser and on torch (docs/reference.md).

An IAttention appears in the network as two boundary layers. The ATTENTION_INPUT layer
holds every input (query, key, value, then the optional mask, normalization quantize scale,
query lengths and key/value lengths, at positions 3-6), so it computes the attention here;
ATTENTION_OUTPUT only hands the result on. The layer applies no scale: TensorRT requires Q
(or K) to be scaled before it. A query row whose keys are all masked out (by a bool mask,
the causal mask or the key/value lengths) gives 0: TensorRT's pages are silent on it; ONNX's
Attention, which NVIDIA's parser maps onto this layer one to one, specifies 0
(test_attention_23_boolmask_fullymasked_row_nan_robustness).
"""
from __future__ import annotations

import torch

from netdef import backend
from netdef.errors import RunnerError
from netdef.reference.registry import input_or_none, register

_MASK, _QUANT_SCALE, _Q_LENGTHS, _KV_LENGTHS = 3, 4, 5, 6


def _causal_kind(attention) -> str:
    kind = getattr(attention, "causal_kind", None)
    if kind is not None:
        return kind.name
    return "UPPER_LEFT" if attention.causal else "NONE"  # TensorRT 10.x: a bool, top-left aligned


@register("ATTENTION_INPUT")
def attention_input(layer, ctx):
    att = layer.attention
    for form in ("query_form", "key_value_form"):
        value = getattr(att, form, None)
        if value is not None and value.name != "PADDED_BHND":
            raise RunnerError(f"attention {form} {value.name} (packed ragged batches) is not supported")
    if getattr(att, "normalization_quantize_scale", None) is not None:
        raise RunnerError("attention with a quantized normalization (normalization_quantize_scale) is not supported")
    normalize = att.norm_op.name == "SOFTMAX"
    causal = _causal_kind(att)
    if not normalize:
        mask = input_or_none(layer, _MASK)
        masks = [what for what, on in (
            (f"the causal mask ({causal})", causal != "NONE"),
            ("a bool mask", mask is not None and mask.dtype == backend.trt().bool),
            ("key/value lengths", input_or_none(layer, _KV_LENGTHS) is not None)) if on]
        if masks:
            # without a softmax the masked scores reach the output: TensorRT does not say what they
            # become (0? -inf?), and netdef never emits it, so the runner refuses rather than guess
            raise RunnerError(f"attention with norm_op {att.norm_op.name} and {' and '.join(masks)} is not "
                              "supported: TensorRT does not document what masked scores become without a softmax")

    def fn(q, k, v, mask=None, _quant_scale=None, _q_lengths=None, kv_lengths=None):
        hq, hk = q.shape[1], k.shape[1]
        if hq != hk:  # grouped-query: key/value head j serves query heads j*g ... j*g + g - 1
            if hk == 0 or hq % hk:
                raise RunnerError(f"attention: {hq} query heads are not a multiple of {hk} key/value heads")
            k, v = k.repeat_interleave(hq // hk, 1), v.repeat_interleave(hq // hk, 1)
        scores = q @ k.transpose(-1, -2)
        sq, skv = scores.shape[-2:]
        allowed = None
        if causal != "NONE":
            offset = 0 if causal == "UPPER_LEFT" else skv - sq
            i = torch.arange(sq, device=q.device).unsqueeze(1)
            allowed = torch.arange(skv, device=q.device).unsqueeze(0) <= i + offset
        if kv_lengths is not None:  # padded keys past each batch entry's length take no part
            valid = torch.arange(skv, device=q.device) < kv_lengths.reshape(-1, 1, 1, 1).long()
            allowed = valid if allowed is None else allowed & valid
        if mask is not None:
            if mask.dtype == torch.bool:
                allowed = mask if allowed is None else allowed & mask
            else:
                scores = scores + mask  # an "add mask" on the first product
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        if normalize:
            scores = torch.softmax(scores, -1)
            if allowed is not None:  # a query that may attend to no key gets 0, not NaN (see docstring)
                scores = scores.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
        return scores @ v
    return fn


@register("ATTENTION_OUTPUT")
def attention_output(layer, ctx):
    return lambda x: x


@register("ROTARY_EMBEDDING")
def rotary_embedding(layer, ctx):
    interleaved, dim = layer.interleaved, layer.rotary_embedding_dim

    def fn(x, cos, sin, position_ids=None):
        if x.ndim != 4:
            raise RunnerError(f"rotary embedding input must be (B, H, S, D), got shape {tuple(x.shape)}")
        r = dim or x.shape[-1]
        if position_ids is not None:
            cos, sin = cos[position_ids.long()], sin[position_ids.long()]
        if cos.shape[-1] * 2 != r:
            raise RunnerError(f"rotary embedding: cos/sin have {cos.shape[-1]} values per position but the "
                              f"rotary dimension is {r}")
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, S, R/2) against (B, H, S, R/2)
        rot, rest = x[..., :r], x[..., r:]
        if interleaved:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
        else:
            x1, x2 = rot[..., :r // 2], rot[..., r // 2:]
        o1, o2 = x1 * c - x2 * s, x2 * c + x1 * s
        y = torch.stack((o1, o2), -1).flatten(-2) if interleaved else torch.cat((o1, o2), -1)
        return torch.cat((y, rest), -1)
    return fn


@register("KV_CACHE_UPDATE")
def kv_cache_update(layer, ctx):
    if layer.cache_mode.name != "LINEAR":
        raise RunnerError(f"KV cache mode {layer.cache_mode.name} is not supported")
    form = getattr(layer, "update_form", None)
    if form is not None and form.name != "PADDED_BHND":
        raise RunnerError(f"KV cache update_form {form.name} (packed ragged batches) is not supported")
    name = layer.name

    def fn(cache, update, write_indices, _lengths=None):
        s, s_max = update.shape[2], cache.shape[2]
        out = cache.clone()  # the engine writes in place; a functional copy here
        for b, start in enumerate(write_indices.tolist()):
            if not 0 <= start <= s_max - s:
                raise RunnerError(f"KV cache update {name!r}: batch {b} writes rows {start}..{start + s - 1} "
                                  f"of a cache with {s_max} rows")
            out[b, :, start:start + s] = update[b]
        return out
    return fn
