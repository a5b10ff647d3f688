"""Activations with torch.nn.functional's names and arguments.

A TensorRT ActivationType is used where its formula is exactly torch's; the rest are composed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.arrays import to_numpy
from netdef import network
from netdef.functional._core import cast, constant, out, reshape_to, trt
from netdef.functional.elementwise import gt, mul
from netdef.functional.misc import where
from netdef.tensor import Tensor

# torch.nn.functional.selu's constants
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _act(x: Tensor, kind: str, name: str, alpha: float | None = None, beta: float | None = None) -> Tensor:
    layer = network.current().network.add_activation(x.trt, getattr(trt().ActivationType, kind))
    if alpha is not None:
        layer.alpha = alpha
    if beta is not None:
        layer.beta = beta
    return out(layer, name)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _act(input, "RELU", "relu")


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return _act(input, "CLIP", "relu6", alpha=0.0, beta=6.0)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _act(input, "LEAKY_RELU", "leaky_relu", alpha=negative_slope)


def sigmoid(input: Tensor) -> Tensor:
    return _act(input, "SIGMOID", "sigmoid")


def tanh(input: Tensor) -> Tensor:
    return _act(input, "TANH", "tanh")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return mul(input, sigmoid(input))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        network.current().fail(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return _act(input, "GELU_ERF" if approximate == "none" else "GELU_TANH", "gelu")


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    # torch: relu6(x + 3) / 6 == clamp(x / 6 + 1/2, 0, 1)
    return _act(input, "HARD_SIGMOID", "hardsigmoid", alpha=1.0 / 6.0, beta=0.5)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    # torch: x * relu6(x + 3) / 6
    return mul(input, hardsigmoid(input))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _act(input, "ELU", "elu", alpha=alpha)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return _act(input, "SELU", "selu", alpha=_SELU_ALPHA, beta=_SELU_SCALE)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """torch: log(1 + exp(beta*x)) / beta, and x itself where beta*x > threshold.

    TensorRT's SOFTPLUS has no threshold, so the linear region is selected explicitly; it
    also keeps float16 from overflowing exp() there.
    """
    soft = _act(input, "SOFTPLUS", "softplus", alpha=1.0 / beta, beta=beta)
    scaled = input if beta == 1 else mul(input, beta)
    return where(gt(scaled, threshold), input, soft)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return mul(input, tanh(softplus(input)))


def prelu(input: Tensor, weight: Any) -> Tensor:
    """torch: one slope per channel (dim 1), or a single slope for all."""
    n = int(np.prod(weight.shape))
    shape = [1] * input.ndim
    if n != 1:
        if input.ndim < 2 or input.shape[1] not in (n, -1):
            network.current().fail(f"prelu has {n} slopes but the input of shape {input.shape} "
                                   f"has {input.shape[1] if input.ndim > 1 else 1} channels")
        shape[1] = n
    if isinstance(weight, Tensor):
        slope = cast(reshape_to(weight, shape), input.dtype)
    else:
        arr = to_numpy(weight)
        slope = constant(arr.reshape(shape), input.dtype, op="weight")
    return out(network.current().network.add_parametric_relu(input.trt, slope.trt), "prelu")


__all__ = [
    "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "gelu", "hardsigmoid", "hardswish",
    "elu", "selu", "softplus", "mish", "prelu",
]
