"""Numerics of the layer modules and conv/pool/norm/resize ops against torch.

Each case traces a netdef network, runs it with the reference runner (TensorRT layer
semantics executed with torch) and compares with torch.nn / torch.nn.functional on seeded
random inputs and random weights (BatchNorm running statistics included), in float32 and
float16. float16 networks are compared with the float32 torch result at float16 tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import netdef
from netdef import backend
from netdef import functional as F
from netdef import nn
from netdef.reference import run
from netdef.tolerance import assert_close
from test_nn_modules import SPECS, Wrap, _pair

DTYPES = ["float32", "float16"]


def _x(shape, seed: int = 0, low: float | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if low is not None:
        return torch.rand(shape, generator=g) + low
    return torch.randn(shape, generator=g)


def _randomize(module: torch.nn.Module, seed: int = 1) -> None:
    """Random weights; running variances positive (so BatchNorm folding is exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if not value.is_floating_point():
                continue
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
            else:
                value.copy_(torch.randn(value.shape, generator=g) * 0.5)


def _check(fn, x: torch.Tensor, expected: torch.Tensor, dtype: str, what: str = "") -> None:
    in_dtype = "int32" if not x.is_floating_point() else "float32"
    net = netdef.trace(fn, netdef.Input("x", tuple(x.shape), in_dtype), dtype=dtype)
    got = run(net, {"x": x.int() if in_dtype == "int32" else x})["output"]
    assert tuple(got.shape) == tuple(expected.shape), what
    assert_close(got, expected, dtype, what=what)


# ---- every module of test_nn_modules, with random weights ---------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
def test_module_matches_torch(spec, dtype):
    ours, theirs = _pair(spec)
    _randomize(theirs)
    ours.load_state_dict(theirs.state_dict())
    if spec[1] == "Embedding":
        x = torch.randint(0, spec[2][0], spec[4], generator=torch.Generator().manual_seed(0))
    else:
        x = _x(spec[4])
    with torch.no_grad():
        expected = theirs(x)
    _check(Wrap(ours), x, expected, dtype, spec[0])


@pytest.mark.parametrize("cls", ["InstanceNorm1d", "InstanceNorm2d"])
def test_unbatched_instance_norm(cls):
    shape = (3, 7) if cls == "InstanceNorm1d" else (3, 4, 5)
    theirs = getattr(torch.nn, cls)(3, affine=True).eval()
    _randomize(theirs)
    ours = getattr(nn, cls)(3, affine=True)
    ours.load_state_dict(theirs.state_dict())
    x = _x(shape)
    with torch.no_grad():
        _check(Wrap(ours), x, theirs(x), "float32")


# ---- convolutions -------------------------------------------------------------------------------
def _w(*shape, seed=3) -> torch.Tensor:
    return _x(shape, seed) * 0.3


CONV_CASES = [
    ("conv2d_stride_pad", "conv2d", (2, 4, 9, 9), _w(6, 4, 3, 3), dict(stride=2, padding=1)),
    ("conv2d_asym_pad_dilation_groups", "conv2d", (1, 4, 9, 10), _w(6, 2, 3, 2),
     dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1), groups=2)),
    ("conv2d_same_even_kernel", "conv2d", (1, 3, 7, 8), _w(4, 3, 4, 2), dict(padding="same")),
    ("conv2d_same_dilated", "conv2d", (1, 3, 7, 8), _w(4, 3, 3, 3), dict(padding="same", dilation=2)),
    ("conv2d_valid", "conv2d", (1, 3, 7, 8), _w(4, 3, 3, 3), dict(padding="valid")),
    ("conv2d_depthwise", "conv2d", (2, 4, 6, 6), _w(4, 1, 3, 3), dict(padding=1, groups=4)),
    ("conv1d_same_dilated_groups", "conv1d", (2, 4, 11), _w(6, 2, 3), dict(padding="same", dilation=2, groups=2)),
    ("conv1d_stride", "conv1d", (2, 3, 11), _w(5, 3, 4), dict(stride=3, padding=2)),
    ("conv3d", "conv3d", (1, 2, 5, 6, 4), _w(3, 2, 3, 3, 2), dict(stride=(1, 2, 1), padding=(1, 0, 1))),
    ("conv_transpose2d_output_padding", "conv_transpose2d", (2, 4, 5, 5), _w(4, 3, 3, 3),
     dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d_output_padding_past_padding", "conv_transpose2d", (1, 4, 4, 5), _w(4, 3, 3, 3),
     dict(stride=(2, 3), padding=(0, 1), output_padding=(1, 2))),
    ("conv_transpose2d_groups_dilation", "conv_transpose2d", (1, 4, 5, 5), _w(4, 2, 3, 3),
     dict(stride=2, padding=2, groups=2, dilation=2)),
    ("conv_transpose1d", "conv_transpose1d", (2, 3, 7), _w(3, 4, 4), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose3d", "conv_transpose3d", (1, 2, 3, 4, 3), _w(2, 3, 2, 3, 2), dict(stride=2, padding=(0, 1, 0))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_functional(case, bias, dtype):
    _, fn, shape, w, kwargs = case
    out_ch = w.shape[1] * kwargs.get("groups", 1) if "transpose" in fn else w.shape[0]
    b = _w(out_ch, seed=4) if bias else None
    x = _x(shape)
    expected = getattr(TF, fn)(x, w, b, **kwargs)
    _check(lambda t: getattr(F, fn)(t, w.numpy(), None if b is None else b.numpy(), **kwargs), x, expected, dtype)


# ---- pooling --------------------------------------------------------------------------------------
POOL_CASES = [
    ("max_floor", "max_pool2d", (2, 3, 8, 8), dict(kernel_size=3, stride=2, padding=1)),
    ("max_ceil", "max_pool2d", (2, 3, 8, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_ceil_last_window_dropped", "max_pool2d", (1, 3, 5, 5), dict(kernel_size=2, padding=1, ceil_mode=True)),
    ("max_ceil_rect", "max_pool2d", (1, 2, 7, 10), dict(kernel_size=(3, 2), stride=(2, 3), ceil_mode=True)),
    ("avg_include_pad", "avg_pool2d", (2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("avg_exclude_pad", "avg_pool2d", (2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("avg_ceil_include_pad", "avg_pool2d", (1, 3, 8, 8),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_ceil_exclude_pad", "avg_pool2d", (1, 3, 8, 8),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_ceil_no_pad", "avg_pool2d", (1, 3, 8, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("avg_ceil_dropped_window", "avg_pool2d", (1, 2, 5, 5), dict(kernel_size=2, padding=1, ceil_mode=True)),
    ("avg_divisor", "avg_pool2d", (1, 3, 6, 6), dict(kernel_size=2, divisor_override=3)),
    ("avg_divisor_pad_ceil", "avg_pool2d", (1, 3, 8, 8),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=5)),
    ("adaptive_avg_divisible", "adaptive_avg_pool2d", (2, 3, 8, 6), dict(output_size=(2, 3))),
    ("adaptive_avg_uneven", "adaptive_avg_pool2d", (2, 3, 7, 10), dict(output_size=(3, 4))),
    ("adaptive_avg_one_dim", "adaptive_avg_pool2d", (1, 3, 7, 8), dict(output_size=(5, None))),
    ("adaptive_avg_upsample", "adaptive_avg_pool2d", (1, 2, 3, 4), dict(output_size=(5, 7))),
    ("adaptive_avg_global", "adaptive_avg_pool2d", (2, 3, 7, 5), dict(output_size=1)),
    ("adaptive_max_divisible", "adaptive_max_pool2d", (2, 3, 8, 6), dict(output_size=(4, 2))),
    ("adaptive_max_uneven", "adaptive_max_pool2d", (2, 3, 7, 10), dict(output_size=(3, 4))),
    ("adaptive_max_upsample", "adaptive_max_pool2d", (1, 2, 3, 4), dict(output_size=(5, 6))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pool_functional(case, dtype):
    _, fn, shape, kwargs = case
    x = _x(shape)
    expected = getattr(TF, fn)(x, **kwargs)
    _check(lambda t: getattr(F, fn)(t, **kwargs), x, expected, dtype)


# ---- normalization --------------------------------------------------------------------------------
def _norm_params(c, seed=5):
    return _x((c,), seed) * 0.5 + 1, _x((c,), seed + 1) * 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 4), (1, 3, 2, 3, 3)])
def test_batch_norm_functional(shape, dtype):
    w, b = _norm_params(3)
    mean, var = _x((3,), 7), _x((3,), 8, low=0.5)
    x = _x(shape)
    expected = TF.batch_norm(x, mean, var, w, b, eps=1e-3)
    _check(lambda t: F.batch_norm(t, mean.numpy(), var.numpy(), w.numpy(), b.numpy(), eps=1e-3), x, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_functional(affine, dtype):
    x = _x((2, 3, 4, 5))
    w, b = (_x((4, 5), 9), _x((4, 5), 10)) if affine else (None, None)
    expected = TF.layer_norm(x, (4, 5), w, b, 1e-5)
    _check(lambda t: F.layer_norm(t, (4, 5), None if w is None else w.numpy(), None if b is None else b.numpy()),
           x, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups,affine", [((2, 6, 4, 4), 3, True), ((2, 6, 7), 2, False), ((1, 4, 3, 3), 4, True)])
def test_group_norm_functional(shape, groups, affine, dtype):
    w, b = _norm_params(shape[1]) if affine else (None, None)
    x = _x(shape)
    expected = TF.group_norm(x, groups, w, b, 1e-5)
    _check(lambda t: F.group_norm(t, groups, None if w is None else w.numpy(), None if b is None else b.numpy()),
           x, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_functional(use_input_stats, dtype):
    w, b = _norm_params(3)
    mean, var = _x((3,), 7), _x((3,), 8, low=0.5)
    x = _x((2, 3, 4, 5))
    expected = TF.instance_norm(x, mean, var, w, b, use_input_stats=use_input_stats)
    _check(lambda t: F.instance_norm(t, mean.numpy(), var.numpy(), w.numpy(), b.numpy(), use_input_stats),
           x, expected, dtype)


@pytest.mark.parametrize("fn", ["layer_norm", "group_norm", "instance_norm"])
def test_float16_norm_statistics_stay_accurate(fn):
    """Large offset and many elements: float16 statistics would lose the variance entirely."""
    x = _x((1, 4, 32, 32), 11) + 300.0  # a float16 sum over 1024 such values overflows
    args = {"layer_norm": ((32, 32),), "group_norm": (2,), "instance_norm": ()}[fn]
    expected = getattr(TF, fn)(x.half().float(), *args)  # the network sees the float16-rounded input
    _check(lambda t: getattr(F, fn)(t, *args), x, expected, "float16")


# ---- resize ----------------------------------------------------------------------------------------
RESIZE_CASES = [
    ("nearest_x2", (1, 2, 4, 5), dict(scale_factor=2)),
    ("nearest_x1.5", (1, 2, 4, 6), dict(scale_factor=1.5)),
    ("nearest_x3_rect", (1, 2, 3, 4), dict(scale_factor=(3, 2))),
    ("nearest_size_down", (1, 2, 8, 9), dict(size=(5, 4))),
    ("nearest_size_up", (1, 2, 3, 4), dict(size=(7, 9))),
    ("nearest_exact_up", (1, 2, 3, 4), dict(size=(7, 9), mode="nearest-exact")),
    ("nearest_exact_down", (1, 2, 9, 8), dict(size=(4, 5), mode="nearest-exact")),
    ("bilinear_x2", (1, 2, 4, 5), dict(scale_factor=2, mode="bilinear")),
    ("bilinear_size", (1, 2, 4, 5), dict(size=(7, 3), mode="bilinear")),
    ("bilinear_align", (1, 2, 4, 5), dict(size=(7, 9), mode="bilinear", align_corners=True)),
    ("bilinear_align_scale", (1, 2, 4, 5), dict(scale_factor=1.5, mode="bilinear", align_corners=True)),
    ("bilinear_half", (1, 2, 8, 6), dict(scale_factor=0.5, mode="bilinear")),
    ("bicubic_size", (1, 2, 4, 5), dict(size=(7, 9), mode="bicubic")),
    ("bicubic_align", (1, 2, 4, 5), dict(size=(6, 8), mode="bicubic", align_corners=True)),
    ("linear_1d", (1, 2, 5), dict(size=8, mode="linear")),
    ("nearest_1d", (1, 2, 5), dict(scale_factor=3)),
    ("trilinear", (1, 2, 3, 4, 3), dict(scale_factor=2, mode="trilinear")),
    ("area", (1, 2, 7, 9), dict(size=(3, 4), mode="area")),
    ("recompute_scale", (1, 2, 5, 5), dict(scale_factor=1.5, mode="nearest", recompute_scale_factor=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", RESIZE_CASES, ids=[c[0] for c in RESIZE_CASES])
def test_interpolate(case, dtype):
    _, shape, kwargs = case
    x = _x(shape)
    expected = TF.interpolate(x, **kwargs)
    _check(lambda t: F.interpolate(t, **kwargs), x, expected, dtype)


def test_interpolate_fractional_scale_is_a_clear_error():
    with pytest.raises(netdef.TraceError, match="fractional output size"):
        netdef.trace(lambda t: F.interpolate(t, scale_factor=1.5), netdef.Input("x", (1, 2, 5, 5)))


def test_dynamic_batch_resize_with_size():
    x = _x((3, 2, 4, 5))
    net = netdef.trace(Wrap(nn.Upsample(size=(6, 7), mode="bilinear")), netdef.Input("x", ((1, 2, 4), 2, 4, 5)))
    got = run(net, {"x": x})["output"]
    assert backend.logger().take_errors() == []
    assert_close(got, TF.interpolate(x, size=(6, 7), mode="bilinear"), "float32")


def test_fused_block_matches_torch():
    """A conv-bn-act-pool-upsample block end to end, loaded from a torch state_dict."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                                 torch.nn.SiLU(), torch.nn.MaxPool2d(2), torch.nn.Upsample(scale_factor=2),
                                 torch.nn.GroupNorm(4, 8), torch.nn.Flatten(), torch.nn.Linear(8 * 64, 5)).eval()
    _randomize(theirs)
    ours = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.SiLU(), nn.MaxPool2d(2),
                         nn.Upsample(scale_factor=2), nn.GroupNorm(4, 8), nn.Flatten(), nn.Linear(8 * 64, 5))
    ours.load_state_dict(theirs.state_dict())
    x = _x((2, 3, 8, 8))
    with torch.no_grad():
        expected = theirs(x)
    for dtype in DTYPES:
        _check(ours, x, expected, dtype)
    assert np.isfinite(expected.numpy()).all()
