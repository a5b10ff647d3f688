"""The reference runner against torch, on networks built by NVIDIA's ONNX parser.

The parser is a test oracle only (netdef never parses): it turns torch models into
INetworkDefinitions made by someone else, with the layer types and attribute
combinations real models produce. The runner must reproduce torch's outputs.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
torchvision = pytest.importorskip("torchvision")

import torch.nn as tnn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import netdef  # noqa: E402
import netdef.reference  # noqa: E402
from netdef.tolerance import assert_close  # noqa: E402


def parse(model: tnn.Module, args: tuple, tmp_path, names=("x",), dynamic: dict | None = None):
    """Export `model` to ONNX and parse it into a strongly typed network (parser kept alive)."""
    t = netdef.backend.trt()
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, args, str(path), input_names=list(names), opset_version=17, dynamo=False,
                      dynamic_axes=dynamic)
    flag = 1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = netdef.backend.builder().create_network(flag)
    parser = t.OnnxParser(network, netdef.backend.logger().impl)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise AssertionError("ONNX parser failed: " + "; ".join(errors))
    return network, parser


def check(model: tnn.Module, *args: torch.Tensor, tmp_path, atol=None, rtol=None, dynamic=None,
          names=None) -> None:
    model.eval()
    names = names or tuple(f"x{i}" if len(args) > 1 else "x" for i in range(len(args)))
    with torch.no_grad():
        expected = model(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    network, _parser = parse(model, args, tmp_path, names, dynamic)
    got = netdef.reference.run(network, dict(zip(names, args)))
    assert len(got) == len(expected)
    for (name, g), e in zip(got.items(), expected):
        if e.dtype == torch.bool or not e.is_floating_point():
            assert torch.equal(g.to(e.dtype), e), name
        else:
            assert_close(g, e, "float32", atol=atol, rtol=rtol, what=name)


def randomize_bn(model: tnn.Module, seed: int = 0) -> tnn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def image(n=2, c=3, h=64, w=64):
    return torch.randn(n, c, h, w)


# ---- whole models --------------------------------------------------------------------------------
def test_resnet18(tmp_path):
    model = randomize_bn(torchvision.models.resnet18(weights=None))
    check(model, image(), tmp_path=tmp_path, atol=2e-4, rtol=1e-3)


def test_mobilenet_v2(tmp_path):
    model = randomize_bn(torchvision.models.mobilenet_v2(weights=None))
    check(model, image(), tmp_path=tmp_path, atol=2e-4, rtol=1e-3)


class Encoder(tnn.Module):
    def __init__(self, layer: tnn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x, is_causal=False)


def test_transformer_encoder_layer(tmp_path):
    layer = tnn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True,
                                        dropout=0.0)
    torch.backends.mha.set_fastpath_enabled(False)  # the fused fast path does not export
    try:
        check(Encoder(layer), torch.randn(2, 10, 32), tmp_path=tmp_path)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


def test_dynamic_batch_reshape(tmp_path):
    """Shape tensors (Shape -> Gather -> Concat -> Reshape) are computed with real values."""
    class Flatten(tnn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], -1, 4).sum(-1)

    model = Flatten()
    network, _p = parse(model, (torch.randn(2, 3, 8),), tmp_path, dynamic={"x": {0: "b"}})
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8)
        got = next(iter(netdef.reference.run(network, {"x": x}).values()))
        assert_close(got, model(x), "float32")


# ---- small models that exercise one layer family each ----------------------------------------------
class Fn(tnn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


POOLS = {
    "max_ceil": lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    "avg_pad_include": lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True),
    "avg_pad_exclude": lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "avg_ceil_exclude": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avg_ceil_include": lambda x: F.avg_pool2d(x, 2, 2, 0, ceil_mode=True),
    "adaptive_avg": lambda x: F.adaptive_avg_pool2d(x, 1),
    "max_asym_window": lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 0)),
}


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_pooling(kind, tmp_path):
    check(Fn(POOLS[kind]), image(2, 3, 11, 13), tmp_path=tmp_path)


RESIZES = {
    "nearest": lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
    "nearest_size": lambda x: F.interpolate(x, size=(7, 10), mode="nearest"),
    "bilinear": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
    "bilinear_down": lambda x: F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False),
    "bilinear_align": lambda x: F.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True),
    "bicubic": lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False),
    "bicubic_align": lambda x: F.interpolate(x, size=(9, 11), mode="bicubic", align_corners=True),
}


@pytest.mark.parametrize("kind", sorted(RESIZES))
def test_resize(kind, tmp_path):
    check(Fn(RESIZES[kind]), image(1, 2, 6, 8), tmp_path=tmp_path)


MISC = {
    "gather_slice_concat": lambda x: torch.cat([x[:, 1:, ::2], x[:, :1, ::2] * 2], 1)[..., [2, 0, 1]] + x[1, 0, 1, 2],
    "negative_step_slice": lambda x: x.flip(-1)[:, :, -3:],
    "pad_constant": lambda x: F.pad(x, (1, 2, 0, 3), value=0.0),
    "pad_reflect": lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"),
    "pad_replicate": lambda x: F.pad(x, (2, 1, 1, 2), mode="replicate"),
    "reduce": lambda x: x.sum((1, 3), keepdim=True) + x.mean(2, keepdim=True).amax(1, keepdim=True),
    "reduce_min_prod": lambda x: x.amin(-1) * x[..., :3].prod(1, keepdim=True).sum(-1),
    "softmax_neg_axis": lambda x: F.softmax(x, -2) + F.log_softmax(x, 1),
    "einsum": lambda x: torch.einsum("bchw,bcwk->bhk", x, x.transpose(-1, -2)),
    "cumsum": lambda x: torch.cumsum(x, 2) - torch.cumsum(x.flip(3), 3),
    "topk": lambda x: torch.topk(x, 3, dim=-1)[0] + torch.topk(x, 3, dim=-1, largest=False)[0],
    "where_compare": lambda x: torch.where(x > 0.2, x, -x) + (x < -0.5).float() - (x == x).float(),
    "scatter": lambda x: x.scatter(2, torch.tensor([[[[1, 0, 2]]]]).expand(2, 3, 1, 3), -1.0),
    "gather_elements": lambda x: torch.gather(x, 3, torch.tensor([[[[3, 0, 1, 1]]]]).expand(2, 3, 5, 4)),
    "matmul_transpose_bcast": lambda x: x @ x[:1].transpose(-1, -2),
    "unary": lambda x: (x.abs().sqrt() + x.exp().log() + torch.sin(x) * torch.cos(x) + x.sign() + x.floor()
                        + x.ceil() + torch.erf(x) + x.round() + torch.atan(x) + torch.tanh(x)),
    "activations": lambda x: (F.elu(x, 0.7) + F.selu(x) + F.leaky_relu(x, 0.1) + F.hardsigmoid(x)
                              + F.softplus(x) + F.hardtanh(x, -0.5, 0.4) + F.gelu(x) + F.silu(x)
                              + F.softsign(x) + F.relu6(x) + F.hardswish(x) + F.mish(x)),
    "pow_div": lambda x: (x.abs() + 1) ** 1.7 / (x.abs() + 2) - torch.floor(x / 0.3),
    "int_shape_math": lambda x: x.reshape(x.shape[0] * x.shape[1], -1)[:, : x.shape[-1] // 2],
    "layer_norm": lambda x: F.layer_norm(x, (4,), torch.linspace(0.5, 1.5, 4), torch.linspace(-1, 1, 4)),
    "group_norm": lambda x: F.group_norm(x, 3, torch.linspace(0.5, 1.5, 3), torch.linspace(-1, 1, 3)),
    "instance_norm": lambda x: F.instance_norm(x, weight=torch.linspace(0.5, 1.5, 3), bias=torch.ones(3)),
    "expand_unsqueeze": lambda x: x.unsqueeze(1).expand(2, 2, 3, 5, 4).sum(1) + x[:1].squeeze(0),
    "prelu": lambda x: F.prelu(x, torch.tensor([0.1, 0.2, 0.3])),
    "cast_int": lambda x: (x * 3).to(torch.int64).to(torch.float32) + (x > 0).to(torch.int32).float(),
}


@pytest.mark.parametrize("kind", sorted(MISC))
def test_layer_families(kind, tmp_path):
    check(Fn(MISC[kind]), torch.randn(2, 3, 5, 4), tmp_path=tmp_path)


def test_conv_variants(tmp_path):
    class Convs(tnn.Module):
        def __init__(self):
            super().__init__()
            self.grouped = tnn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=(2, 1), groups=2)
            self.deconv = tnn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
            self.depthwise = tnn.Conv2d(6, 6, 5, padding=2, groups=6, bias=False)
            self.conv3d = tnn.Conv3d(1, 2, 3, padding=1)

        def forward(self, x):
            y = self.depthwise(self.deconv(self.grouped(x)))
            return y, self.conv3d(y[:, :1].unsqueeze(1))

    check(Convs(), image(2, 4, 12, 10), tmp_path=tmp_path, atol=2e-4, rtol=1e-3)


def test_mlp_gemm_and_onehot(tmp_path):
    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = tnn.Linear(12, 16), tnn.Linear(16, 5)

        def forward(self, x, idx):
            h = F.relu(self.fc1(x))
            return self.fc2(h) + F.one_hot(idx, 5).float(), torch.argmax(h, -1)

    check(MLP(), torch.randn(3, 12), torch.tensor([4, 0, 2]), tmp_path=tmp_path, names=("x", "idx"))
