"""Greedy generation with a KV cache: one network for prefill and decode, and `generate`.

The step network (`step_network`) takes

    input_ids     (B, S) int64   the new tokens: the whole prompt at prefill, one token per decode step
    position_ids  (B, S) int64   their positions (Hugging Face's cumsum(attention_mask) - 1 with left padding)
    cache_mask    (B, C) int64   1 where a cache row holds a real token (0: padding or not yet written)
    write_index   (B,)   int32   the cache row the first new token is written to
    past_key.i / past_value.i (B, kv_heads, C, head_dim) for each layer i

and returns the last position's logits (B, vocab) and present_key.i / present_value.i, the caches
with the new rows written (`F.kv_cache_update`: TensorRT's KVCacheUpdate layer, in place in an
engine, or a scatter). A query at cache row r attends to the rows <= r that hold real tokens (and
always to itself, so a padding row never has an empty softmax). B and S are dynamic; C (the cache
capacity) is static for the fused KV-cache layer and may be a range for the decomposition.

A port takes part by having `kv_cache_shape()` -> (layers, kv_heads, head_dim) and
`forward(input_ids, position_ids=None, cache=None)` returning {"logits": ...}; its attention calls
`cache.update(layer, k, v)` and attends with `cache.mask` (see netdef.models._hf.attend).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef import dtypes
from netdef import functional as F
from netdef.errors import NetdefError
from netdef.network import Input, Network
from netdef.tensor import Tensor
from netdef.trace import trace

Range = Any  # an int, or (min, opt, max)


class KVCache:
    """The caches one traced step reads, updates and attends over."""

    def __init__(self, keys: Sequence[Tensor], values: Sequence[Tensor], write_index: Tensor, mask: Tensor) -> None:
        self.keys, self.values = list(keys), list(values)
        self.write_index = write_index
        self.mask = mask  # (B, 1, S, C) bool: which cache rows each new token may attend to
        self.present: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this step's keys and values (B, kv_heads, S, D) into layer `layer`'s caches."""
        if layer in self.present:
            raise NetdefError(f"KV cache of layer {layer} updated twice in one step")
        new = (F.kv_cache_update(self.keys[layer], k, self.write_index),
               F.kv_cache_update(self.values[layer], v, self.write_index))
        self.present[layer] = new
        return new


def _dim(name: str, r: Range) -> Any:
    return r if isinstance(r, int) else (name, *r)


def step_inputs(port: Any, batch: Range, seq: Range, cache: Range, dtype: str) -> list[Input]:
    layers, heads, head_dim = port.kv_cache_shape()
    b, s, c = _dim("batch", batch), _dim("seq", seq), _dim("cache", cache)
    specs = [Input("input_ids", (b, s), "int64"), Input("position_ids", (b, s), "int64"),
             Input("cache_mask", (b, c), "int64"), Input("write_index", (b,), "int32")]
    for i in range(layers):
        specs += [Input(f"past_key.{i}", (b, heads, c, head_dim), dtype),
                  Input(f"past_value.{i}", (b, heads, c, head_dim), dtype)]
    return specs


def _attention_mask(cache_mask: Tensor, write_index: Tensor, seq: Any) -> Tensor:
    """(B, 1, S, C): new token j (cache row w + j) sees rows <= w + j holding real tokens, and itself."""
    rows = F.arange(cache_mask.size(1))  # (C,)
    query_rows = F.add(F.unsqueeze(F.cast(write_index, "int64"), 1), F.unsqueeze(F.arange(seq), 0))  # (B, S)
    q = F.unsqueeze(query_rows, 2)  # (B, S, 1)
    r = F.reshape(rows, 1, 1, -1)  # (1, 1, C)
    real = F.unsqueeze(F.ne(cache_mask, 0), 1)  # (B, 1, C)
    allowed = F.logical_or(F.logical_and(F.le(r, q), real), F.eq(r, q))
    return F.unsqueeze(allowed, 1)


def step_network(port: Any, batch: Range = (1, 1, 8), seq: Range = (1, 16, 256), cache: Range = 256,
                 dtype: Any = "float32") -> Network:
    """Trace `port`'s prefill/decode step (module docstring) with dynamic batch and sequence."""
    dtype = dtypes.name(dtype)
    layers = port.kv_cache_shape()[0]

    def step(input_ids: Tensor, position_ids: Tensor, cache_mask: Tensor, write_index: Tensor, *past: Tensor):
        kv = KVCache(past[0::2], past[1::2], write_index, _attention_mask(cache_mask, write_index, input_ids.size(1)))
        out = port(input_ids, position_ids=position_ids, cache=kv)
        logits = out["logits"] if isinstance(out, dict) else out
        if len(kv.present) != layers:
            raise NetdefError(f"{type(port).__name__} updated {len(kv.present)} of its {layers} KV caches")
        result = {"logits": F.getitem(logits, (slice(None), -1))}
        for i in range(layers):
            result[f"present_key.{i}"], result[f"present_value.{i}"] = kv.present[i]
        return result
    return trace(step, *step_inputs(port, batch, seq, cache, dtype), dtype=dtype, name=type(port).__name__)


def generate(port: Any, input_ids: Any, max_new_tokens: int = 16, attention_mask: Any = None, *,
             dtype: Any = "float32", backend: str = "reference", device: str = "cpu", cache_len: int | None = None,
             plan: Any = None) -> Any:
    """Greedy decoding: the prompt tokens followed by `max_new_tokens` argmax tokens (B, P + N), int64.

    attention_mask (B, P) marks real prompt tokens (left padding as Hugging Face's tokenizers pad
    for generation); positions follow it as in Hugging Face's generate. backend="reference" runs the
    step network with the reference runner on `device`; backend="engine" runs a built engine
    (`plan` from `netdef.build(step_network(...))`, else one is built), which needs a GPU the
    TensorRT backend supports.
    """
    import torch

    from netdef import reference

    ids = torch.as_tensor(np.asarray(input_ids) if not isinstance(input_ids, torch.Tensor) else input_ids).long()
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise NetdefError(f"generate: input_ids must be (batch, prompt length) with a prompt, got {tuple(ids.shape)}")
    b, p = ids.shape
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).long()
    if tuple(mask.shape) != (b, p):
        raise NetdefError(f"generate: attention_mask {tuple(mask.shape)} must match input_ids {(b, p)}")
    if max_new_tokens < 1:
        return ids
    c = cache_len or p + max_new_tokens
    if c < p + max_new_tokens:
        raise NetdefError(f"generate: cache_len {c} cannot hold {p} prompt + {max_new_tokens} new tokens")
    dtype = dtypes.name(dtype)
    layers, heads, head_dim = port.kv_cache_shape()
    if backend == "reference":
        net = step_network(port, batch=b, seq=(1, p, p), cache=c, dtype=dtype)

        def run(feeds: dict) -> dict:
            return reference.run(net, feeds, device=device)
    elif backend == "engine":
        run = _engine_runner(port, plan, b, p, c, dtype)
    else:
        raise NetdefError(f"generate: backend must be 'reference' or 'engine', got {backend!r}")
    cache_dtype = dtypes.to_torch(dtype)
    past = [torch.zeros(b, heads, c, head_dim, dtype=cache_dtype, device=device) for _ in range(2 * layers)]
    cache_mask = torch.zeros(b, c, dtype=torch.int64)
    cache_mask[:, :p] = mask
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    tokens, out = ids, []
    step_ids, step_pos, write = ids, positions, torch.zeros(b, dtype=torch.int32)
    for t in range(max_new_tokens):
        feeds = {"input_ids": step_ids, "position_ids": step_pos, "cache_mask": cache_mask, "write_index": write}
        feeds.update({f"past_{'key' if j % 2 == 0 else 'value'}.{j // 2}": x for j, x in enumerate(past)})
        result = run({k: v.to(device) if device != "cpu" else v for k, v in feeds.items()})
        nxt = result["logits"].float().argmax(-1).cpu().reshape(b, 1)
        out.append(nxt)
        past = [result[f"present_{'key' if j % 2 == 0 else 'value'}.{j // 2}"] for j in range(2 * layers)]
        row = p + t  # the cache row of the token just chosen
        cache_mask[:, row] = 1
        write = torch.full((b,), row, dtype=torch.int32)
        step_pos = step_pos[:, -1:] + 1
        step_ids = nxt
    return torch.cat([tokens, *out], 1)


def _engine_runner(port: Any, plan: Any, b: int, p: int, c: int, dtype: str) -> Any:
    """Run steps on a built engine. The engine is built with the decomposed KV-cache update: the
    fused layer writes in place into the cache input, which needs output buffers bound to the
    input addresses (netdef.Engine allocates its own)."""
    from netdef.build import build
    from netdef.runtime import Engine

    if plan is None:
        with F.emission(kv_cache="decomposed"):
            plan = build(step_network(port, batch=(1, b, max(b, 8)), seq=(1, p, max(p, 256)), cache=c, dtype=dtype))
    engine = Engine(plan)

    def run(feeds: dict) -> dict:
        import torch

        outs = engine.run(**{k: v.cuda() for k, v in feeds.items()})
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in outs.items()}
    return run


__all__ = ["KVCache", "generate", "step_inputs", "step_network"]
