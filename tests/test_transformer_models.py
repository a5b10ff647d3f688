"""Two transformer patterns ported by hand, so the new ops run inside real models:

* a causal decoder written the nanoGPT way (matmul, a tril mask with masked_fill, softmax);
* torchvision's Swin Transformer (a small configuration of swin_t's architecture): shifted windows
  with roll, window partition/reverse, the shifted-window mask, relative position bias (a gather).

Both ports use the originals' module names and load their state_dicts unchanged; compare checks
every module in float32 and float16. `decoder_pair` and `swin_pair` take a planted mistake for
test_transformer_mistakes.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.models.swin_transformer as tv_swin

import netdef
from netdef import functional as F
from netdef import nn


def _randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if ("ln" in name or "norm" in name) and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + base)
    return module.eval()


def _load(port: nn.Module, original: torch.nn.Module) -> nn.Module:
    port.load_state_dict({k: v.numpy() for k, v in original.state_dict().items()})
    return port


# ---- causal decoder, the nanoGPT way ------------------------------------------------------------------
D, HEADS, T, VOCAB = 32, 4, 9, 50


class TorchCausalSelfAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn, self.c_proj = torch.nn.Linear(D, 3 * D), torch.nn.Linear(D, D)
        self.register_buffer("bias", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        y = torch.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class CausalSelfAttention(nn.Module):
    """The port; `mistake` plants one error (softmax_axis, head_split, mask_diagonal). It builds the
    causal mask with triu; `bias` is kept only because nanoGPT's state_dict holds it."""

    def __init__(self, mistake=None):
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.register_buffer("bias", np.tril(np.ones((T, T), np.float32)).reshape(1, 1, T, T))
        self.mistake = mistake

    def forward(self, x):
        b, t, c = x.size(0), x.shape[1], x.shape[2]
        q, k, v = self.c_attn(x).split(c, 2)
        if self.mistake == "head_split":  # (b, t, head_dim, heads): heads taken across the wrong axis
            q, k, v = (z.view(b, t, c // HEADS, HEADS).permute(0, 3, 1, 2) for z in (q, k, v))
        else:
            q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // HEADS))
        # the future: above the diagonal (triu 1); the mistake masks from the second diagonal on (peeks ahead)
        future = F.triu(F.to_tensor(np.ones((T, T), np.float32))[:t, :t], 2 if self.mistake == "mask_diagonal" else 1)
        att = att.masked_fill(future == 1, float("-inf"))
        y = att.softmax(-2 if self.mistake == "softmax_axis" else -1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


def _block(attn, ln, mlp, gelu, linear):
    class Block(type(attn).__mro__[1]):  # torch.nn.Module or netdef.nn.Module
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = ln(D), attn, ln(D)
            self.mlp = mlp(linear(D, 4 * D), gelu(), linear(4 * D, D))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
    return Block()


class TorchDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(VOCAB, D), torch.nn.Embedding(T, D)
        tn = torch.nn
        self.blocks = tn.ModuleList([_block(TorchCausalSelfAttention(), tn.LayerNorm, tn.Sequential, tn.GELU, tn.Linear)
                                     for _ in range(2)])
        self.ln_f, self.lm_head = tn.LayerNorm(D), tn.Linear(D, VOCAB, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class Decoder(nn.Module):
    def __init__(self, mistake=None):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList([_block(CausalSelfAttention(mistake), nn.LayerNorm, nn.Sequential, nn.GELU,
                                            nn.Linear) for _ in range(2)])
        self.ln_f, self.lm_head = nn.LayerNorm(D), nn.Linear(D, VOCAB, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(F.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def decoder_pair(mistake=None):
    torch.manual_seed(0)
    theirs = _randomized(TorchDecoder())
    x = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))
    return theirs, _load(Decoder(mistake), theirs), x


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_causal_decoder(dtype):
    theirs, ours, x = decoder_pair()
    report = netdef.compare(theirs, ours, (x,), dtype=dtype)
    assert report.ok, str(report)
    assert {"blocks.0.attn", "blocks.1.attn.c_proj", "blocks.1"} <= {r.path for r in report.rows if r.status == "ok"}


# ---- Swin Transformer ------------------------------------------------------------------------------------
SWIN = {"patch_size": [4, 4], "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 4], "window_size": [4, 4],
        "stochastic_depth_prob": 0.0, "num_classes": 10}


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class StochasticDepth(nn.Module):
    """Identity at inference (torchvision.ops.StochasticDepth)."""

    def forward(self, x):
        return x


def _shift_mask(pad_h, pad_w, window, shift):
    """torchvision's shifted-window mask (nW, N, N): -100 between tokens from different regions."""
    regions = np.zeros((pad_h, pad_w), np.float32)
    count = 0
    for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            regions[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    regions = regions.reshape(pad_h // window[0], window[0], pad_w // window[1], window[1])
    regions = regions.transpose(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    diff = regions[:, None, :] - regions[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim, window_size, shift_size, num_heads, mistake=None):
        super().__init__()
        self.window_size, self.shift_size, self.num_heads, self.mistake = window_size, shift_size, num_heads, mistake
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        n = window_size[0] * window_size[1]
        self.relative_position_bias_table = nn.Parameter(
            np.zeros(((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads), np.float32))
        self.register_buffer("relative_position_index", np.zeros(n * n, np.int64))

    def forward(self, x):
        b, h, w, c = x.shape
        ws, heads = self.window_size, self.num_heads
        n = ws[0] * ws[1]
        shift = [0 if ws[0] >= h else self.shift_size[0], 0 if ws[1] >= w else self.shift_size[1]]
        sign = -1 if self.mistake == "roll_sign" else 1
        if sum(shift):
            x = x.roll((-sign * shift[0], -sign * shift[1]), (1, 2))
        windows = (h // ws[0]) * (w // ws[1])
        x = x.view(b, h // ws[0], ws[0], w // ws[1], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b * windows, n, c)
        qkv = self.qkv(x).reshape(b * windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (c // heads) ** -0.5).matmul(k.transpose(-2, -1))
        bias = F.embedding(F.to_tensor(self.relative_position_index), self.relative_position_bias_table)
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if sum(shift):
            mask = _shift_mask(h, w, ws, shift)[None, :, None]  # (1, nW, 1, N, N)
            attn = (attn.view(b, windows, heads, n, n) + mask).view(-1, heads, n, n)
        x = attn.softmax(-1).matmul(v).transpose(1, 2).reshape(b * windows, n, c)
        x = self.proj(x).view(b, h // ws[0], w // ws[1], ws[0], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return x.roll((sign * shift[0], sign * shift[1]), (1, 2)) if sum(shift) else x


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, window_size, shift_size, mistake=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads, mistake)
        self.stochastic_depth = StochasticDepth()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.0))

    def forward(self, x):
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction, self.norm = nn.Linear(4 * dim, 2 * dim, bias=False), nn.LayerNorm(4 * dim)

    def forward(self, x):
        parts = [x[..., i::2, j::2, :] for j in (0, 1) for i in (0, 1)]  # x0, x1, x2, x3 as torchvision
        return self.reduction(self.norm(F.cat(parts, -1)))


class SwinTransformer(nn.Module):
    def __init__(self, mistake=None):
        super().__init__()
        dim, window = SWIN["embed_dim"], SWIN["window_size"]
        layers = [nn.Sequential(nn.Conv2d(3, dim, 4, 4), Permute([0, 2, 3, 1]), nn.LayerNorm(dim))]
        for stage, (depth, heads) in enumerate(zip(SWIN["depths"], SWIN["num_heads"])):
            d = dim * 2 ** stage
            layers.append(nn.Sequential(*(SwinTransformerBlock(d, heads, window, [0 if i % 2 == 0 else w // 2
                                                                                  for w in window],
                                                               mistake) for i in range(depth))))
            if stage < len(SWIN["depths"]) - 1:
                layers.append(PatchMerging(d))
        self.features = nn.Sequential(*layers)
        final = dim * 2 ** (len(SWIN["depths"]) - 1)
        self.norm, self.permute = nn.LayerNorm(final), Permute([0, 3, 1, 2])
        self.avgpool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten(1)
        self.head = nn.Linear(final, SWIN["num_classes"])

    def forward(self, x):
        return self.head(self.flatten(self.avgpool(self.permute(self.norm(self.features(x))))))


def swin_pair(mistake=None):
    torch.manual_seed(0)
    theirs = tv_swin.SwinTransformer(**SWIN)
    with torch.no_grad():  # a random bias table: zeros (torch's init is trunc_normal) would hide index mistakes
        for m in theirs.modules():
            if isinstance(m, tv_swin.ShiftedWindowAttention):
                m.relative_position_bias_table.normal_(0, 0.5)
    theirs = _randomized(theirs)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return theirs, _load(SwinTransformer(mistake), theirs), x


@pytest.mark.parametrize("emission", ["fused", "decomposed"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_swin(dtype, emission):
    theirs, ours, x = swin_pair()
    with F.emission(attention=emission):
        report = netdef.compare(theirs, ours, (x,), dtype=dtype)
    assert report.ok, str(report)
    compared = {r.path for r in report.rows if r.status == "ok"}
    assert {"features.1.1.attn", "features.2", "features.3.0.attn", "head"} <= compared
