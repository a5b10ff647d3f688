"""netdef.nn layer modules against torch.nn: state_dicts, reprs, emitted layers, errors, builds.

Every module is instantiated next to its torch.nn twin with the same constructor arguments;
the two must agree on state_dict keys/shapes/dtypes and repr, the torch state_dict must
load unchanged, and tracing must emit the expected layer named after the module path with
torch's output shape, in float32 and float16, with static and dynamic batch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef import backend, dtypes, nn

PATH = "block.0"  # module path of the module under test inside Wrap

# (id, class name, args, kwargs, input shape, TensorRT type of the module's main layer or None)
SPECS = [
    ("conv1d", "Conv1d", (4, 6, 3), dict(stride=2, padding=1), (2, 4, 9), "CONVOLUTION"),
    ("conv2d", "Conv2d", (4, 8, 3), dict(stride=2, padding=1, dilation=2, groups=2), (2, 4, 11, 11), "CONVOLUTION"),
    ("conv2d_same", "Conv2d", (3, 5, 4), dict(padding="same", bias=False), (2, 3, 8, 8), "CONVOLUTION"),
    ("conv3d", "Conv3d", (2, 4, 3), dict(padding=(1, 0, 1)), (1, 2, 5, 5, 5), "CONVOLUTION"),
    ("conv_transpose1d", "ConvTranspose1d", (4, 2, 3), dict(stride=2), (2, 4, 5), "DECONVOLUTION"),
    ("conv_transpose2d", "ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 5, 5), "DECONVOLUTION"),
    ("conv_transpose3d", "ConvTranspose3d", (2, 3, 2), dict(stride=2), (1, 2, 3, 3, 3), "DECONVOLUTION"),
    ("linear", "Linear", (6, 5), {}, (2, 3, 6), "MATRIX_MULTIPLY"),
    ("linear_nobias", "Linear", (6, 5), dict(bias=False), (2, 6), "MATRIX_MULTIPLY"),
    ("batchnorm1d_2d", "BatchNorm1d", (5,), {}, (3, 5), "SCALE"),
    ("batchnorm1d_3d", "BatchNorm1d", (5,), dict(affine=False), (3, 5, 7), "SCALE"),
    ("batchnorm2d", "BatchNorm2d", (4,), dict(eps=1e-3, momentum=None), (2, 4, 5, 5), "SCALE"),
    ("batchnorm3d", "BatchNorm3d", (3,), dict(bias=False), (1, 3, 2, 3, 3), "SCALE"),
    ("layernorm", "LayerNorm", ((4, 6),), dict(eps=1e-6), (2, 3, 4, 6), "NORMALIZATION"),
    ("layernorm_nobias", "LayerNorm", (6,), dict(bias=False), (2, 3, 6), "NORMALIZATION"),
    ("groupnorm", "GroupNorm", (2, 6), {}, (2, 6, 4, 4), "NORMALIZATION"),
    ("groupnorm_noaffine", "GroupNorm", (3, 6), dict(affine=False), (2, 6, 5), "NORMALIZATION"),
    ("instancenorm1d", "InstanceNorm1d", (4,), {}, (2, 4, 7), "NORMALIZATION"),
    ("instancenorm2d", "InstanceNorm2d", (4,), dict(affine=True), (2, 4, 5, 5), "NORMALIZATION"),
    ("instancenorm2d_running", "InstanceNorm2d", (4,), dict(track_running_stats=True), (2, 4, 5, 5), "SCALE"),
    ("instancenorm3d", "InstanceNorm3d", (2,), {}, (1, 2, 3, 3, 3), "NORMALIZATION"),
    ("relu", "ReLU", (), {}, (2, 3, 4), "ACTIVATION"),
    ("relu6", "ReLU6", (), dict(inplace=True), (2, 3, 4), "ACTIVATION"),
    ("leaky_relu", "LeakyReLU", (0.2,), {}, (2, 3, 4), "ACTIVATION"),
    ("sigmoid", "Sigmoid", (), {}, (2, 3, 4), "ACTIVATION"),
    ("tanh", "Tanh", (), {}, (2, 3, 4), "ACTIVATION"),
    ("silu", "SiLU", (), {}, (2, 3, 4), None),
    ("gelu", "GELU", (), {}, (2, 3, 4), None),
    ("gelu_tanh", "GELU", (), dict(approximate="tanh"), (2, 3, 4), None),
    ("hardswish", "Hardswish", (), {}, (2, 3, 4), None),
    ("hardsigmoid", "Hardsigmoid", (), {}, (2, 3, 4), None),
    ("elu", "ELU", (0.5,), {}, (2, 3, 4), None),
    ("selu", "SELU", (), {}, (2, 3, 4), None),
    ("softplus", "Softplus", (), dict(beta=2.0, threshold=10.0), (2, 3, 4), None),
    ("mish", "Mish", (), {}, (2, 3, 4), None),
    ("prelu", "PReLU", (), {}, (2, 3, 4), "PARAMETRIC_RELU"),
    ("prelu_channels", "PReLU", (3,), dict(init=0.1), (2, 3, 4, 4), "PARAMETRIC_RELU"),
    ("softmax", "Softmax", (), dict(dim=-1), (2, 3, 4), "SOFTMAX"),
    ("log_softmax", "LogSoftmax", (), dict(dim=1), (2, 3, 4), None),
    ("maxpool2d", "MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 8, 8), "POOLING"),
    ("avgpool2d", "AvgPool2d", (2,), dict(count_include_pad=False, padding=1), (2, 3, 7, 7), "POOLING"),
    ("adaptive_avg", "AdaptiveAvgPool2d", ((2, 3),), {}, (2, 3, 8, 9), "POOLING"),
    ("adaptive_avg_uneven", "AdaptiveAvgPool2d", (3,), {}, (2, 3, 7, 8), "MATRIX_MULTIPLY"),
    ("adaptive_max", "AdaptiveMaxPool2d", ((3, None),), {}, (2, 3, 7, 5), "POOLING"),
    ("flatten", "Flatten", (), {}, (2, 3, 4, 5), "SHUFFLE"),
    ("upsample", "Upsample", (), dict(scale_factor=2), (2, 3, 4, 5), "RESIZE"),
    ("upsample_bilinear", "Upsample", (), dict(size=(5, 7), mode="bilinear", align_corners=True),
     (2, 3, 4, 5), "RESIZE"),
    ("embedding", "Embedding", (10, 4), dict(padding_idx=0), (2, 5), "GATHER"),
    ("dropout", "Dropout", (0.3,), {}, (2, 3, 4), None),
    ("identity", "Identity", (7,), dict(anything=1), (2, 3, 4), None),
]
IDS = [s[0] for s in SPECS]
SPEC = {s[0]: s for s in SPECS}


class Wrap(nn.Module):
    """Puts the module under test at a nested path, so names and errors show the full path."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.block = nn.Sequential(m)

    def forward(self, x):
        return self.block(x)


def _pair(spec) -> tuple[nn.Module, torch.nn.Module]:
    _, cls, args, kwargs, _, _ = spec
    return getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs).eval()


def _input(spec, dynamic: bool = False) -> netdef.Input:
    shape = spec[4]
    if dynamic:
        shape = ((1, shape[0], 2 * shape[0]),) + tuple(shape[1:])
    return netdef.Input("x", shape, "int32" if spec[1] == "Embedding" else "float32")


def _torch_input(spec) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if spec[1] == "Embedding":
        return torch.randint(0, spec[2][0], spec[4], generator=g)
    return torch.randn(spec[4], generator=g)


def _trace(spec, dtype: str = "float32", dynamic: bool = False) -> tuple[netdef.Network, nn.Module, torch.nn.Module]:
    ours, theirs = _pair(spec)
    ours.load_state_dict(theirs.state_dict())
    return netdef.trace(Wrap(ours), _input(spec, dynamic), dtype=dtype), ours, theirs


def _layer(net: netdef.Network, name: str):
    found = [layer for layer in net.layers if layer.name == name]
    assert len(found) == 1, f"no single layer named {name!r} in {[layer.name for layer in net.layers]}"
    return backend.downcast(found[0])


def _types(net: netdef.Network, path: str) -> set[str]:
    return {layer.type.name for layer in net.layers if layer.name == path or layer.name.startswith(path + "/")}


@pytest.mark.parametrize("spec_id", IDS)
def test_state_dict_and_repr_match_torch(spec_id):
    ours, theirs = _pair(SPEC[spec_id])
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(ref)
    for key, value in ref.items():
        assert tuple(mine[key].shape) == tuple(value.shape), key
        assert dtypes.name(mine[key].dtype) == dtypes.name(value.dtype), key
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("spec_id", [s for s in IDS if SPEC[s][2:4] != ((), {})])
def test_load_state_dict_from_torch(spec_id):
    ours, theirs = _pair(SPEC[spec_id])
    with torch.no_grad():
        for value in theirs.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape) + 0.5)
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("cls,args", [("Conv2d", (3, 4, 3)), ("Linear", (3, 4)), ("BatchNorm2d", (3,)),
                                      ("LayerNorm", (3,)), ("PReLU", (3,)), ("Embedding", (5, 3)),
                                      ("ConvTranspose2d", (3, 4, 3))])
def test_dtype_argument_like_torch(cls, args):
    ours = getattr(nn, cls)(*args, dtype=torch.float16)
    theirs = getattr(torch.nn, cls)(*args, dtype=torch.float16)
    for key, value in theirs.state_dict().items():
        assert dtypes.name(ours.state_dict()[key].dtype) == dtypes.name(value.dtype), key


def test_default_values_like_torch():
    """Unloaded modules hold torch-like defaults: bounded uniform weights, unit norms, zeroed padding row."""
    conv = nn.Conv2d(4, 8, 3)
    bound = 1 / np.sqrt(4 * 9)
    assert np.abs(conv.weight.data).max() <= bound and conv.weight.data.std() > bound / 4
    bn = nn.BatchNorm2d(3)
    assert (bn.weight.data == 1).all() and (bn.running_var == 1).all() and (bn.running_mean == 0).all()
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    emb = nn.Embedding(6, 3, padding_idx=2)
    assert (emb.weight.data[2] == 0).all() and (emb.weight.data[0] != 0).any()
    assert (nn.PReLU(2).weight.data == np.float32(0.25)).all()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("spec_id", IDS)
def test_trace_names_types_and_shapes(spec_id, dtype, dynamic):
    spec = SPEC[spec_id]
    net, _, theirs = _trace(spec, dtype, dynamic)
    with torch.no_grad():
        expected = tuple(theirs(_torch_input(spec)).shape)
    if dynamic:
        expected = (-1,) + expected[1:]
    assert tuple(net.network.get_output(0).shape) == expected
    layers = [layer.name for layer in net.layers]
    if spec[1] in ("Dropout", "Identity"):  # no layers: the module returns its input
        assert not [n for n in layers if n.startswith(PATH)]
        assert len(net.module_outputs[PATH]) == 1
        return
    out = _layer(net, PATH).get_output(0)
    assert net.module_outputs[PATH] == [[out.name]]  # "output" when it is the network output
    assert tuple(out.shape) == expected
    if spec[1] != "Embedding":
        assert out.dtype == dtypes.to_trt(dtype)
    if spec[5] is not None:
        assert spec[5] in _types(net, PATH)
    assert all(n == PATH or n.startswith(PATH + "/") or n == "output" or n.startswith("cast") for n in layers), layers


def test_conv_attributes():
    net, _, _ = _trace(SPEC["conv2d"])
    conv = _layer(net, PATH)
    assert conv.type.name == "CONVOLUTION"
    assert tuple(conv.stride_nd) == (2, 2) and tuple(conv.dilation_nd) == (2, 2)
    assert tuple(conv.pre_padding) == (1, 1) and tuple(conv.post_padding) == (1, 1)
    assert conv.num_groups == 2 and conv.num_output_maps == 8 and tuple(conv.kernel_size_nd) == (3, 3)


def test_conv_same_padding_puts_the_extra_at_the_end():
    net, _, _ = _trace(SPEC["conv2d_same"])
    conv = _layer(net, PATH)
    assert tuple(conv.pre_padding) == (1, 1) and tuple(conv.post_padding) == (2, 2)
    assert conv.bias.size == 0


def test_conv1d_runs_as_2d():
    net, _, _ = _trace(SPEC["conv1d"])
    conv = _layer(net, f"{PATH}/conv1d")
    assert tuple(conv.kernel_size_nd) == (3, 1) and tuple(conv.stride_nd) == (2, 1)
    assert tuple(conv.pre_padding) == (1, 0)


def test_conv_transpose_attributes():
    net, _, _ = _trace(SPEC["conv_transpose2d"])
    deconv = _layer(net, PATH)
    assert deconv.type.name == "DECONVOLUTION"
    assert deconv.num_output_maps == 6 and deconv.num_groups == 2
    assert tuple(deconv.pre_padding) == (1, 1) and tuple(deconv.post_padding) == (0, 0)


def test_batchnorm_is_one_channel_scale_layer():
    ours, theirs = _pair(SPEC["batchnorm2d"])
    rng = np.random.default_rng(0)
    sd = {k: torch.from_numpy(rng.uniform(0.5, 2.0, v.shape).astype(np.float32)) if v.is_floating_point() else v
          for k, v in theirs.state_dict().items()}
    ours.load_state_dict(sd)
    net = netdef.trace(Wrap(ours), _input(SPEC["batchnorm2d"]))
    assert [layer.name for layer in net.layers] == [PATH]
    scale = _layer(net, PATH)
    assert scale.mode == netdef.backend.trt().ScaleMode.CHANNEL and scale.channel_axis == 1
    want = sd["weight"].numpy() / np.sqrt(sd["running_var"].numpy() + 1e-3)
    np.testing.assert_allclose(scale.scale, want, rtol=1e-6)
    np.testing.assert_allclose(scale.shift, sd["bias"].numpy() - sd["running_mean"].numpy() * want, rtol=1e-6)
    np.testing.assert_array_equal(scale.power, np.ones(4, np.float32))


def test_batchnorm_weights_in_float16_graph_are_float16():
    net, _, _ = _trace(SPEC["batchnorm2d"], "float16")
    assert _layer(net, PATH).scale.dtype == np.float16


@pytest.mark.parametrize("spec_id,kind", [("maxpool2d", "MAX"), ("avgpool2d", "AVERAGE"),
                                          ("adaptive_avg", "AVERAGE"), ("adaptive_max", "MAX")])
def test_pooling_type(spec_id, kind):
    net, _, _ = _trace(SPEC[spec_id])
    pool = _layer(net, PATH) if spec_id != "adaptive_max" else _layer(net, f"{PATH}/adaptive_max_pool2d_window")
    assert pool.type == getattr(backend.trt().PoolingType, kind)  # IPoolingLayer.type is the pooling type


def test_adaptive_avg_pool_divisible_is_one_pooling_layer():
    net, _, _ = _trace(SPEC["adaptive_avg"])
    pool = _layer(net, PATH)
    assert tuple(pool.window_size_nd) == (4, 3) and tuple(pool.stride_nd) == (4, 3)
    assert [layer.name for layer in net.layers] == [PATH]


def test_maxpool_ceil_mode_padding():
    net, _, _ = _trace(SPEC["maxpool2d"])
    pool = _layer(net, PATH)
    # 8 + 2*1 - 3 -> ceil(7/2) + 1 = 5 windows; the last ends at 4*2 + 3 = 11 = 1 + 8 + 2
    assert tuple(pool.window_size_nd) == (3, 3) and tuple(pool.stride_nd) == (2, 2)
    assert tuple(pool.pre_padding) == (1, 1) and tuple(pool.post_padding) == (2, 2)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_exclude_padding_flag(count_include_pad):
    m = nn.AvgPool2d(3, 1, 1, count_include_pad=count_include_pad)
    net = netdef.trace(Wrap(m), netdef.Input("x", (1, 2, 5, 5)))
    pool = _layer(net, PATH)
    assert pool.average_count_excludes_padding is (not count_include_pad)
    assert tuple(pool.pre_padding) == (1, 1) and tuple(pool.post_padding) == (1, 1)


@pytest.mark.parametrize("mode,kwargs,interp,coord,rounding", [
    ("nearest", {}, "NEAREST", "ASYMMETRIC", "FLOOR"),
    ("nearest-exact", {}, "NEAREST", "HALF_PIXEL", "HALF_UP"),
    ("bilinear", {}, "LINEAR", "HALF_PIXEL", None),
    ("bilinear", dict(align_corners=True), "LINEAR", "ALIGN_CORNERS", None),
    ("bicubic", {}, "CUBIC", "HALF_PIXEL", None),
])
def test_upsample_resize_attributes(mode, kwargs, interp, coord, rounding):
    net = netdef.trace(Wrap(nn.Upsample(scale_factor=1.5, mode=mode, **kwargs)), netdef.Input("x", (1, 2, 4, 6)))
    resize = _layer(net, PATH)
    t = backend.trt()
    assert resize.resize_mode == getattr(t.InterpolationMode, interp)
    assert resize.coordinate_transformation == getattr(t.ResizeCoordinateTransformation, coord)
    assert tuple(resize.scales) == (1.0, 1.0, 1.5, 1.5)
    assert tuple(resize.get_output(0).shape) == (1, 2, 6, 9)
    if rounding:
        assert resize.nearest_rounding == getattr(t.ResizeRoundMode, rounding)
    if interp == "CUBIC":
        assert resize.cubic_coeff == pytest.approx(-0.75) and resize.exclude_outside is False


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_norm_statistics_in_float32(dtype):
    net, _, _ = _trace(SPEC["layernorm"], dtype)
    (norm,) = [backend.downcast(layer) for layer in net.layers if layer.type.name == "NORMALIZATION"]
    assert norm.get_input(0).dtype == dtypes.to_trt("float32")
    assert norm.epsilon == pytest.approx(1e-6) and norm.axes == 0b1100
    assert _layer(net, PATH).get_output(0).dtype == dtypes.to_trt(dtype)


def _trace_error(module: nn.Module, shape: tuple) -> str:
    with pytest.raises(netdef.TraceError) as info:
        netdef.trace(Wrap(module), netdef.Input("x", shape))
    msg = str(info.value)
    assert f"'{PATH}'" in msg and "test_nn_modules.py" in msg, msg
    return msg


@pytest.mark.parametrize("module,shape,words", [
    (lambda: nn.Conv2d(4, 8, 3), (1, 3, 8, 8), ["3 channels", "expects 4"]),
    (lambda: nn.Conv1d(4, 8, 3), (1, 4, 8, 8), ["3-D input"]),
    (lambda: nn.Conv2d(3, 8, 3, padding="full"), (1, 3, 8, 8), ["padding", "'full'"]),
    (lambda: nn.Conv2d(3, 8, 3, stride=2, padding="same"), (1, 3, 8, 8), ["'same'", "strided"]),
    (lambda: nn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2), (1, 3, 8, 8), ["output_padding"]),
    (lambda: nn.MaxPool2d(2, dilation=2), (1, 3, 8, 8), ["dilation"]),
    (lambda: nn.MaxPool2d(2, padding=2), (1, 3, 8, 8), ["at most half"]),
    (lambda: nn.BatchNorm2d(3, track_running_stats=False), (1, 3, 8, 8), ["batch statistics"]),
    (lambda: nn.BatchNorm2d(3), (1, 3, 8), ["expected 4D input"]),
    (lambda: nn.BatchNorm1d(4), (2, 3), ["running_mean", "(3,)"]),
    (lambda: nn.GroupNorm(2, 4), (1, 3, 8, 8), ["num_groups=2"]),
    (lambda: nn.LayerNorm(5), (1, 3, 8), ["normalized_shape"]),
    (lambda: nn.Upsample(scale_factor=2, mode="area2"), (1, 3, 8, 8), ["mode='area2'"]),
    (lambda: nn.Upsample(scale_factor=2, mode="nearest", align_corners=True), (1, 3, 8, 8), ["align_corners"]),
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, 8), ["4-D input"]),
    (lambda: nn.AvgPool2d(2, divisor_override=0), (1, 3, 8, 8), ["divisor_override"]),
    (lambda: nn.AdaptiveAvgPool2d(3), (1, 8), ["3-D or 4-D"]),
    (lambda: nn.Linear(5, 3), (2, 6), ["= 6", "= 5"]),
])
def test_bad_input_names_module_path(module, shape, words):
    msg = _trace_error(module(), shape)
    for w in words:
        assert w in msg, msg


def test_dynamic_spatial_ceil_mode_is_a_clear_error():
    with pytest.raises(netdef.TraceError, match="ceil_mode=True needs static spatial"):
        netdef.trace(Wrap(nn.MaxPool2d(3, 2, ceil_mode=True)), netdef.Input("x", (1, 3, (4, 8, 16), 8)))


def test_constructor_errors_like_torch():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="divisible by num_groups"):
        nn.GroupNorm(3, 8)
    with pytest.raises(NotImplementedError, match="padding_mode"):
        nn.Conv2d(3, 8, 3, padding_mode="reflect")


def test_load_state_dict_shape_mismatch_names_key():
    ours = Wrap(nn.Conv2d(3, 8, 3))
    theirs = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5)))
    sd = {k.replace("0.0", "block.0", 1): v for k, v in theirs.state_dict().items()}
    with pytest.raises(netdef.WeightsError, match=r"block\.0\.weight: shape \(8, 3, 5, 5\)"):
        ours.load_state_dict(sd)


FAMILIES = {
    "conv": lambda: nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ConvTranspose1d(4, 3, 2, stride=2)),
    "conv2d": lambda: nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.ConvTranspose2d(6, 4, 3, 2, 1, 1),
                                    nn.Conv2d(4, 4, 3, padding="same")),
    "norm": lambda: nn.Sequential(nn.BatchNorm2d(3), nn.GroupNorm(3, 3), nn.InstanceNorm2d(3, affine=True),
                                  nn.LayerNorm(8)),
    "pool": lambda: nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.AvgPool2d(3, 1, 1, ceil_mode=True),
                                  nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(2)),
    "activation": lambda: nn.Sequential(nn.PReLU(3), nn.GELU(), nn.Hardswish(), nn.Mish(), nn.Softmax(1)),
    "resize": lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Upsample(size=(5, 5))),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_engine_builds(family):
    shape = ((1, 2, 4), 3, 8) if family == "conv" else ((1, 2, 4), 3, 8, 8)
    plan = netdef.build(FAMILIES[family](), netdef.Input("x", shape), dtype="float16", progress=False)
    assert len(plan) > 1000 and plan.metadata["dtype"] == "float16"


def test_bfloat16_conv_transpose_builds_in_float32():
    """TensorRT-RTX 1.7 rejects bfloat16 deconvolutions at build time; netdef computes them in float32."""
    net = netdef.trace(Wrap(nn.ConvTranspose2d(3, 4, 3, 2, 1, 1)), netdef.Input("x", (2, 3, 8, 8)), dtype="bfloat16")
    deconv = _layer(net, f"{PATH}/conv_transpose2d")
    assert deconv.get_input(0).dtype == dtypes.to_trt("float32") and deconv.kernel.dtype == np.float32
    assert _layer(net, PATH).get_output(0).dtype == dtypes.to_trt("bfloat16")
    plan = netdef.build(net, progress=False)
    assert len(plan) > 1000
