"""Activation modules: thin wrappers over netdef.functional, torch.nn's signatures."""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef.nn.module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Any) -> Any:
        return F.relu(input)

__all__ = ["ReLU"]
