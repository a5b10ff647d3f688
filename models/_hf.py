"""What the Hugging Face ports share: configs, checkpoints, tied embeddings and the causal-LM step.

A port takes the `transformers` config object or its `to_dict()` (or a plain dict read from
config.json), loads Hugging Face's state_dict names unchanged from `model.safetensors` or a
sharded `model.safetensors.index.json`, and needs no `transformers` at run time.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any, Mapping

from netdef import functional as F
from netdef import nn, weights
from netdef.errors import WeightsError
from netdef.tensor import Tensor


def config_of(config: Any, defaults: Mapping[str, Any]) -> SimpleNamespace:
    """A namespace of the config's fields over `defaults` (Hugging Face's defaults for the model)."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a transformers config or a dict, got {type(config).__name__}")
    return SimpleNamespace(**{**defaults, **config})


def checkpoint_files(path: str | os.PathLike) -> tuple[str, str]:
    """(config.json, weights file) of a Hugging Face model directory: model.safetensors or the
    sharded model.safetensors.index.json."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise WeightsError(f"{path!r} is not a model directory (config.json + model.safetensors)")
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        raise WeightsError(f"{path}: no config.json")
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if os.path.isfile(os.path.join(path, name)):
            return config, os.path.join(path, name)
    raise WeightsError(f"{path}: neither model.safetensors nor model.safetensors.index.json")


def from_pretrained(cls: type, path: str | os.PathLike) -> Any:
    """`cls(config)` with the directory's weights loaded by their Hugging Face names."""
    config_path, weights_path = checkpoint_files(path)
    with open(config_path, encoding="utf-8") as f:
        model = cls(json.load(f))
    model.load_state_dict(weights.load(weights_path))
    return model


class TiedLMHead(nn.Module):
    """A causal LM whose lm_head may share the input embedding (tie_word_embeddings).

    Tied, both names hold one Parameter, as in torch; Hugging Face's save_pretrained writes only
    the embedding, so a checkpoint without lm_head.weight loads the embedding into both.
    """

    _embedding_key: str = ""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        if self.tie_word_embeddings and "lm_head.weight" not in state_dict and self._embedding_key in state_dict:
            source = getattr(state_dict, "source", None)
            state_dict = weights.StateDict({**state_dict, "lm_head.weight": state_dict[self._embedding_key]},
                                           source=source)
        return super().load_state_dict(state_dict, strict, assign)


def attend(module: nn.Module, q: Tensor, k: Tensor, v: Tensor, cache: Any, layer_idx: int, scale: float) -> Tensor:
    """Causal self-attention of (B, H, S, D) heads, through the KV cache when one is given."""
    if cache is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
    k, v = cache.update(layer_idx, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask, scale=scale, enable_gqa=True)


def positions(input_ids: Tensor, position_ids: Tensor | None) -> Tensor:
    """position_ids, or 0 .. S-1 for every row (Hugging Face's default without a cache)."""
    if position_ids is not None:
        return position_ids
    return F.unsqueeze(F.arange(input_ids.size(1)), 0)


def last_token(logits: Tensor) -> Tensor:
    """(B, S, V) -> (B, V): the logits greedy decoding reads."""
    return F.getitem(logits, (slice(None), -1))
