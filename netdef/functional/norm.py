"""Normalizations (inference): batch_norm, layer_norm, group_norm, instance_norm.

batch_norm folds its running statistics into one per-channel scale layer.
The others use TensorRT's normalization layer, whose formula is torch's exactly
((x - mean) / sqrt(biased var + eps) * weight + bias). Statistics of a float16/bfloat16
activation are computed in float32: a float16 sum of squares over a few thousand elements
overflows or loses the variance (TensorRT itself advises float32 for this layer), and in a
strongly typed network the only way to ask for float32 is to cast around the layer. So a
16-bit input is cast to float32, normalized with float32 weight/bias, and cast back.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef.arrays import to_numpy
from netdef import dtypes, network
from netdef.functional import elementwise as ew, reduce as rd
from netdef.functional._core import cast, constant, out, trt
from netdef.tensor import Tensor


def _array(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, Tensor):
        network.current().fail("normalization weights and statistics must be constants "
                               "(a Parameter or an array), not a traced Tensor")
    return np.asarray(to_numpy(v), np.float64)


def _check_len(op: str, name: str, v: np.ndarray | None, n: int) -> None:
    if v is not None and v.shape != (n,):
        network.current().fail(f"{op} {name} must have shape ({n},), got {tuple(v.shape)}")


def _channels(op: str, input: Tensor) -> int:
    net = network.current()
    if input.ndim < 2:
        net.fail(f"{op} expects an input of shape (N, C, ...), got shape {input.shape}")
    if input.shape[1] < 0:
        net.fail(f"{op} needs a static channel dimension, got shape {input.shape}")
    return input.shape[1]


def _channel_scale(x: Tensor, scale: np.ndarray, shift: np.ndarray, op: str) -> Tensor:
    """One IScaleLayer in CHANNEL mode: x * scale + shift along axis 1, weights in x's dtype."""
    net = network.current()
    w = [net.weights(a, x.dtype) for a in (shift, scale, np.ones_like(scale))]
    layer = net.network.add_scale_nd(x.trt, trt().ScaleMode.CHANNEL, *w, 1)
    return out(layer, op)


def batch_norm(input: Tensor, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Inference batch norm: scale = weight / sqrt(var + eps), shift = bias - mean * scale."""
    net = network.current()
    op = "batch_norm"
    if training or running_mean is None or running_var is None:
        net.fail(f"{op} needs running_mean and running_var and training=False: netdef builds "
                 "inference networks (batch statistics are a training-time feature)")
    c = _channels(op, input)
    mean, var, w, b = (_array(v) for v in (running_mean, running_var, weight, bias))
    for name, v in (("running_mean", mean), ("running_var", var), ("weight", w), ("bias", b)):
        _check_len(op, name, v, c)
    scale = (np.ones(c) if w is None else w) / np.sqrt(var + eps)
    shift = (np.zeros(c) if b is None else b) - mean * scale
    return _channel_scale(input, scale, shift, op)


def _normalize(op: str, input: Tensor, axes: Sequence[int], scale: np.ndarray, bias: np.ndarray,
               eps: float, groups: int = 1, affine: tuple | None = None) -> Tensor:
    """TensorRT's normalization layer in float32; `affine` = per-channel (weight, bias) after it."""
    net = network.current()
    dtype = input.dtype
    x = cast(input, "float32")
    s = constant(scale.astype(np.float32), "float32", op="norm_scale")
    b = constant(bias.astype(np.float32), "float32", op="norm_bias")
    layer = net.network.add_normalization(x.trt, s.trt, b.trt, sum(1 << a for a in axes))
    if layer is None:
        net.add(layer, op)  # raises with TensorRT's message
    layer.epsilon = eps
    layer.num_groups = groups
    y = out(layer, op)
    if affine is not None:
        y = _channel_scale(y, affine[0], affine[1], "affine")
    return cast(y, dtype)


def layer_norm(input: Tensor, normalized_shape: Any, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    net = network.current()
    op = "layer_norm"
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    tail = input.shape[input.ndim - k:] if 0 < k <= input.ndim else None
    if tail is None or any(d >= 0 and d != s for d, s in zip(tail, shape)):
        net.fail(f"{op}: input shape {input.shape} does not end with normalized_shape {shape}")
    w, b = _array(weight), _array(bias)
    for name, v in (("weight", w), ("bias", b)):
        if v is not None and v.shape != shape:
            net.fail(f"{op} {name} must have shape {shape}, got {tuple(v.shape)}")
    full = (1,) * (input.ndim - k) + shape
    w = np.ones(full) if w is None else w.reshape(full)
    b = np.zeros(full) if b is None else b.reshape(full)
    return _normalize(op, input, range(input.ndim - k, input.ndim), w, b, eps)


def group_norm(input: Tensor, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    """Normalized per group by the layer (its scale is per group), then a per-channel affine."""
    net = network.current()
    op = "group_norm"
    c = _channels(op, input)
    if input.ndim < 3:
        net.fail(f"{op} expects an input of shape (N, C, *spatial), got shape {input.shape}")
    if num_groups <= 0 or c % num_groups:
        net.fail(f"{op}: {c} channels are not divisible into num_groups={num_groups}")
    w, b = _array(weight), _array(bias)
    _check_len(op, "weight", w, c)
    _check_len(op, "bias", b, c)
    shape = (1, num_groups) + (1,) * (input.ndim - 2)
    affine = None
    if w is not None or b is not None:
        affine = (np.ones(c) if w is None else w, np.zeros(c) if b is None else b)
    return _normalize(op, input, range(2, input.ndim), np.ones(shape), np.zeros(shape), eps,
                      num_groups, affine)


def instance_norm(input: Tensor, running_mean: Any = None, running_var: Any = None, weight: Any = None,
                  bias: Any = None, use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:
    """Per-sample, per-channel statistics; with use_input_stats=False it is batch_norm."""
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    net = network.current()
    op = "instance_norm"
    c = _channels(op, input)
    if input.ndim < 3:
        net.fail(f"{op} expects an input of shape (N, C, *spatial), got shape {input.shape}")
    w, b = _array(weight), _array(bias)
    _check_len(op, "weight", w, c)
    _check_len(op, "bias", b, c)
    shape = (1, c) + (1,) * (input.ndim - 2)
    w = np.ones(shape) if w is None else w.reshape(shape)
    b = np.zeros(shape) if b is None else b.reshape(shape)
    return _normalize(op, input, range(2, input.ndim), w, b, eps)


def rms_norm(input: Tensor, normalized_shape: Any, weight: Any = None, eps: float | None = None) -> Tensor:
    """torch.nn.functional.rms_norm: x / sqrt(mean(x^2) + eps) * weight over the trailing dims.

    TensorRT's normalization layer subtracts the mean, so this is composed; the statistics are
    computed in float32 (as for layer_norm above), the weight is applied in the input's dtype.
    eps=None is the machine epsilon of the input's dtype, as in torch.
    """
    net = network.current()
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    tail = input.shape[input.ndim - k:] if 0 < k <= input.ndim else None
    if tail is None or any(d >= 0 and d != s for d, s in zip(tail, shape)):
        net.fail(f"rms_norm: input shape {input.shape} does not end with normalized_shape {shape}")
    if eps is None:
        eps = float(np.finfo(dtypes.to_numpy(input.dtype)).eps)
    x = cast(input, "float32")
    ms = rd.mean(ew.mul(x, x), tuple(range(input.ndim - k, input.ndim)), keepdim=True)
    y = cast(ew.mul(x, ew.rsqrt(ew.add(ms, eps))), input.dtype)
    if weight is None:
        return y
    if not isinstance(weight, Tensor):
        w = to_numpy(weight)
        if tuple(w.shape) != shape:
            net.fail(f"rms_norm weight must have shape {shape}, got {tuple(w.shape)}")
        weight = constant(w, input.dtype, op="weight")
    return ew.mul(y, weight)


def normalize(input: Tensor, p: float = 2.0, dim: Any = 1, eps: float = 1e-12, out: Any = None) -> Tensor:
    """torch.nn.functional.normalize: x / max(||x||_p, eps) along `dim`."""
    if out is not None:
        network.current().fail("normalize(out=...) writes in place; netdef ops return new tensors")
    if p == 2:
        norm = ew.sqrt(rd.sum(ew.mul(input, input), dim, keepdim=True))
    elif p == 1:
        norm = rd.sum(ew.abs(input), dim, keepdim=True)
    elif p == float("inf"):
        norm = rd.amax(ew.abs(input), dim, keepdim=True)
    else:
        norm = ew.pow(rd.sum(ew.pow(ew.abs(input), float(p)), dim, keepdim=True), 1.0 / p)
    return ew.div(input, ew.maximum(norm, eps))


__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "normalize", "rms_norm"]
