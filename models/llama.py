"""Llama with Hugging Face's module tree and state_dict names (transformers' LlamaForCausalLM).

model.embed_tokens / layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
mlp.{gate_proj, up_proj, down_proj, act_fn}} / norm / rotary_emb, and lm_head (tied to the
embedding when tie_word_embeddings). RMSNorm, rotary embeddings with the config's theta and
scaling (default, linear, llama3), grouped-query attention and the SwiGLU MLP.

    model = LlamaForCausalLM(hf_config)           # a transformers LlamaConfig or its to_dict()
    model = LlamaForCausalLM.from_pretrained("llama-dir")
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import functional as F
from netdef import nn
from netdef.models import _hf
from netdef.models.gpt2 import activation
from netdef.tensor import Tensor

DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_parameters": None, "rope_theta": 10000.0,
    "rope_scaling": None, "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
}


def rope_parameters(config: Any) -> dict:
    """The RoPE parameters of a transformers 5 config (rope_parameters) or 4 (rope_theta + rope_scaling)."""
    params = dict(config.rope_parameters or {})
    if not params:
        params = dict(config.rope_scaling or {})
        params.setdefault("rope_theta", config.rope_theta)
    params.setdefault("rope_theta", config.rope_theta)
    params["rope_type"] = params.get("rope_type", params.get("type", "default"))
    return params


def inverse_frequencies(config: Any) -> tuple[np.ndarray, float]:
    """(inv_freq, attention_scaling) as transformers computes them, in float32."""
    params = rope_parameters(config)
    kind, base = params["rope_type"], float(params["rope_theta"])
    head_dim = config.head_dim or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    exponent = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
    inv_freq = (1.0 / np.power(np.float32(base), exponent, dtype=np.float32)).astype(np.float32)
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return (inv_freq / np.float32(params["factor"])).astype(np.float32), 1.0
    if kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return np.where(medium, smoothed, scaled).astype(np.float32), 1.0
    raise ValueError(f"rope_type {kind!r} is not supported (supported: default, linear, llama3)")


class LlamaRotaryEmbedding(nn.Module):
    """(cos, sin) of shape (B, S, head_dim) for the positions, computed in float32 as transformers does."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.inv_freq, self.attention_scaling = inverse_frequencies(config)

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        freqs = F.mul(F.unsqueeze(F.cast(position_ids, "float32"), -1), self.inv_freq.reshape(1, 1, -1))
        emb = F.cat([freqs, freqs], -1)
        cos, sin = F.cos(emb), F.sin(emb)
        if self.attention_scaling != 1.0:
            cos, sin = F.mul(cos, self.attention_scaling), F.mul(sin, self.attention_scaling)
        return F.cast(cos, x.dtype), F.cast(sin, x.dtype)


class LlamaAttention(nn.Module):
    def __init__(self, config: Any, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim ** -0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor],
                cache: Any = None) -> tuple[Tensor, None]:
        n, d = hidden_states.size(0), self.head_dim
        q, k, v = (F.transpose(F.reshape(proj(hidden_states), n, -1, heads, d), 1, 2)
                   for proj, heads in ((self.q_proj, self.num_heads), (self.k_proj, self.num_kv_heads),
                                       (self.v_proj, self.num_kv_heads)))
        cos, sin = (F.getitem(t, (Ellipsis, slice(0, d // 2))) for t in position_embeddings)  # halves repeat
        q, k = F.rotary_embedding(q, cos, sin), F.rotary_embedding(k, cos, sin)
        y = _hf.attend(self, q, k, v, cache, self.layer_idx, self.scaling)
        return self.o_proj(F.reshape(F.transpose(y, 1, 2), n, -1, self.num_heads * d)), None


class LlamaMLP(nn.Module):
    """SwiGLU: down_proj(act_fn(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act_fn = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.mul(self.act_fn(self.gate_proj(x)), self.up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: Any, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: Tensor, position_embeddings: tuple[Tensor, Tensor], cache: Any = None) -> Tensor:
        x = F.add(x, self.self_attn(self.input_layernorm(x), position_embeddings, cache)[0])
        return F.add(x, self.mlp(self.post_attention_layernorm(x)))


class LlamaModel(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None, cache: Any = None) -> Tensor:
        x = self.embed_tokens(input_ids)
        position_embeddings = self.rotary_emb(x, _hf.positions(input_ids, position_ids))
        for layer in self.layers:
            x = layer(x, position_embeddings, cache)
        return self.norm(x)


class LlamaForCausalLM(_hf.TiedLMHead):
    """Returns {"logits": (B, S, vocab)}, as Hugging Face's output holds them."""

    _embedding_key = "model.embed_tokens.weight"

    def __init__(self, config: Any) -> None:
        super().__init__()
        c = self.config = _hf.config_of(config, DEFAULTS)
        if c.num_key_value_heads is None:
            c.num_key_value_heads = c.num_attention_heads
        if c.head_dim is None:
            c.head_dim = c.hidden_size // c.num_attention_heads
        if c.num_attention_heads % c.num_key_value_heads:
            raise ValueError(f"num_attention_heads {c.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {c.num_key_value_heads}")
        inverse_frequencies(c)  # an unsupported rope_type fails here, at construction
        self.tie_word_embeddings = bool(c.tie_word_embeddings)
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if self.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @classmethod
    def from_pretrained(cls, path: Any) -> "LlamaForCausalLM":
        return _hf.from_pretrained(cls, path)

    def kv_cache_shape(self) -> tuple[int, int, int]:
        """(layers, key/value heads, head size) of the KV cache netdef.generate allocates."""
        c = self.config
        return c.num_hidden_layers, c.num_key_value_heads, c.head_dim

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None, cache: Any = None) -> dict:
        hidden = self.model(input_ids, position_ids, cache)
        if cache is not None:
            hidden = F.unsqueeze(_hf.last_token(hidden), 1)
        return {"logits": self.lm_head(hidden)}


__all__ = ["LlamaAttention", "LlamaDecoderLayer", "LlamaForCausalLM", "LlamaMLP", "LlamaModel",
           "LlamaRotaryEmbedding", "inverse_frequencies"]
