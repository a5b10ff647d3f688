"""Convolutions. Weights given as Parameters/arrays become kernel Weights in the compute dtype."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import network
from netdef.functional._core import out, tuple_n
from netdef.tensor import Tensor


def _weights(net: network.Network, w: Any, dtype: str):
    if w is None:
        return None
    arr = w.data if hasattr(w, "data") and not isinstance(w, np.ndarray) else np.asarray(w)
    return net.weights(arr, dtype)


def conv2d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    net = network.current()
    t = net.network
    w = _weights(net, weight, input.dtype)
    b = _weights(net, bias, input.dtype)
    shape = tuple(weight.shape)
    if len(shape) != 4:
        net.fail(f"conv2d weight must have 4 dims (out, in/groups, kh, kw), got shape {shape}")
    layer = t.add_convolution_nd(input.trt, shape[0], shape[2:], w, b) if b is not None else \
        t.add_convolution_nd(input.trt, shape[0], shape[2:], w)
    layer.stride_nd = tuple_n(stride, 2)
    layer.dilation_nd = tuple_n(dilation, 2)
    layer.num_groups = groups
    if isinstance(padding, str):
        if padding == "same":
            pad = [d * (k - 1) for d, k in zip(layer.dilation_nd, shape[2:])]
            layer.pre_padding = tuple(p // 2 for p in pad)
            layer.post_padding = tuple(p - p // 2 for p in pad)
        elif padding != "valid":
            net.fail(f"conv2d padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        layer.padding_nd = tuple_n(padding, 2)
    return out(layer, "conv")


__all__ = ['conv2d']
