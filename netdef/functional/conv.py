"""Convolutions and transposed convolutions, 1-D to 3-D, with torch.nn.functional's arguments.

One helper, `_conv_nd`, maps every variant to TensorRT's convolution/deconvolution layer.
Weights (Parameters or arrays) become kernel Weights in the dtype of the activation they
meet; in a quantized module (netdef.quantize) the kernel is a Q/DQ tensor on input 1 instead.
TensorRT has no 1-D convolution, so 1-D inputs get a trailing size-1 axis.
TensorRT's deconvolution takes torch's ConvTranspose weight layout unchanged:
(in_channels, out_channels / groups, *kernel). TensorRT-RTX 1.7 cannot build a bfloat16
deconvolution, so bfloat16 activations are deconvolved in float32 and cast back.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.arrays import to_numpy
from netdef import network, quantize
from netdef.functional._core import cast, constant, out, tuple_n
from netdef.tensor import Tensor


def _array(w: Any) -> np.ndarray:
    if isinstance(w, Tensor):
        network.current().fail("convolution weights must be constants (a Parameter or an array), "
                               "not a traced Tensor")
    return to_numpy(w)


def _padding(op: str, padding: Any, kernel: tuple, dilation: tuple, stride: tuple,
             transposed: bool) -> tuple[tuple, tuple]:
    """(pre, post) padding; 'same' puts the odd extra element at the end, as torch does."""
    n = len(kernel)
    net = network.current()
    if isinstance(padding, str):
        if transposed or padding not in ("same", "valid"):
            allowed = "an int or a tuple" if transposed else "an int, a tuple, 'same' or 'valid'"
            net.fail(f"{op} padding must be {allowed}, got {padding!r}")
        if padding == "valid":
            return (0,) * n, (0,) * n
        if any(s != 1 for s in stride):
            net.fail(f"{op} padding='same' is not supported for strided convolutions (stride={stride})")
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple(p // 2 for p in total), tuple(p - p // 2 for p in total)
    try:
        pad = tuple_n(padding, n)
    except ValueError as exc:
        net.fail(f"{op} padding: {exc}")
    if any(p < 0 for p in pad):
        net.fail(f"{op} padding must be >= 0, got {pad}")
    return pad, pad


def _conv_nd(op: str, n: int, input: Tensor, weight: Any, bias: Any, stride: Any, padding: Any,
             dilation: Any, groups: int, output_padding: Any = None) -> Tensor:
    """Convolution (output_padding None) or transposed convolution with `n` spatial dims."""
    from netdef import functional as F

    net = network.current()
    transposed = output_padding is not None
    w, b = _array(weight), None if bias is None else _array(bias)
    layout = "(in, out/groups, *kernel)" if transposed else "(out, in/groups, *kernel)"
    if w.ndim != n + 2:
        net.fail(f"{op} weight must have {n + 2} dims {layout}, got shape {tuple(w.shape)}")
    if input.ndim != n + 2:
        net.fail(f"{op} expects a {n + 2}-D input (N, C, {'L' if n == 1 else '...'}), "
                 f"got shape {input.shape}")
    in_ch = w.shape[0] if transposed else w.shape[1] * groups
    out_ch = w.shape[1] * groups if transposed else w.shape[0]
    if (w.shape[0] % groups) or (input.shape[1] >= 0 and input.shape[1] != in_ch):
        net.fail(f"{op}: input has {input.shape[1]} channels but weight {tuple(w.shape)} with "
                 f"groups={groups} expects {in_ch}")
    if b is not None and b.shape != (out_ch,):
        net.fail(f"{op} bias must have shape ({out_ch},), got {tuple(b.shape)}")
    kernel = tuple(int(k) for k in w.shape[2:])
    try:
        stride, dilation = tuple_n(stride, n), tuple_n(dilation, n)
    except ValueError as exc:
        net.fail(f"{op} stride/dilation: {exc}")
    pre, post = _padding(op, padding, kernel, dilation, stride, transposed)
    extend = (0,) * n  # transposed only: rows past the full output that hold just the bias
    if transposed:
        opad = tuple_n(output_padding, n)
        if any(not 0 <= o < max(s, d) for o, s, d in zip(opad, stride, dilation)):
            net.fail(f"{op} output_padding {opad} must be smaller than stride or dilation")
        extend = tuple(max(o - p, 0) for o, p in zip(opad, post))
        post = tuple(max(p - o, 0) for o, p in zip(opad, post))
    if n == 1:  # TensorRT convolves 2-D or 3-D only
        input, w = F.unsqueeze(input, -1), w.reshape(*w.shape, 1)
        kernel, stride, dilation = kernel + (1,), stride + (1,), dilation + (1,)
        pre, post, extend = pre + (0,), post + (0,), extend + (0,)
    dtype = input.dtype
    if transposed and dtype == "bfloat16":  # TensorRT-RTX 1.7 cannot build a bfloat16 deconvolution
        input = cast(input, "float32")
    qweight = None
    if not transposed:  # in a quantized module: Q/DQ on the input, and a Q/DQ kernel tensor
        input, qweight = quantize.operands(input, w)
    bias_in_layer = b is not None and not any(extend)
    add = net.network.add_deconvolution_nd if transposed else net.network.add_convolution_nd
    kernel_weights = w if qweight is None else w.reshape(-1)[:0]  # empty: the kernel is input 1
    k_arr = net.keep_as(kernel_weights, input.dtype)
    b_arr = net.keep_as(b, input.dtype) if bias_in_layer else None
    args = (input.trt, out_ch, kernel, net.as_weights(k_arr))
    layer = add(*args, net.as_weights(b_arr)) if bias_in_layer else add(*args)
    if layer is None:
        net.add(layer, op)  # raises with TensorRT's message
    if not transposed and qweight is None:
        net.conv_arrays[net.network.num_layers - 1] = (k_arr, b_arr)
    if qweight is not None:
        layer.set_input(1, qweight.trt)
    layer.stride_nd, layer.dilation_nd, layer.num_groups = stride, dilation, groups
    layer.pre_padding, layer.post_padding = pre, post
    y = out(layer, op)
    if any(extend):
        pads = [v for e in reversed(extend) for v in (0, e)]
        y = F.pad(y, pads)
        if b is not None:
            y = F.add(y, constant(b.reshape(1, -1, *(1,) * len(kernel)), y.dtype, op="bias"))
    y = cast(y, dtype)
    return F.squeeze(y, -1) if n == 1 else y


def conv1d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    return _conv_nd("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    return _conv_nd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    return _conv_nd("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    return _conv_nd("conv_transpose1d", 1, input, weight, bias, stride, padding, dilation, groups,
                    output_padding)


def conv_transpose2d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    return _conv_nd("conv_transpose2d", 2, input, weight, bias, stride, padding, dilation, groups,
                    output_padding)


def conv_transpose3d(input: Tensor, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    return _conv_nd("conv_transpose3d", 3, input, weight, bias, stride, padding, dilation, groups,
                    output_padding)


__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
