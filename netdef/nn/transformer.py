"""MultiheadAttention and the Transformer encoder/decoder layers, as in torch.nn.

Signatures, defaults, submodule names and state_dict keys are torch's (in_proj_weight or
q/k/v_proj_weight, in_proj_bias, bias_k, bias_v, out_proj.*; self_attn, multihead_attn,
linear1, linear2, norm1..3), so a torch model's state_dict loads unchanged. Masks follow
torch: in MultiheadAttention a bool attn_mask / key_padding_mask is True where attention is
*not* allowed, and both become one additive float mask, as torch's _canonical_mask does.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np

from netdef import functional as F
from netdef import network
from netdef.nn import init
from netdef.nn.containers import ModuleList
from netdef.nn.linear import Linear
from netdef.nn.misc import Dropout
from netdef.nn.module import Module, Parameter
from netdef.nn.norm import LayerNorm
from netdef.tensor import Tensor


def _additive(mask: Any, dtype: str, what: str) -> Tensor:
    """torch's _canonical_mask: bool True -> -inf (not allowed), float masks kept, in `dtype`."""
    m = mask if isinstance(mask, Tensor) else F.constant(np.asarray(mask), op=what)
    if m.dtype == "bool":
        zero = F.constant(np.array(0.0), dtype, op="mask_zero")
        return F.where(m, F.constant(np.array(-np.inf), dtype, op="mask_neg"), zero)
    if m.dtype not in ("float32", "float16", "bfloat16"):
        network.current().fail(f"MultiheadAttention {what} must be bool or floating, got {m.dtype}")
    return F.cast(m, dtype)


class MultiheadAttention(Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} "
                             f"and num_heads={num_heads} instead")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads, self.dropout, self.batch_first = num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError("embed_dim must be divisible by num_heads")
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(init.xavier_uniform((3 * embed_dim, embed_dim), dtype))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(init.xavier_uniform((embed_dim, embed_dim), dtype))
            self.k_proj_weight = Parameter(init.xavier_uniform((embed_dim, self.kdim), dtype))
            self.v_proj_weight = Parameter(init.xavier_uniform((embed_dim, self.vdim), dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(init.full((3 * embed_dim,), 0.0, dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            self.out_proj.bias = Parameter(init.full((embed_dim,), 0.0, dtype))
        if add_bias_kv:
            self.bias_k = Parameter(init.xavier_normal((1, 1, embed_dim), dtype))
            self.bias_v = Parameter(init.xavier_normal((1, 1, embed_dim), dtype))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn

    def _projection(self, i: int) -> tuple[Any, Any]:
        """Weight and bias of the query (0), key (1) or value (2) projection."""
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight.data[i * e:(i + 1) * e]
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[i].data
        b = None if self.in_proj_bias is None else self.in_proj_bias.data[i * e:(i + 1) * e]
        return w, b

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        net = network.current()
        if query.ndim not in (2, 3):
            net.fail(f"MultiheadAttention expects query of rank 2 (unbatched) or 3, got shape {query.shape}")
        if is_causal and attn_mask is None:
            net.fail("MultiheadAttention(is_causal=True) is a hint that attn_mask is the causal mask: pass the "
                     "mask too, as torch requires")
        batched = query.ndim == 3
        self_attention = key is query and value is query
        if not batched:  # (L, E) -> (1, L, E); an (S,) key_padding_mask becomes (1, 1, 1, S) in _mask
            query = F.unsqueeze(query, 0)
            key, value = (query, query) if self_attention else (F.unsqueeze(key, 0), F.unsqueeze(value, 0))
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query = F.transpose(query, 0, 1)
            key, value = (query, query) if self_attention else (F.transpose(key, 0, 1), F.transpose(value, 0, 1))
        e, h, d = self.embed_dim, self.num_heads, self.head_dim
        if self_attention and self._qkv_same_embed_dim:
            q, k, v = F.split(F.linear(query, self.in_proj_weight, self.in_proj_bias), e, -1)
        else:
            q, k, v = (F.linear(x, *self._projection(i)) for i, x in enumerate((query, key, value)))
        n = q.size(0)
        if self.bias_k is not None:
            k = F.cat([k, F.expand(F.to_tensor(self.bias_k), n, -1, -1)], 1)
            v = F.cat([v, F.expand(F.to_tensor(self.bias_v), n, -1, -1)], 1)
        q, k, v = (F.transpose(F.reshape(t, n, -1, h, d), 1, 2) for t in (q, k, v))  # (N, H, L|S, D)
        if self.add_zero_attn:
            zeros = F.mul(F.getitem(k, (slice(None), slice(None), slice(0, 1))), 0.0)
            k, v = F.cat([k, zeros], 2), F.cat([v, zeros], 2)
        if is_causal and key_padding_mask is None and not need_weights:
            y, weights = F.scaled_dot_product_attention(q, k, v, is_causal=True), None  # torch trusts the hint
        elif need_weights:
            y, weights = self._with_weights(q, k, v, self._mask(attn_mask, key_padding_mask, q, n),
                                            average_attn_weights)
        else:
            mask = self._mask(attn_mask, key_padding_mask, q, n)
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
        # torch applies out_proj's weights without calling the module; so does the port (compare rows match)
        y = F.linear(F.reshape(F.transpose(y, 1, 2), n, -1, e), self.out_proj.weight, self.out_proj.bias)
        if not batched:
            y = F.squeeze(y, 0)
            weights = None if weights is None else F.squeeze(weights, 0)
        elif not self.batch_first:
            y = F.transpose(y, 0, 1)
        return y, weights

    def _mask(self, attn_mask: Any, key_padding_mask: Any, q: Tensor, n: Any) -> Tensor | None:
        """One additive (N|1, H|1, L, S) mask from attn_mask (L, S) / (N*H, L, S) and key_padding_mask (N, S),
        or (S,) for an unbatched query."""
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, q.dtype, "attn_mask")
            if mask.ndim == 3:
                mask = F.reshape(mask, n, self.num_heads, mask.size(1), mask.size(2))
            elif mask.ndim != 2:
                network.current().fail(f"attn_mask must be (L, S) or (N*num_heads, L, S), got shape {mask.shape}")
        if key_padding_mask is not None:
            kpm = _additive(key_padding_mask, q.dtype, "key_padding_mask")
            s = kpm.shape[-1]
            kpm = F.reshape(kpm, -1, 1, 1, s if s >= 0 else kpm.size(-1))  # (N, 1, 1, S); (S,) -> (1, 1, 1, S)
            mask = kpm if mask is None else F.add(F.broadcast_rank(mask, 4), kpm)
        if mask is not None:  # bias_k / zero attention add key columns that every query sees
            extra = int(self.bias_k is not None) + int(self.add_zero_attn)
            if extra:
                mask = F.pad(mask, (0, extra))
        return mask

    def _with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                      average: bool) -> tuple[Tensor, Tensor]:
        """need_weights=True: the attention probabilities are an output, so they are computed explicitly."""
        scores = F.matmul(F.mul(q, 1.0 / math.sqrt(self.head_dim)), F.transpose(k, -2, -1))
        if mask is not None:
            scores = F.add(scores, mask)
        weights = F.softmax(scores, -1)
        y = F.matmul(weights, v)
        return y, (F.mean(weights, 1) if average else weights)


def _activation(activation: str | Callable) -> Callable:
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if isinstance(activation, str):
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return activation


class TransformerEncoderLayer(Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = F.relu, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, src: Tensor, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Tensor:
        x = src
        if self.norm_first:
            x = F.add(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal))
            return F.add(x, self._ff_block(self.norm2(x)))
        x = self.norm1(F.add(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal)))
        return self.norm2(F.add(x, self._ff_block(x)))

    def _sa_block(self, x: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Tensor:
        y = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(y)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderLayer(Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = F.relu, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, bias=bias,
                                            dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first,
                                                 bias=bias, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> Tensor:
        x = tgt
        if self.norm_first:
            x = F.add(x, self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = F.add(x, self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                         memory_is_causal))
            return F.add(x, self._ff_block(self.norm3(x)))
        x = self.norm1(F.add(x, self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal)))
        x = self.norm2(F.add(x, self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal)))
        return self.norm3(F.add(x, self._ff_block(x)))

    def _sa_block(self, x: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Tensor:
        y = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                           need_weights=False)[0]
        return self.dropout1(y)

    def _mha_block(self, x: Tensor, mem: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Tensor:
        y = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(y)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    """`num_layers` deep copies of `encoder_layer` (layers.0, layers.1, ...) and an optional final norm.

    torch's inference fast path (enable_nested_tensor=True, torch's default) runs the layers on a
    nested tensor and pads it back with 0.0: its output is 0 at padded positions (before `norm`).
    The port reproduces that when torch takes the path, which is decided by the module's config
    (use_nested_tensor, as torch sets it), a batched src, a src_key_padding_mask and no src mask, and,
    with mask_check=True, at run time by whether every row's padding is at its end (left-aligned).
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True) -> None:
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = enable_nested_tensor and _nested_eligible(encoder_layer)
        self.mask_check = mask_check

    def forward(self, src: Tensor, mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool | None = None) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        if self.use_nested_tensor and src.ndim == 3 and src_key_padding_mask is not None and mask is None:
            x = self._zero_padding(x, src_key_padding_mask)
        return x if self.norm is None else self.norm(x)

    def _zero_padding(self, x: Tensor, key_padding_mask: Any) -> Tensor:
        """0.0 where torch's nested tensor has no element: padded keys (True, or a non-zero float)."""
        kpm = key_padding_mask if isinstance(key_padding_mask, Tensor) else F.constant(np.asarray(key_padding_mask))
        pad = kpm if kpm.dtype == "bool" else F.ne(kpm, 0.0)  # torch's _canonical_mask, then logical_not
        if self.mask_check:  # torch takes the path only if every row is a run of tokens, then padding
            gap = F.logical_and(pad[:, :-1], F.logical_not(pad[:, 1:]))  # padding followed by a token
            pad = F.logical_and(pad, F.logical_not(F.amax(F.cast(gap, "int32")) > 0))
        return F.where(F.unsqueeze(pad, -1), F.constant(np.array(0.0), x.dtype), x)


def _nested_eligible(layer: Any) -> bool:
    """torch.nn.TransformerEncoder.__init__'s conditions for use_nested_tensor."""
    return (isinstance(layer, TransformerEncoderLayer) and not layer.norm_first and layer.self_attn.batch_first
            and layer.self_attn._qkv_same_embed_dim and layer.self_attn.in_proj_bias is not None
            and layer.activation in (F.relu, F.gelu) and layer.norm1.eps == layer.norm2.eps
            and layer.self_attn.num_heads % 2 == 0)


class TransformerDecoder(Module):
    """`num_layers` deep copies of `decoder_layer` and an optional final norm."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None) -> None:
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(decoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        return x if self.norm is None else self.norm(x)


__all__ = ["MultiheadAttention", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerEncoderLayer"]
