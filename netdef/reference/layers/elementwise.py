"""Reference semantics: activations, elementwise, unary, select, casts and scale layers."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from netdef.errors import RunnerError
from netdef.reference.registry import input_rank, register


@register("ACTIVATION")
def activation(layer, ctx):
    a, b = layer.alpha, layer.beta
    table = {
        "RELU": torch.relu,
        "SIGMOID": torch.sigmoid,
        "TANH": torch.tanh,
        "LEAKY_RELU": lambda x: torch.where(x >= 0, x, a * x),
        "ELU": lambda x: torch.where(x >= 0, x, a * torch.expm1(x)),
        "SELU": lambda x: b * torch.where(x >= 0, x, a * torch.expm1(x)),
        "SOFTSIGN": lambda x: x / (1 + x.abs()),
        "SOFTPLUS": lambda x: a * F.softplus(b * x),
        "CLIP": lambda x: x.clamp(a, b),
        "HARD_SIGMOID": lambda x: (a * x + b).clamp(0, 1),
        "SCALED_TANH": lambda x: a * torch.tanh(b * x),
        # ONNX ThresholdedRelu, which the ONNX parser maps here (see docs/reference.md)
        "THRESHOLDED_RELU": lambda x: torch.where(x > a, x, torch.zeros((), dtype=x.dtype, device=x.device)),
        "GELU_ERF": F.gelu,
        "GELU_TANH": lambda x: F.gelu(x, approximate="tanh"),
    }
    kind = layer.type.name  # after downcast, `type` is the ActivationType
    if kind not in table:
        raise RunnerError(f"activation {kind} is not supported")
    return table[kind]


def _int_div(a, b):
    return torch.div(a, b, rounding_mode="trunc")


def _div(a, b):
    return a / b if a.is_floating_point() else _int_div(a, b)


def _floor_div(a, b):
    return torch.floor(a / b) if a.is_floating_point() else torch.div(a, b, rounding_mode="floor")


@register("ELEMENTWISE")
def elementwise(layer, ctx):
    table = {
        "SUM": torch.add, "PROD": torch.mul, "MAX": torch.maximum, "MIN": torch.minimum,
        "SUB": torch.sub, "DIV": _div, "POW": torch.pow, "FLOOR_DIV": _floor_div,
        "AND": torch.logical_and, "OR": torch.logical_or, "XOR": torch.logical_xor,
        "EQUAL": torch.eq, "GREATER": torch.gt, "LESS": torch.lt,
    }
    return table[layer.op.name]


_UNARY: dict[str, Callable] = {
    "EXP": torch.exp, "LOG": torch.log, "SQRT": torch.sqrt, "RECIP": torch.reciprocal,
    "ABS": torch.abs, "NEG": torch.neg, "SIN": torch.sin, "COS": torch.cos, "TAN": torch.tan,
    "SINH": torch.sinh, "COSH": torch.cosh, "ASIN": torch.asin, "ACOS": torch.acos,
    "ATAN": torch.atan, "ASINH": torch.asinh, "ACOSH": torch.acosh, "ATANH": torch.atanh,
    "CEIL": torch.ceil, "FLOOR": torch.floor, "ERF": torch.erf, "NOT": torch.logical_not,
    "SIGN": torch.sign, "ROUND": torch.round,  # torch.round: half to even, as TensorRT
    "ISINF": torch.isinf, "ISNAN": torch.isnan,
}


@register("UNARY")
def unary(layer, ctx):
    if layer.op.name not in _UNARY:
        raise RunnerError(f"unary operation {layer.op.name} is not supported")
    return _UNARY[layer.op.name]


@register("PARAMETRIC_RELU")
def parametric_relu(layer, ctx):
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@register("SELECT")
def select(layer, ctx):
    return torch.where


@register("IDENTITY", "CAST")
def identity(layer, ctx):
    # the cast itself is the dtype policy's output cast (program.py): float -> int truncates
    # toward zero, nonzero -> True, as torch's .to()
    return lambda x: x


@register("SCALE")
def scale(layer, ctx):
    rank, axis, mode = input_rank(layer), layer.channel_axis, layer.mode.name
    axis = axis % rank if rank else 0

    def view(w):
        if w is None or mode == "UNIFORM":
            return None if w is None else w.reshape(())
        in_shape = layer.get_input(0).shape
        if mode == "CHANNEL":
            return w.reshape([-1 if d == axis else 1 for d in range(rank)])
        tail = [d if d >= 0 else -1 for d in in_shape[axis:]]
        return w.reshape([1] * axis + tail)

    s, t, p = (view(ctx.weights(w)) for w in (layer.scale, layer.shift, layer.power))

    def fn(x):
        if s is not None:
            x = x * s
        if t is not None:
            x = x + t
        return x if p is None else torch.pow(x, p)  # (x * scale + shift) ^ power
    return fn
