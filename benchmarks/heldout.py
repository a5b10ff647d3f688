"""Held-out ports for deriving compare's defaults: torchvision models that no test asserts on.

Each port mirrors a torchvision model: leaf modules become their netdef.nn twins with the
same constructor arguments (read from the torch module), containers stay containers, and
each composite block (SqueezeNet's Fire, ShuffleNetV2's and MobileNetV3's inverted
residuals, EfficientNet's MBConv, ConvNeXt's CNBlock, DenseNet's layers, squeeze-excitation)
has its forward written here from the model's published structure. Module paths and
state_dict names therefore equal torchvision's, so `port.load_state_dict(original.state_dict())`
loads every weight.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torchvision

from netdef import functional as F
from netdef import nn

tnn = torch.nn


# ---- leaves -------------------------------------------------------------------------------------------
def _conv(m: tnn.Conv2d) -> nn.Module:
    return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                     m.bias is not None)


LEAVES: dict[type, Callable[[Any], nn.Module]] = {
    tnn.Conv2d: _conv,
    tnn.BatchNorm2d: lambda m: nn.BatchNorm2d(m.num_features, m.eps, m.momentum),
    tnn.Linear: lambda m: nn.Linear(m.in_features, m.out_features, m.bias is not None),
    tnn.LayerNorm: lambda m: nn.LayerNorm(m.normalized_shape, m.eps, m.elementwise_affine),
    tnn.ReLU: lambda m: nn.ReLU(), tnn.ReLU6: lambda m: nn.ReLU6(), tnn.SiLU: lambda m: nn.SiLU(),
    tnn.Hardswish: lambda m: nn.Hardswish(), tnn.Hardsigmoid: lambda m: nn.Hardsigmoid(),
    tnn.Sigmoid: lambda m: nn.Sigmoid(), tnn.GELU: lambda m: nn.GELU(m.approximate),
    tnn.Dropout: lambda m: nn.Dropout(m.p), tnn.Identity: lambda m: nn.Identity(),
    tnn.Flatten: lambda m: nn.Flatten(m.start_dim, m.end_dim),
    tnn.MaxPool2d: lambda m: nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode),
    tnn.AvgPool2d: lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad),
    tnn.AdaptiveAvgPool2d: lambda m: nn.AdaptiveAvgPool2d(m.output_size),
    torchvision.ops.StochasticDepth: lambda m: nn.Identity(),  # identity in eval
}


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: Any) -> Any:
        return F.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's LayerNorm over channels of an NCHW tensor."""

    def forward(self, x: Any) -> Any:
        return F.permute(super().forward(F.permute(x, (0, 2, 3, 1))), (0, 3, 1, 2))


class Block(nn.Module):
    """A composite block: its children mirrored, its forward given per torchvision class."""

    def __init__(self, original: tnn.Module, forward: Callable[..., Any]) -> None:
        super().__init__()
        self._forward = forward
        for name, child in original.named_children():
            setattr(self, name, mirror(child))
        for name, p in original.named_parameters(recurse=False):
            setattr(self, name, nn.Parameter(p.detach().numpy().copy()))
        for key in ("stride", "use_res_connect"):
            if hasattr(original, key):
                setattr(self, key, getattr(original, key))

    def forward(self, *args: Any) -> Any:
        return self._forward(self, *args)


def _fire(b: Block, x: Any) -> Any:
    x = b.squeeze_activation(b.squeeze(x))
    return F.cat([b.expand1x1_activation(b.expand1x1(x)), b.expand3x3_activation(b.expand3x3(x))], 1)


def _channel_shuffle(x: Any, groups: int) -> Any:
    n, c, h, w = x.shape
    x = F.reshape(x, (-1, groups, c // groups, h, w))
    return F.reshape(F.transpose(x, 1, 2), (-1, c, h, w))


def _shuffle_block(b: Block, x: Any) -> Any:
    if b.stride == 1:
        x1, x2 = F.chunk(x, 2, 1)
        out = F.cat([x1, b.branch2(x2)], 1)
    else:
        out = F.cat([b.branch1(x), b.branch2(x)], 1)
    return _channel_shuffle(out, 2)


def _residual(b: Block, x: Any) -> Any:  # MobileNetV3 InvertedResidual, EfficientNet MBConv
    out = b.block(x)
    if b.use_res_connect:
        out = (b.stochastic_depth(out) if "stochastic_depth" in b._modules else out) + x
    return out


def _squeeze_excitation(b: Block, x: Any) -> Any:
    scale = b.scale_activation(b.fc2(b.activation(b.fc1(b.avgpool(x)))))
    return scale * x


def _cnblock(b: Block, x: Any) -> Any:
    return b.stochastic_depth(b.layer_scale * b.block(x)) + x


def _dense_layer(b: Block, *features: Any) -> Any:
    x = F.cat(list(features), 1)
    x = b.conv1(b.relu1(b.norm1(x)))
    return b.conv2(b.relu2(b.norm2(x)))


def _dense_block(b: Block, x: Any) -> Any:
    features = [x]
    for layer in b.children():
        features.append(layer(*features))
    return F.cat(features, 1)


BLOCKS: dict[type, Callable[..., Any]] = {
    torchvision.models.squeezenet.Fire: _fire,
    torchvision.models.shufflenetv2.InvertedResidual: _shuffle_block,
    torchvision.models.mobilenetv3.InvertedResidual: _residual,
    torchvision.models.efficientnet.MBConv: _residual,
    torchvision.ops.SqueezeExcitation: _squeeze_excitation,
    torchvision.models.convnext.CNBlock: _cnblock,
    torchvision.models.densenet._DenseLayer: _dense_layer,
    torchvision.models.densenet._DenseBlock: _dense_block,
}


def mirror(m: tnn.Module) -> nn.Module:
    """The netdef twin of a torch module (same module paths, same state_dict names)."""
    kind = type(m)
    if kind in LEAVES:
        return LEAVES[kind](m)
    if kind is torchvision.models.convnext.LayerNorm2d:
        return LayerNorm2d(m.normalized_shape, m.eps, m.elementwise_affine)
    if kind is torchvision.ops.Permute:
        return Permute(m.dims)
    if kind in BLOCKS:
        return Block(m, BLOCKS[kind])
    if isinstance(m, tnn.Sequential):  # Conv2dNormActivation, _Transition, ...
        return nn.Sequential(*[mirror(c) for c in m]) if all(
            n == str(i) for i, (n, _) in enumerate(m.named_children())) else _named_sequential(m)
    raise TypeError(f"no netdef twin for {kind.__name__}")


def _named_sequential(m: tnn.Sequential) -> nn.Module:
    seq = nn.Sequential()
    for name, child in m.named_children():
        seq.add_module(name, mirror(child))
    return seq


# ---- whole models: top-level forwards ---------------------------------------------------------------
def _squeezenet(p: Block, x: Any) -> Any:
    return F.flatten(p.classifier(p.features(x)), 1)


def _shufflenet(p: Block, x: Any) -> Any:
    x = p.conv5(p.stage4(p.stage3(p.stage2(p.maxpool(p.conv1(x))))))
    return p.fc(F.mean(x, (2, 3)))


def _classify(p: Block, x: Any) -> Any:  # MobileNetV3, EfficientNet, ConvNeXt
    x = p.avgpool(p.features(x))
    return p.classifier(x if isinstance(p.classifier[0], LayerNorm2d) else F.flatten(x, 1))


def _densenet(p: Block, x: Any) -> Any:
    x = F.adaptive_avg_pool2d(F.relu(p.features(x)), (1, 1))
    return p.classifier(F.flatten(x, 1))


MODELS: dict[str, tuple[Callable[[], tnn.Module], Callable[..., Any]]] = {
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(weights=None), _squeezenet),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(weights=None), _shufflenet),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), _classify),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(weights=None), _classify),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(weights=None), _classify),
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), _densenet),
}


def port_of(name: str, original: tnn.Module) -> nn.Module:
    """The netdef port of held-out model `name`, its weights loaded from `original`."""
    port = Block(original, MODELS[name][1])
    port.load_state_dict(original.state_dict())
    return port
