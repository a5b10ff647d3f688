"""A sequence classifier on a 2-layer bidirectional GRU (keyword spotting on log-mel frames,
for example): features (batch, time, n_features) -> GRU -> the last layer's final forward
and backward states -> LayerNorm -> Linear class scores.

It reads the GRU's final states (h_n, TensorRT LAST_VALUE loop outputs) rather than its
per-step output, so the number of frames can be a dynamic dimension of the engine.
"""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef import nn


class GRUClassifier(nn.Module):
    def __init__(self, n_features: int = 40, hidden_size: int = 64, num_layers: int = 2, num_classes: int = 12,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden_size, num_layers, batch_first=True, dropout=dropout,
                          bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden_size)
        self.fc = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, x: Any) -> Any:
        _, h_n = self.gru(x)
        h = F.cat((h_n[-2], h_n[-1]), 1)  # the last layer, forward and backward
        return self.fc(self.norm(h))


def gru_classifier() -> GRUClassifier:
    return GRUClassifier()


__all__ = ["GRUClassifier", "gru_classifier"]
