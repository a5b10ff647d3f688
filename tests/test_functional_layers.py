"""Which TensorRT layers the conv/pool/norm/resize ops emit, with which attributes and dtypes.

Numerics are in test_nn_numerics.py; here the graph itself is checked: the special cases
(1-D convolution, output_padding past the padding, ceil_mode extra padding, counted padding,
divisor_override, uneven adaptive pooling, float32 statistics, dynamic resize sizes) take
the layers the op documents, and bad arguments are clear errors.
"""
from __future__ import annotations

import numpy as np
import pytest

import netdef
from netdef import backend, dtypes
from netdef import functional as F


def _trace(fn, shape, dtype="float32") -> netdef.Network:
    return netdef.trace(fn, netdef.Input("x", shape), dtype=dtype)


def _kinds(net: netdef.Network) -> list[str]:
    return [layer.type.name for layer in net.layers]


def _only(net: netdef.Network, kind: str):
    found = [backend.downcast(layer) for layer in net.layers if layer.type.name == kind]
    assert len(found) == 1, _kinds(net)
    return found[0]


def _w(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_conv2d_is_one_layer_with_kernel_and_bias():
    w, b = _w(6, 4, 3, 3), _w(6, seed=1)
    net = _trace(lambda x: F.conv2d(x, w, b, stride=(2, 1), padding=(0, 2), dilation=(1, 3)), (1, 4, 9, 9))
    conv = _only(net, "CONVOLUTION")
    assert _kinds(net) == ["CONVOLUTION"]
    assert tuple(conv.stride_nd) == (2, 1) and tuple(conv.dilation_nd) == (1, 3)
    assert tuple(conv.pre_padding) == (0, 2) and tuple(conv.post_padding) == (0, 2)
    np.testing.assert_array_equal(conv.kernel, w.ravel())
    np.testing.assert_array_equal(conv.bias, b)


def test_conv_weights_take_the_activation_dtype():
    net = _trace(lambda x: F.conv2d(x, _w(6, 4, 3, 3), _w(6)), (1, 4, 9, 9), "float16")
    conv = _only(net, "CONVOLUTION")
    assert conv.kernel.dtype == np.float16 and conv.bias.dtype == np.float16
    assert conv.get_output(0).dtype == dtypes.to_trt("float16")


def test_conv1d_unsqueezes_to_2d_and_back():
    net = _trace(lambda x: F.conv1d(x, _w(5, 3, 4), None, stride=2, padding="valid"), ((1, 2, 3), 3, 11))
    assert _kinds(net) == ["SHUFFLE", "CONVOLUTION", "SHUFFLE"]
    conv = _only(net, "CONVOLUTION")
    assert tuple(conv.kernel_size_nd) == (4, 1) and tuple(conv.stride_nd) == (2, 1)
    assert tuple(net.network.get_output(0).shape) == (-1, 5, 4)


def test_conv3d_attributes():
    net = _trace(lambda x: F.conv3d(x, _w(4, 2, 3, 3, 3), None, padding=(1, 0, 1), groups=2), (1, 4, 5, 5, 5))
    conv = _only(net, "CONVOLUTION")
    assert conv.num_groups == 2 and tuple(conv.pre_padding) == (1, 0, 1)
    assert tuple(net.network.get_output(0).shape) == (1, 4, 5, 3, 5)


def test_conv_transpose_takes_torch_weight_layout():
    w = _w(4, 3, 3, 3)  # (in, out/groups, kh, kw) with groups=2 -> 6 outputs
    net = _trace(lambda x: F.conv_transpose2d(x, w, _w(6), stride=2, padding=1, output_padding=1, groups=2),
                 (1, 4, 5, 5))
    deconv = _only(net, "DECONVOLUTION")
    assert _kinds(net) == ["DECONVOLUTION"]
    assert deconv.num_output_maps == 6 and deconv.num_groups == 2
    assert tuple(deconv.pre_padding) == (1, 1) and tuple(deconv.post_padding) == (0, 0)
    np.testing.assert_array_equal(deconv.kernel, w.ravel())
    assert tuple(net.network.get_output(0).shape) == (1, 6, 10, 10)


def test_conv_transpose_output_padding_past_padding_pads_then_adds_bias():
    """Rows beyond the full deconvolution hold only the bias; TensorRT has no negative padding."""
    net = _trace(lambda x: F.conv_transpose2d(x, _w(4, 3, 3, 3), _w(3), stride=2, output_padding=1), (1, 4, 5, 5))
    deconv = _only(net, "DECONVOLUTION")
    assert deconv.bias.size == 0 and tuple(deconv.post_padding) == (0, 0)
    assert "SLICE" in _kinds(net) and _kinds(net)[-1] == "ELEMENTWISE"
    assert tuple(net.network.get_output(0).shape) == (1, 3, 12, 12)


@pytest.mark.parametrize("call,words", [
    (lambda x: F.conv2d(x, _w(6, 4, 3)), ["4 dims"]),
    (lambda x: F.conv2d(x, _w(6, 3, 3, 3)), ["4 channels", "expects 3"]),
    (lambda x: F.conv2d(x, _w(6, 4, 3, 3), _w(5)), ["bias", "(6,)"]),
    (lambda x: F.conv2d(x, _w(6, 4, 3, 3), padding=(1, 2, 3)), ["padding", "2 values"]),
    (lambda x: F.conv2d(x, _w(6, 4, 3, 3), padding=-1), [">= 0"]),
    (lambda x: F.conv_transpose2d(x, _w(4, 3, 3, 3), padding="same"), ["an int or a tuple"]),
    (lambda x: F.conv_transpose2d(x, _w(4, 3, 3, 3), stride=2, output_padding=2), ["output_padding"]),
    (lambda x: F.conv2d(x, F.identity(x)), ["constants"]),
    (lambda x: F.max_pool2d(x, 2, return_indices=True), ["return_indices"]),
    (lambda x: F.interpolate(x), ["exactly one of size and scale_factor"]),
    (lambda x: F.interpolate(x, scale_factor=2, antialias=True), ["antialias"]),
    (lambda x: F.interpolate(x, size=(2, 3, 4)), ["size needs 2 values"]),
    (lambda x: F.batch_norm(x, np.zeros(4), np.ones(4), training=True), ["inference"]),
    (lambda x: F.batch_norm(x, np.zeros(3), np.ones(4)), ["running_mean", "(4,)"]),
    (lambda x: F.layer_norm(x, (8,), np.ones(7)), ["weight", "(8,)"]),
    (lambda x: F.group_norm(x, 3), ["num_groups=3"]),
])
def test_bad_arguments_are_trace_errors_naming_the_line(call, words):
    with pytest.raises(netdef.TraceError) as info:
        _trace(call, (1, 4, 8, 8))
    msg = str(info.value)
    assert "test_functional_layers.py" in msg, msg
    for w in words:
        assert w in msg, msg


def test_max_pool_ceil_mode_becomes_explicit_post_padding():
    net = _trace(lambda x: F.max_pool2d(x, 2, padding=1, ceil_mode=True), (1, 3, 5, 5))
    pool = _only(net, "POOLING")
    # torch: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start in the right padding: 3
    assert tuple(pool.post_padding) == (1, 1) and pool.padding_mode == backend.trt().PaddingMode.EXPLICIT_ROUND_DOWN
    assert tuple(net.network.get_output(0).shape) == (1, 3, 3, 3)


def test_avg_pool_ceil_mode_with_counted_padding_pads_with_real_zeros():
    net = _trace(lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), (1, 3, 8, 8))
    assert _kinds(net)[-2:] == ["SLICE", "POOLING"]
    pool = _only(net, "POOLING")
    assert tuple(pool.pre_padding) == (0, 0) and tuple(pool.post_padding) == (1, 1)
    assert pool.average_count_excludes_padding is True
    assert tuple(net.network.get_output(0).shape) == (1, 3, 5, 5)


def test_avg_pool_ceil_mode_excluding_padding_needs_no_extra_layer():
    net = _trace(lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 3, 8, 8))
    pool = _only(net, "POOLING")
    assert _kinds(net) == ["POOLING"]
    assert tuple(pool.pre_padding) == (1, 1) and tuple(pool.post_padding) == (2, 2)


def test_avg_pool_divisor_override_rescales_the_mean():
    net = _trace(lambda x: F.avg_pool2d(x, 2, divisor_override=3), (1, 3, 6, 6))
    assert _kinds(net) == ["POOLING", "CONSTANT", "ELEMENTWISE"]
    const = _only(net, "CONSTANT")
    assert float(np.asarray(const.weights).ravel()[0]) == pytest.approx(4 / 3)


def test_adaptive_avg_pool_uneven_uses_averaging_matrices():
    net = _trace(lambda x: F.adaptive_avg_pool2d(x, (3, 4)), ((1, 2, 4), 2, 7, 10))
    assert _kinds(net).count("MATRIX_MULTIPLY") == 2 and "POOLING" not in _kinds(net)
    mats = {layer.name: np.asarray(backend.downcast(layer).weights) for layer in net.layers
            if layer.type.name == "CONSTANT" and "avg_matrix" in layer.name}
    h = mats["avg_matrix_h"].reshape(3, 7)
    np.testing.assert_allclose(h.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(h[0], [1 / 3] * 3 + [0] * 4, rtol=1e-6)  # bin [0, 3)
    np.testing.assert_allclose(h[1], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0, 0], rtol=1e-6)  # bin [2, 5): bins overlap
    assert tuple(net.network.get_output(0).shape) == (-1, 2, 3, 4)


def test_adaptive_max_pool_uneven_gathers_window_starts():
    net = _trace(lambda x: F.adaptive_max_pool2d(x, (3, 10)), (1, 2, 7, 10))
    assert _kinds(net).count("GATHER") == 1  # the width is already 10
    pool = _only(net, "POOLING")
    assert tuple(pool.window_size_nd) == (3, 1) and tuple(pool.stride_nd) == (1, 1)
    assert tuple(net.network.get_output(0).shape) == (1, 2, 3, 10)


def test_adaptive_pool_needs_static_spatial_dims():
    with pytest.raises(netdef.TraceError, match="static spatial"):
        _trace(lambda x: F.adaptive_avg_pool2d(x, 2), (1, 2, (4, 8, 16), 8))


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 4)])
def test_batch_norm_is_one_channel_scale_layer(shape):
    net = _trace(lambda x: F.batch_norm(x, np.full(3, 0.5), np.full(3, 4.0), np.full(3, 2.0), np.ones(3), eps=0),
                 shape, "float16")
    scale = _only(net, "SCALE")
    assert scale.mode == backend.trt().ScaleMode.CHANNEL and scale.channel_axis == 1
    assert scale.scale.dtype == np.float16
    np.testing.assert_array_equal(scale.scale, [1.0] * 3)  # 2 / sqrt(4)
    np.testing.assert_array_equal(scale.shift, [0.5] * 3)  # 1 - 0.5 * 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_norm_layers_compute_in_float32(dtype):
    net = _trace(lambda x: F.group_norm(x, 2, np.ones(4), np.zeros(4), eps=1e-3), (2, 4, 3, 3), dtype)
    norm = _only(net, "NORMALIZATION")
    assert norm.get_input(0).dtype == dtypes.to_trt("float32") and norm.num_groups == 2
    assert norm.epsilon == pytest.approx(1e-3) and norm.axes == 0b1100
    assert tuple(norm.get_input(1).shape) == (1, 2, 1, 1)  # per-group scale; the affine is a scale layer
    affine = _only(net, "SCALE")
    assert affine.mode == backend.trt().ScaleMode.CHANNEL
    last = net.network.get_output(0)
    assert last.dtype == dtypes.to_trt("float32")
    kinds = _kinds(net)
    assert kinds.count("CAST") == (0 if dtype == "float32" else 4)  # in/out of the net, around the norm


def test_layer_norm_axes_and_weights():
    w = _w(4, 5)
    net = _trace(lambda x: F.layer_norm(x, (4, 5), w, None, 1e-6), (2, 3, 4, 5))
    norm = _only(net, "NORMALIZATION")
    assert norm.axes == 0b1100 and norm.num_groups == 1
    assert tuple(norm.get_input(1).shape) == (1, 1, 4, 5)


def test_instance_norm_with_running_stats_is_batch_norm():
    net = _trace(lambda x: F.instance_norm(x, np.zeros(3), np.ones(3), use_input_stats=False), (2, 3, 4, 4))
    assert _kinds(net) == ["SCALE"]


def test_interpolate_dynamic_batch_with_size_builds_a_shape_tensor():
    net = _trace(lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"), ((1, 2, 4), 3, 4, 4))
    resize = _only(net, "RESIZE")
    assert resize.num_inputs == 2 and resize.get_input(1).shape == (4,)
    assert tuple(net.network.get_output(0).shape) == (-1, 3, 5, 7)


def test_interpolate_scale_factor_keeps_dynamic_batch():
    net = _trace(lambda x: F.interpolate(x, scale_factor=(2, 3)), ((1, 2, 4), 3, 4, 4))
    resize = _only(net, "RESIZE")
    assert tuple(resize.scales) == (1.0, 1.0, 2.0, 3.0) and resize.num_inputs == 1
    assert tuple(net.network.get_output(0).shape) == (-1, 3, 8, 12)


def test_interpolate_area_is_adaptive_avg_pool():
    net = _trace(lambda x: F.interpolate(x, size=(2, 2), mode="area"), (1, 3, 8, 8))
    assert _kinds(net) == ["POOLING"]
