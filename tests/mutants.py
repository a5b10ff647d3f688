"""Realistic porting mistakes planted into the shipped ports, and numerically equivalent controls.

Each Mutant edits a freshly loaded port (never the torch original) the way a person porting by
hand gets it wrong: a wrong eps, padding, stride or dilation, a dropped bias, a transposed
square weight, the wrong activation or pooling, a missing or doubled residual, a LayerNorm
over the wrong shape, attention without its scale, softmax over the wrong axis, a wrong head
split, an NCHW/NHWC flatten. `where` lists the module paths where compare may locate it: the
mutated module, its parent or its child, or the first module that consumes a tensor the
mutated code computes outside any module. Shared by tests/test_mutations.py and
benchmarks/mutations.py (which prints each mutant's detection margin).
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torchvision

from netdef import functional as F
from netdef import nn
from netdef.models import mobilenetv2, originals, resnet, vit, yolov5
from netdef.testing import random_original


@dataclass(frozen=True)
class Subject:
    port: Callable[[], Any]
    original: Callable[[], Any]
    shape: tuple[int, ...]


def _tiny_vit() -> Any:
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=64, mlp_dim=128, num_classes=10)


SUBJECTS = {
    "resnet18": Subject(resnet.resnet18, lambda: torchvision.models.resnet18(weights=None), (1, 3, 32, 32)),
    "mobilenet_v2": Subject(mobilenetv2.mobilenet_v2, lambda: torchvision.models.mobilenet_v2(weights=None),
                            (1, 3, 32, 32)),
    "vit": Subject(vit.vit_tiny, _tiny_vit, (1, 3, 32, 32)),
    "yolov5n": Subject(yolov5.YOLOv5, originals.YOLOv5, (1, 3, 128, 128)),  # SPPF sees 4x4: a 3x3 window differs
}


def make_pair(subject: str) -> tuple[Any, Any, torch.Tensor]:
    """The torch original with random weights (unit activations), its port, and an input."""
    s = SUBJECTS[subject]
    calib = torch.randn(s.shape, generator=torch.Generator().manual_seed(1))
    original = random_original(s.original(), calib, seed=2)
    port = s.port()
    port.load_state_dict(original.state_dict())
    x = torch.randn(s.shape, generator=torch.Generator().manual_seed(3))
    return original, port, x


def module(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def replace(root: Any, path: str, new: Any) -> None:
    parent, _, name = path.rpartition(".")
    owner = module(root, parent) if parent else root
    if name.isdigit():
        owner[int(name)] = new
    else:
        setattr(owner, name, new)


def patch_forward(m: Any, forward: Callable[..., Any]) -> None:
    object.__setattr__(m, "forward", types.MethodType(forward, m))


@dataclass(frozen=True)
class Mutant:
    name: str
    subject: str
    mutate: Callable[[Any], None]
    where: tuple[str, ...]  # acceptable first-failure paths (with their parents and children)
    input_scale: float = 1.0  # some mistakes only show on large activations (ReLU6 vs ReLU)


def _set(path: str, **attrs: Any) -> Callable[[Any], None]:
    def mutate(port: Any) -> None:
        m = module(port, path)
        for k, v in attrs.items():
            object.__setattr__(m, k, v)
    return mutate


def _weight(path: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Any], None]:
    def mutate(port: Any) -> None:
        p = module(port, path)
        p.data = np.ascontiguousarray(fn(p.data))
    return mutate


def _swap(path: str, make: Callable[[], Any]) -> Callable[[Any], None]:
    return lambda port: replace(port, path, make())


def _no_bias(path: str) -> Callable[[Any], None]:
    def mutate(port: Any) -> None:
        module(port, path).bias = None
    return mutate


def _swap_bn_stats(path: str) -> Callable[[Any], None]:
    def mutate(port: Any) -> None:
        bn = module(port, path)
        mean, var = bn.running_mean.copy(), bn.running_var.copy()
        bn.running_mean, bn.running_var = var, mean
    return mutate


# ---- ResNet ------------------------------------------------------------------------------------------
def _basic_block(residual: int) -> Callable[..., Any]:
    """BasicBlock.forward with the identity added `residual` times (0: missing, 2: doubled)."""
    def forward(self: Any, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        for _ in range(residual):
            out = F.add(out, identity)
        return self.relu(out)
    return forward


def _residual(path: str, times: int) -> Callable[[Any], None]:
    return lambda port: patch_forward(module(port, path), _basic_block(times))


def _commuted_add(port: Any) -> None:
    """Control: identity + out instead of out + identity in every block (the same sums)."""
    def forward(self: Any, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(F.add(identity, out))
    for m in port.modules():
        if isinstance(m, resnet.BasicBlock):
            patch_forward(m, forward)


# ---- MobileNetV2 ---------------------------------------------------------------------------------------
def _no_residual(path: str) -> Callable[[Any], None]:
    return _set(path, use_res_connect=False)


class ClampReLU6(nn.Module):
    """Control: ReLU6 written as a clamp."""

    def forward(self, x: Any) -> Any:
        return F.clamp(x, 0.0, 6.0)


def _relu6_as_clamp(port: Any) -> None:
    for path, m in list(port.named_modules()):
        if isinstance(m, nn.ReLU6):
            replace(port, path, ClampReLU6())


# ---- ViT --------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Self-attention written out from its definition, with torch.nn.MultiheadAttention's parameter names;
    `bug` plants one mistake: "no_scale", "softmax_dim" or "head_split" (None: a correct rewrite)."""

    def __init__(self, embed_dim: int, num_heads: int, bug: str | None = None) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.bug = embed_dim, num_heads, bug
        self.in_proj_weight = nn.Parameter(np.zeros((3 * embed_dim, embed_dim), np.float32))
        self.in_proj_bias = nn.Parameter(np.zeros(3 * embed_dim, np.float32))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: Any, key: Any, value: Any, need_weights: bool = False) -> tuple[Any, None]:
        n, seq, e = query.size(0), query.size(1), self.embed_dim
        h, d = self.num_heads, e // self.num_heads
        q, k, v = F.chunk(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3, -1)

        def heads(t: Any) -> Any:  # (N, L, E) -> (N, H, L, D)
            if self.bug == "head_split":  # split E as (D, H) instead of (H, D)
                return F.permute(F.reshape(t, (n, seq, d, h)), (0, 3, 1, 2))
            return F.permute(F.reshape(t, (n, seq, h, d)), (0, 2, 1, 3))

        scale = 1.0 if self.bug == "no_scale" else 1.0 / math.sqrt(d)
        scores = F.matmul(F.mul(heads(q), scale), F.transpose(heads(k), -2, -1))
        attn = F.softmax(scores, dim=-2 if self.bug == "softmax_dim" else -1)
        out = F.reshape(F.permute(F.matmul(attn, heads(v)), (0, 2, 1, 3)), (n, seq, e))
        return self.out_proj(out), None


def _attention(layer: int, bug: str | None) -> Callable[[Any], None]:
    def mutate(port: Any) -> None:
        path = f"encoder.layers.encoder_layer_{layer}.self_attention"
        old = module(port, path)
        new = Attention(port.hidden_dim, old.num_heads, bug)
        new.load_state_dict(old.state_dict())
        replace(port, path, new)
    return mutate


def _all_attention_rewritten(port: Any) -> None:
    for i in range(len(port.encoder.layers)):
        _attention(i, None)(port)


def _layer_norm_over_tokens(path: str) -> Callable[[Any], None]:
    """LayerNorm normalized over (tokens, hidden) instead of hidden, then the per-channel affine."""
    def forward(self: Any, x: Any) -> Any:
        y = F.layer_norm(x, tuple(x.shape[-2:]), eps=self.eps)
        return F.add(F.mul(y, F.to_tensor(self.weight)), F.to_tensor(self.bias))
    return lambda port: patch_forward(module(port, path), forward)


def _nhwc_patches(port: Any) -> None:
    """Patch embedding reshaped straight to (N, patches, hidden): NCHW memory read as NHWC."""
    def forward(self: Any, x: Any) -> Any:
        n = x.size(0)
        x = F.reshape(self.conv_proj(x), (n, -1, self.hidden_dim))
        token = F.expand(F.to_tensor(self.class_token), (n, -1, -1))
        x = self.encoder(F.cat([token, x], 1))
        return self.heads(F.getitem(x, (slice(None), 0)))
    patch_forward(port, forward)


# ---- YOLOv5 --------------------------------------------------------------------------------------------
def _c3_swapped_concat(path: str) -> Callable[[Any], None]:
    def forward(self: Any, x: Any) -> Any:
        return self.cv3(F.cat([self.cv2(x), self.m(self.cv1(x))], 1))
    return lambda port: patch_forward(module(port, path), forward)


class SiLUBySigmoid(nn.Module):
    """Control: SiLU written as x * sigmoid(x)."""

    def forward(self, x: Any) -> Any:
        return F.mul(x, F.sigmoid(x))


def _silu_by_sigmoid(port: Any) -> None:
    for path, m in list(port.named_modules()):
        if isinstance(m, nn.SiLU):
            replace(port, path, SiLUBySigmoid())


def _transpose01(w: np.ndarray) -> np.ndarray:
    return w.transpose(1, 0, *range(2, w.ndim))


MUTANTS = [
    # ResNet-18
    Mutant("bn_eps_1e-3", "resnet18", _set("layer1.0.bn1", eps=1e-3), ("layer1.0.bn1",)),
    Mutant("padding_off_by_one", "resnet18", _set("layer2.0.conv2", padding=(2, 2)), ("layer2.0.conv2",)),
    Mutant("stride_1_not_2", "resnet18", _set("layer3.0.conv1", stride=(1, 1)), ("layer3.0.conv1",)),
    Mutant("dilation_2", "resnet18", _set("layer2.1.conv1", dilation=(2, 2), padding=(2, 2)), ("layer2.1.conv1",)),
    Mutant("fc_bias_dropped", "resnet18", _no_bias("fc"), ("fc",)),
    Mutant("square_weight_transposed", "resnet18", _weight("layer1.0.conv2.weight", _transpose01),
           ("layer1.0.conv2",)),
    Mutant("maxpool_as_avgpool", "resnet18", _swap("maxpool", lambda: nn.AvgPool2d(3, 2, 1)), ("maxpool",)),
    Mutant("residual_missing", "resnet18", _residual("layer2.1", 0), ("layer2.1",)),
    Mutant("residual_doubled", "resnet18", _residual("layer3.1", 2), ("layer3.1",)),
    Mutant("relu_as_relu6", "resnet18", _swap("layer1.0.relu", nn.ReLU6), ("layer1.0.relu",), input_scale=4.0),
    Mutant("bn_mean_var_swapped", "resnet18", _swap_bn_stats("layer1.1.bn2"), ("layer1.1.bn2",)),
    # MobileNetV2
    Mutant("relu6_as_relu", "mobilenet_v2", _swap("features.1.conv.0.2", nn.ReLU), ("features.1.conv.0.2",),
           input_scale=4.0),
    Mutant("residual_missing", "mobilenet_v2", _no_residual("features.3"), ("features.3",)),
    Mutant("depthwise_stride_1", "mobilenet_v2", _set("features.2.conv.1.0", stride=(1, 1)),
           ("features.2.conv.1.0",)),
    Mutant("bn_eps_1e-3", "mobilenet_v2", _set("features.4.conv.0.1", eps=1e-3), ("features.4.conv.0.1",)),
    Mutant("classifier_bias_dropped", "mobilenet_v2", _no_bias("classifier.1"), ("classifier.1",)),
    Mutant("depthwise_padding_0", "mobilenet_v2", _set("features.5.conv.1.0", padding=(0, 0)),
           ("features.5.conv.1.0",)),
    Mutant("relu6_as_hardswish", "mobilenet_v2", _swap("features.0.2", nn.Hardswish), ("features.0.2",)),
    # ViT
    Mutant("gelu_tanh_not_exact", "vit", _swap("encoder.layers.encoder_layer_0.mlp.1", lambda: nn.GELU("tanh")),
           ("encoder.layers.encoder_layer_0.mlp.1",)),
    Mutant("attention_scale_missing", "vit", _attention(0, "no_scale"),
           ("encoder.layers.encoder_layer_0.self_attention",)),
    Mutant("softmax_wrong_axis", "vit", _attention(1, "softmax_dim"),
           ("encoder.layers.encoder_layer_1.self_attention",)),
    Mutant("head_split_wrong", "vit", _attention(0, "head_split"), ("encoder.layers.encoder_layer_0.self_attention",)),
    Mutant("layer_norm_over_tokens", "vit", _layer_norm_over_tokens("encoder.layers.encoder_layer_1.ln_2"),
           ("encoder.layers.encoder_layer_1.ln_2",)),
    Mutant("patches_flattened_nhwc", "vit", _nhwc_patches, ("encoder.dropout", "encoder.layers.encoder_layer_0")),
    # YOLOv5n
    Mutant("silu_as_hardswish", "yolov5n", _swap("model.2.cv1.act", nn.Hardswish), ("model.2.cv1.act",)),
    Mutant("bn_eps_torch_default", "yolov5n", _set("model.4.m.0.cv1.bn", eps=1e-5), ("model.4.m.0.cv1.bn",)),
    Mutant("bottleneck_shortcut_missing", "yolov5n", _set("model.2.m.0", add=False), ("model.2.m.0",)),
    Mutant("c3_concat_order", "yolov5n", _c3_swapped_concat("model.6"), ("model.6",)),
    Mutant("sppf_kernel_3", "yolov5n", _set("model.9.m", kernel_size=(3, 3), padding=(1, 1)), ("model.9.m",)),
    Mutant("upsample_bilinear", "yolov5n",
           _swap("model.11", lambda: nn.Upsample(scale_factor=2, mode="bilinear")), ("model.11",)),
    Mutant("conv_stride_1", "yolov5n", _set("model.3.conv", stride=(1, 1)), ("model.3.conv",)),
    Mutant("square_weight_transposed", "yolov5n", _weight("model.2.m.0.cv1.conv.weight", _transpose01),
           ("model.2.m.0.cv1.conv",)),
]

CONTROLS = {
    "resnet18": [("unmodified", lambda port: None), ("commuted_residual_add", _commuted_add)],
    "mobilenet_v2": [("unmodified", lambda port: None), ("relu6_as_clamp", _relu6_as_clamp)],
    "vit": [("unmodified", lambda port: None), ("attention_rewritten", _all_attention_rewritten)],
    "yolov5n": [("unmodified", lambda port: None), ("silu_as_x_sigmoid_x", _silu_by_sigmoid)],
}


def located(path: str, where: tuple[str, ...]) -> bool:
    """`path` is one of `where`, or a parent or child of one."""
    return any(path == w or path.startswith(w + ".") or w.startswith(path + ".") for w in where)
