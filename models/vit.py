"""A ViT-style encoder with torchvision's VisionTransformer structure and state_dict names.

conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_N.{ln_1,
self_attention, ln_2, mlp.0, mlp.3}, encoder.ln and heads.head equal torchvision's, so a
torchvision VisionTransformer's state_dict loads unchanged. Attention is netdef.nn.MultiheadAttention
(TensorRT's fused attention layer or matmul/softmax, see netdef.functional.emission).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from netdef import functional as F
from netdef import network, nn


# torchvision's blocks hold a torch.nn.MultiheadAttention; the port holds netdef's, with the same
# parameters (in_proj_weight, in_proj_bias, out_proj.*). Kept under this name for existing imports.
MultiheadAttention = nn.MultiheadAttention


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout: torchvision's mlp.0 ... mlp.4."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp_dim, in_dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Any) -> Any:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = F.add(self.dropout(x), input)
        return F.add(x, self.mlp(self.ln_2(x)))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.pos_embedding = nn.Parameter((0.02 * rng.standard_normal((1, seq_length, hidden_dim))).astype(np.float32))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)))
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, input: Any) -> Any:
        return self.ln(self.layers(self.dropout(F.add(input, self.pos_embedding))))


class VisionTransformer(nn.Module):
    """Patch embedding + class token + transformer encoder + linear head; returns logits."""

    def __init__(self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, dropout: float = 0.0, attention_dropout: float = 0.0,
                 num_classes: int = 1000) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) is not divisible by patch_size ({patch_size})")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(np.zeros((1, 1, hidden_dim), np.float32))
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(self.seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout,
                               attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def forward(self, x: Any) -> Any:
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            network.current().fail(f"VisionTransformer expects {self.image_size}x{self.image_size} images, "
                                   f"got input shape {x.shape}")
        n = x.size(0)
        x = F.permute(F.flatten(self.conv_proj(x), 2), (0, 2, 1))  # (N, patches, hidden)
        token = F.expand(F.to_tensor(self.class_token), (n, -1, -1))
        x = self.encoder(F.cat([token, x], 1))
        return self.heads(F.getitem(x, (slice(None), 0)))  # the class token


def vit_tiny(image_size: int = 32, patch_size: int = 8, num_classes: int = 10) -> VisionTransformer:
    """The small configuration the tests compare against torchvision's VisionTransformer."""
    return VisionTransformer(image_size, patch_size, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
                             num_classes=num_classes)


def vit_b_16(image_size: int = 224, num_classes: int = 1000) -> VisionTransformer:
    """torchvision's vit_b_16 configuration."""
    return VisionTransformer(image_size, 16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072,
                             num_classes=num_classes)


__all__ = ["Encoder", "EncoderBlock", "MLPBlock", "MultiheadAttention", "VisionTransformer", "vit_b_16",
           "vit_tiny"]
