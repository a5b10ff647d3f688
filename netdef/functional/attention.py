"""Attention, rotary position embedding and KV-cache update, each in two emissions.

Each op emits either the backend's own layer ("fused": IAttention, IRotaryEmbeddingLayer,
IKVCacheUpdateLayer) or a decomposition into matrix multiply, softmax, slice, elementwise
and scatter layers ("decomposed"). Both compute the same function and both are checked
against torch; `emission(...)` chooses, per op:

    with F.emission(attention="decomposed"):
        net = netdef.trace(model, ...)        # or compare / build

The default (None) is "fused" where the backend has the layer, "decomposed" otherwise:
TensorRT documents IAttention as the recommended way to get its fused attention kernels
(the decomposition is only fused by pattern matching), and the rotary and KV-cache layers
as the built-in replacements of their subgraphs. Engines cannot run here, so the default
follows the documentation, not a measurement (docs/transformers.md).

The same switch chooses how non-maximum suppression is emitted (netdef/functional/detection.py):
nms="layer" (TensorRT's INMSLayer) or "loop" (TopK, gathers and elementwise layers in a while
loop), by default "layer" where the backend builds that layer (`backend.capabilities().nms_layer`:
classic TensorRT; TensorRT-RTX has no implementation of it), "loop" otherwise (docs/detection.md).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator

import numpy as np

from netdef import backend, dtypes, network
from netdef.functional._core import cast, constant, dims_of, out, reshape_to, trt
from netdef.functional.creation import arange
from netdef.functional.elementwise import add, broadcast_rank, le, mul, sub
from netdef.functional.linalg import matmul
from netdef.functional.misc import embedding, where
from netdef.functional.reduce import softmax
from netdef.functional.shape import cat, expand, getitem, repeat_interleave, stack, transpose, unsqueeze
from netdef.tensor import Tensor

_CHOICES = {"attention": ("fused", "decomposed"), "rotary": ("fused", "decomposed"),
            "kv_cache": ("fused", "decomposed"), "nms": ("layer", "loop")}
_EMISSION: contextvars.ContextVar[dict] = contextvars.ContextVar("netdef_emission", default={})
# the network method each fused emission needs
_LAYER = {"attention": "add_attention", "rotary": "add_rotary_embedding", "kv_cache": "add_kv_cache_update"}


@contextlib.contextmanager
def emission(attention: str | None = None, rotary: str | None = None, kv_cache: str | None = None,
             nms: str | None = None) -> Iterator[None]:
    """Within the block, emit attention / rotary embedding / KV-cache updates as "fused" (the
    backend's layer) or "decomposed" (primitive layers), and NMS as "layer" (INMSLayer) or
    "loop"; None keeps the backend's default."""
    chosen = {"attention": attention, "rotary": rotary, "kv_cache": kv_cache, "nms": nms}
    for op, value in chosen.items():
        if value is not None and value not in _CHOICES[op]:
            raise ValueError(f"emission {op}={value!r}: choose {' or '.join(map(repr, _CHOICES[op]))} or None")
        if value == "fused" and not has_layer(op):
            raise ValueError(f"emission {op}='fused': {backend.name()} {backend.version()} has no "
                             f"INetworkDefinition.{_LAYER[op]}; use 'decomposed'")
    token = _EMISSION.set({**_EMISSION.get(), **{k: v for k, v in chosen.items() if v is not None}})
    try:
        yield
    finally:
        _EMISSION.reset(token)


def has_layer(op: str) -> bool:
    """Whether the active backend has the fused layer for `op` ('attention', 'rotary', 'kv_cache')."""
    return hasattr(backend.trt().INetworkDefinition, _LAYER[op])


def emission_for(op: str) -> str:
    """The emission `op` gets here: the `emission()` choice, else "fused" where the backend has
    the layer (for "nms": "layer" where the backend builds INMSLayer, else "loop")."""
    chosen = _EMISSION.get().get(op)
    if chosen is not None:
        return chosen
    if op == "nms":
        return "layer" if backend.capabilities().nms_layer else "loop"
    return "fused" if has_layer(op) else "decomposed"


# ---- scaled dot-product attention -------------------------------------------------------------
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention at inference.

    query (..., L, E), key (..., S, E), value (..., S, Ev); attn_mask broadcasts to (..., L, S):
    bool (True takes part) or floating (added to the scores). is_causal masks j > i (top-left
    aligned, as torch). enable_gqa lets key/value have fewer heads (dim -3) than query.
    The query is multiplied by `scale` (default 1/sqrt(E)) before the product, which TensorRT's
    attention layer requires; the decomposition does the same, so both emissions round alike.
    """
    net = network.current()
    if dropout_p:
        net.fail(f"scaled_dot_product_attention(dropout_p={dropout_p}) drops attention weights at random "
                 "(training); pass dropout_p=0.0 at inference, as torch's modules do in eval()")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor) or t.ndim < 2:
            net.fail(f"scaled_dot_product_attention: {name} must be a Tensor of rank >= 2, got {t!r}")
    if attn_mask is not None and is_causal:
        net.fail("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both (as torch)")
    e = query.shape[-1]
    if e < 0:
        net.fail(f"scaled_dot_product_attention needs a static head size, got query shape {query.shape}")
    if key.shape[-1] >= 0 and key.shape[-1] != e:
        net.fail(f"scaled_dot_product_attention: query head size {e} != key head size {key.shape[-1]}")
    hq, hk = (query.shape[-3] if query.ndim >= 3 else 1), (key.shape[-3] if key.ndim >= 3 else 1)
    if hq != hk:
        if not enable_gqa:
            net.fail(f"scaled_dot_product_attention: query has {hq} heads but key/value {hk}; pass "
                     "enable_gqa=True for grouped-query attention")
        if hq < 0 or hk <= 0 or hq % hk:
            net.fail(f"grouped-query attention needs query heads ({hq}) divisible by key/value heads ({hk})")
    dtype = query.dtype
    key, value = cast(key, dtype), cast(value, dtype)
    mask = None
    if attn_mask is not None:
        mask = attn_mask if isinstance(attn_mask, Tensor) else constant(np.asarray(attn_mask), op="attn_mask")
        if mask.dtype != "bool":
            mask = cast(mask, dtype)
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)
    q = mul(query, scale)
    fused = (emission_for("attention") == "fused" and query.ndim <= 4 and key.ndim == query.ndim
             and value.ndim == query.ndim and value.shape[-1] == e and (mask is None or mask.ndim <= 4))
    if fused:
        return _fused_attention(q, key, value, mask, is_causal)
    return _decomposed_attention(q, key, value, mask, is_causal, hq // hk if hq != hk else 1)


def _as4d(x: Tensor) -> Tensor:
    return broadcast_rank(x, 4)


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
    """IAttention on 4-D (B, H, L, E) tensors; lower ranks get leading 1s and lose them after."""
    net = network.current()
    t = trt()
    rank = q.ndim
    q4, k4, v4 = _as4d(q), _as4d(k), _as4d(v)
    softmax_op = t.AttentionNormalizationOp.SOFTMAX
    if hasattr(net.network, "add_attention_v2"):
        kind = t.CausalMaskKind.UPPER_LEFT if is_causal else t.CausalMaskKind.NONE
        layer = net.network.add_attention_v2(q4.trt, k4.trt, v4.trt, softmax_op, kind)
    else:
        layer = net.network.add_attention(q4.trt, k4.trt, v4.trt, softmax_op, is_causal)
    if layer is None:
        net.add(layer, "attention")  # raises with TensorRT's message
    if mask is not None:
        # TensorRT wants the mask as (a0, a1, L, S): only batch and heads may broadcast
        m = _as4d(mask)
        if (m.shape[2] == 1 and q4.shape[2] != 1) or (m.shape[3] == 1 and k4.shape[2] != 1):
            m = expand(m, -1, -1, q4.size(2) if m.shape[2] == 1 else -1, k4.size(2) if m.shape[3] == 1 else -1)
        layer.mask = m.trt
    layer.decomposable = True  # where no fused kernel exists TensorRT may split it, instead of failing
    y = out(layer, "attention")
    return y if rank == 4 else reshape_to(y, dims_of(y)[4 - rank:], "attention_rank")


def _decomposed_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
                          groups: int) -> Tensor:
    """softmax(q k^T [+ mask]) v from matrix multiply and softmax layers."""
    if groups > 1:  # each key/value head serves `groups` consecutive query heads
        k, v = repeat_interleave(k, groups, -3), repeat_interleave(v, groups, -3)
    scores = matmul(q, transpose(k, -2, -1))
    if is_causal:
        mask = causal_mask(q.size(-2), k.size(-2))
    if mask is not None:
        if mask.dtype == "bool":
            neg = constant(np.array(-np.inf), scores.dtype, op="masked")
            scores = where(mask, scores, neg)
        else:
            scores = add(scores, mask)
    return matmul(softmax(scores, -1), v)


def causal_mask(rows: Any, cols: Any, offset: Any = 0) -> Tensor:
    """Bool (rows, cols) mask, True where col <= row + offset (offset 0: torch's is_causal)."""
    r, c = arange(rows), arange(cols)
    limit = unsqueeze(r if isinstance(offset, int) and offset == 0 else add(r, offset), 1)
    return le(unsqueeze(c, 0), limit)


# ---- rotary position embedding ---------------------------------------------------------------------
def rotary_embedding(input: Tensor, cos: Tensor, sin: Tensor, position_ids: Tensor | None = None,
                     interleaved: bool = False, rotary_dim: int | None = None) -> Tensor:
    """Rotate pairs of the last dim of `input` (B, H, S, D) by angles whose cos/sin are given.

    cos/sin are (B, S, R/2) (B may be 1), or (max_position, R/2) rows picked by `position_ids` (B, S); R is
    `rotary_dim` (default D), and dims from R on pass through. Pairs are (i, i + R/2) (the
    "rotate half" layout of GPT-NeoX and Llama) or, with interleaved=True, (2i, 2i + 1) (GPT-J).
    This is TensorRT's RotaryEmbedding layer and ONNX's RotaryEmbedding operator.
    """
    net = network.current()
    if input.ndim != 4:
        net.fail(f"rotary_embedding expects input of shape (B, H, S, D), got {input.shape}")
    d = input.shape[-1]
    r = d if rotary_dim in (None, 0) else int(rotary_dim)
    if d < 0 or r <= 0 or r > d or r % 2:
        net.fail(f"rotary_embedding: rotary_dim {rotary_dim} must be even and at most the head size {d}")
    want = "(max_position, R/2) with position_ids" if position_ids is not None else "(B, S, R/2) without position_ids"
    for name, table in (("cos", cos), ("sin", sin)):
        if table.ndim != (2 if position_ids is not None else 3):  # a 2-D table would align S with the heads
            net.fail(f"rotary_embedding: {name} must be {want}, got shape {tuple(table.shape)}")
    half = cos.shape[-1]
    if half >= 0 and half != r // 2:
        net.fail(f"rotary_embedding: cos/sin have {half} values per position, expected rotary_dim/2 = {r // 2}")
    cos, sin = cast(cos, input.dtype), cast(sin, input.dtype)
    if emission_for("rotary") == "fused":
        if position_ids is None and cos.shape[0] == 1 and input.shape[0] != 1:  # the layer wants B rows
            cos, sin = (expand(t, input.size(0), -1, -1) for t in (cos, sin))
        layer = net.network.add_rotary_embedding(input.trt, cos.trt, sin.trt, bool(interleaved),
                                                 0 if r == d else r)
        if layer is None:
            net.add(layer, "rotary_embedding")
        if position_ids is not None:
            layer.set_input(3, position_ids.trt)
        return out(layer, "rotary_embedding")
    if position_ids is not None:
        cos, sin = embedding(position_ids, cos), embedding(position_ids, sin)
    c, s = unsqueeze(cos, 1), unsqueeze(sin, 1)  # (B, 1, S, R/2)
    x = input if r == d else getitem(input, (Ellipsis, slice(0, r)))
    if interleaved:
        dims = dims_of(x)
        pairs = reshape_to(x, dims[:-1] + [r // 2, 2], "pairs")
        x1, x2 = getitem(pairs, (Ellipsis, 0)), getitem(pairs, (Ellipsis, 1))
    else:
        x1, x2 = getitem(x, (Ellipsis, slice(0, r // 2))), getitem(x, (Ellipsis, slice(r // 2, r)))
    o1 = sub(mul(x1, c), mul(x2, s))
    o2 = add(mul(x2, c), mul(x1, s))
    if interleaved:
        y = reshape_to(stack([o1, o2], -1), dims_of(x), "rotated")
    else:
        y = cat([o1, o2], -1)
    return y if r == d else cat([y, getitem(input, (Ellipsis, slice(r, None)))], -1)


# ---- KV cache --------------------------------------------------------------------------------------
def kv_cache_update(cache: Tensor, update: Tensor, write_indices: Tensor) -> Tensor:
    """The cache (B, H, S_max, D) with update (B, H, S, D) written at rows write_indices[b] ...
    write_indices[b] + S - 1 of each batch entry b; the rest of the cache is unchanged.

    Fused, this is TensorRT's KVCacheUpdate layer: `cache` must be a network input with a
    static S_max and the result must be marked as a network output, which the engine writes
    in place into the cache's memory. Decomposed, it is a scatter layer (S_max may be dynamic).
    """
    net = network.current()
    if cache.ndim != 4 or update.ndim != 4:
        net.fail(f"kv_cache_update expects cache and update of shape (B, H, S, D), got {cache.shape} "
                 f"and {update.shape}")
    if write_indices.ndim != 1 or dtypes.is_floating(write_indices.dtype):
        net.fail(f"kv_cache_update write_indices must be a 1-D int tensor (B,), got {write_indices!r}")
    update = cast(update, cache.dtype)
    if emission_for("kv_cache") == "fused":
        if not cache.trt.is_network_input or cache.shape[2] < 0:
            net.fail("kv_cache_update (fused) needs the cache to be a network input with a static sequence "
                     f"length (TensorRT's KVCacheUpdate layer), got {cache!r}; use emission(kv_cache='decomposed')")
        layer = net.network.add_kv_cache_update(cache.trt, update.trt, write_indices.trt, trt().KVCacheMode.LINEAR)
        if layer is None:
            net.add(layer, "kv_cache_update")
        return out(layer, "kv_cache_update")
    # element scatter along the sequence axis: index[b, h, s, d] = write_indices[b] + s
    rows = add(reshape_to(cast(write_indices, "int64"), [-1, 1, 1, 1], "write_rows"),
               reshape_to(arange(update.size(2)), [1, 1, -1, 1], "update_rows"))
    index = expand(rows, *(update.size(i) for i in range(4)))
    layer = net.network.add_scatter(cache.trt, index.trt, update.trt, trt().ScatterMode.ELEMENT)
    layer.axis = 2
    return out(layer, "kv_cache_update")


__all__ = ["causal_mask", "emission", "emission_for", "has_layer", "kv_cache_update", "rotary_embedding",
           "scaled_dot_product_attention"]
