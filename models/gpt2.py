"""GPT-2 with Hugging Face's module tree and state_dict names (transformers' GPT2LMHeadModel).

transformer.wte / wpe / drop / h.N.{ln_1, attn.{c_attn, c_proj, attn_dropout, resid_dropout},
ln_2, mlp.{c_fc, act, c_proj, dropout}} / ln_f, and lm_head tied to transformer.wte. The
projections are Hugging Face's Conv1D, whose weight is stored (in, out): it is used as stored.

    model = GPT2LMHeadModel(hf_config)            # a transformers GPT2Config or its to_dict()
    model.load_state_dict(netdef.weights.load("model.safetensors"))
    model = GPT2LMHeadModel.from_pretrained("gpt2-dir")   # config.json + (sharded) safetensors
"""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef import nn
from netdef.models import _hf
from netdef.nn import init
from netdef.tensor import Tensor

DEFAULTS = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
    "add_cross_attention": False, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
}
# transformers' ACT2FN names -> netdef modules (gelu_new is GELU's tanh approximation)
ACTIVATIONS = {
    "gelu_new": lambda: nn.GELU("tanh"), "gelu_pytorch_tanh": lambda: nn.GELU("tanh"), "gelu": nn.GELU,
    "relu": nn.ReLU, "silu": nn.SiLU, "swish": nn.SiLU, "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_function {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


class Conv1D(nn.Module):
    """Hugging Face's Conv1D: y = x @ weight + bias with weight of shape (nx, nf), as stored."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(init.Lazy((nx, nf), None, lambda: init._RNG.normal(0, 0.02, (nx, nf))))
        self.bias = nn.Parameter(init.full((nf,), 0.0))

    def forward(self, x: Tensor) -> Tensor:
        return F.add(F.matmul(x, self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"nf={self.nf}, nx={self.nx}"


class GPT2Attention(nn.Module):
    def __init__(self, config: Any, layer_idx: int) -> None:
        super().__init__()
        if config.add_cross_attention:
            raise ValueError("GPT-2 with add_cross_attention is not supported")
        if config.reorder_and_upcast_attn:
            raise ValueError("reorder_and_upcast_attn=True is not supported (it only changes eager training "
                             "numerics; attention here is computed with float32 accumulation)")
        self.embed_dim, self.num_heads = config.n_embd, config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"n_embd {self.embed_dim} is not divisible by n_head {self.num_heads}")
        self.layer_idx = layer_idx
        self.scaling = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(layer_idx + 1)
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: Tensor, cache: Any = None) -> tuple[Tensor, None]:
        n = hidden_states.size(0)
        q, k, v = F.split(self.c_attn(hidden_states), self.embed_dim, 2)
        q, k, v = (F.transpose(F.reshape(t, n, -1, self.num_heads, self.head_dim), 1, 2) for t in (q, k, v))
        y = _hf.attend(self, q, k, v, cache, self.layer_idx, self.scaling)
        y = F.reshape(F.transpose(y, 1, 2), n, -1, self.embed_dim)
        return self.resid_dropout(self.c_proj(y)), None


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size: int, config: Any) -> None:
        super().__init__()
        self.c_fc = Conv1D(intermediate_size, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, intermediate_size)
        self.act = activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config: Any, layer_idx: int) -> None:
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(self, x: Tensor, cache: Any = None) -> Tensor:
        x = F.add(self.attn(self.ln_1(x), cache)[0], x)
        return F.add(x, self.mlp(self.ln_2(x)))


class GPT2Model(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.embed_dim = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None, cache: Any = None) -> Tensor:
        x = F.add(self.wte(input_ids), self.wpe(_hf.positions(input_ids, position_ids)))
        x = self.drop(x)
        for block in self.h:
            x = block(x, cache)
        return self.ln_f(x)


class GPT2LMHeadModel(_hf.TiedLMHead):
    """Returns {"logits": (B, S, vocab)}, as Hugging Face's output holds them."""

    _embedding_key = "transformer.wte.weight"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = _hf.config_of(config, DEFAULTS)
        self.tie_word_embeddings = bool(self.config.tie_word_embeddings)
        self.transformer = GPT2Model(self.config)
        self.lm_head = nn.Linear(self.config.n_embd, self.config.vocab_size, bias=False)
        if self.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    @classmethod
    def from_pretrained(cls, path: Any) -> "GPT2LMHeadModel":
        return _hf.from_pretrained(cls, path)

    def kv_cache_shape(self) -> tuple[int, int, int]:
        """(layers, key/value heads, head size) of the KV cache netdef.generate allocates."""
        c = self.config
        return c.n_layer, c.n_head, c.n_embd // c.n_head

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None, cache: Any = None) -> dict:
        hidden = self.transformer(input_ids, position_ids, cache)
        if cache is not None:  # decoding reads the last position only: skip the rest of the vocab product
            hidden = F.unsqueeze(_hf.last_token(hidden), 1)
        return {"logits": self.lm_head(hidden)}


__all__ = ["Conv1D", "GPT2Attention", "GPT2Block", "GPT2LMHeadModel", "GPT2MLP", "GPT2Model"]
