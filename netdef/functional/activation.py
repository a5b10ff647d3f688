"""Activations with torch.nn.functional's names and arguments."""
from __future__ import annotations

from netdef import network
from netdef.functional._core import out, trt
from netdef.tensor import Tensor


def _act(x: Tensor, kind: str, name: str, alpha: float | None = None, beta: float | None = None) -> Tensor:
    layer = network.current().network.add_activation(x.trt, getattr(trt().ActivationType, kind))
    if alpha is not None:
        layer.alpha = alpha
    if beta is not None:
        layer.beta = beta
    return out(layer, name)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _act(input, "RELU", "relu")


__all__ = ['relu']
