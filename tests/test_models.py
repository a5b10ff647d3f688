"""Ready-made models: the originals' state_dicts load strictly, every module matches, engines build.

Each model is compared with its PyTorch original (torchvision where it exists, else
netdef.models.originals) on random weights and random BatchNorm statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
import torchvision

import netdef
from helpers import random_original
from netdef.models import MODELS, create, lenet, mobilenetv2, originals, resnet, vgg, vit, yolov5


@dataclass(frozen=True)
class Case:
    port: Callable[[], Any]
    original: Callable[[], Any]
    shape: tuple[int, ...]  # compare input (batch 2); builds use batch 1..4


def tiny_vit() -> Any:
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=64, mlp_dim=128, num_classes=10)


CASES = {
    "lenet5": Case(lenet.LeNet5, originals.LeNet5, (2, 1, 28, 28)),
    "resnet18": Case(resnet.resnet18, torchvision.models.resnet18, (2, 3, 64, 64)),
    "resnet34": Case(resnet.resnet34, torchvision.models.resnet34, (2, 3, 64, 64)),
    "resnet50": Case(resnet.resnet50, torchvision.models.resnet50, (2, 3, 64, 64)),
    "resnet101": Case(resnet.resnet101, torchvision.models.resnet101, (2, 3, 64, 64)),
    "resnet152": Case(resnet.resnet152, torchvision.models.resnet152, (2, 3, 64, 64)),
    "resnext50_32x4d": Case(resnet.resnext50_32x4d, torchvision.models.resnext50_32x4d, (2, 3, 64, 64)),
    "wide_resnet50_2": Case(resnet.wide_resnet50_2, torchvision.models.wide_resnet50_2, (2, 3, 64, 64)),
    # 32x32 leaves 1x1 features, so avgpool's 1x1 -> 7x7 adaptive path is exercised too
    "vgg16_bn": Case(vgg.vgg16_bn, torchvision.models.vgg16_bn, (2, 3, 32, 32)),
    "mobilenet_v2": Case(mobilenetv2.mobilenet_v2, torchvision.models.mobilenet_v2, (2, 3, 64, 64)),
    "yolov5n": Case(yolov5.YOLOv5, originals.YOLOv5, (2, 3, 64, 64)),
    "vit": Case(vit.vit_tiny, tiny_vit, (2, 3, 32, 32)),
}


@dataclass
class Pair:
    name: str
    case: Case
    original: Any
    port: Any
    x: torch.Tensor


@pytest.fixture(scope="module", params=list(CASES))
def pair(request: pytest.FixtureRequest) -> Pair:
    """The original with random weights and the port loaded from its state_dict (one model at a time)."""
    name = request.param
    case = CASES[name]
    torch.manual_seed(0)
    calib = torch.randn(case.shape, generator=torch.Generator().manual_seed(1))
    original = random_original(case.original(), calib, seed=2)
    port = case.port()
    port.load_state_dict(original.state_dict())
    x = torch.randn(case.shape, generator=torch.Generator().manual_seed(3))
    return Pair(name, case, original, port, x)


def test_state_dict_names_and_shapes_equal_the_original(pair: Pair) -> None:
    theirs = pair.original.state_dict()
    fresh = pair.case.port()
    ours = fresh.state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert fresh.load_state_dict(theirs, strict=True) == ([], [])
    key = next(k for k, v in theirs.items() if v.dim() > 1)
    netdef.tolerance.assert_close(fresh.state_dict()[key], theirs[key], "float32", atol=0, rtol=0, what=key)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_every_module_matches_the_original(pair: Pair, dtype: str) -> None:
    report = netdef.compare(pair.original, pair.port, (pair.x,), dtype=dtype)
    assert report.ok, str(report)
    assert not [r.label for r in report.rows if r.status == "missing"]  # every torch module has a twin
    assert sum(r.path.startswith("<output") for r in report.rows) >= 1
    # drift is rounding, not a wrong layer: every module output points the same way as torch's
    assert min(r.stats.cosine for r in report.rows) > 0.9999, str(report)


def test_float16_engine_builds_with_dynamic_batch(pair: Pair, tmp_path: Any) -> None:
    shape = pair.case.shape[1:]
    plan = netdef.build(pair.port, netdef.Input("x", (("batch", 1, 2, 4), *shape)), dtype="float16",
                        progress=False)
    path = netdef.save_engine(plan, tmp_path / f"{pair.name}.engine")
    loaded = netdef.load_plan(path)
    assert bytes(loaded) == bytes(plan)
    assert len(plan) >= plan.metadata["weight_bytes"]  # the float16 weights are inside the engine
    assert loaded.metadata["dtype"] == "float16"
    assert loaded.metadata["inputs"][0]["min"] == [1, *shape]
    assert loaded.metadata["inputs"][0]["max"] == [4, *shape]


def test_yolov5_batchnorm_eps_is_ultralytics() -> None:
    """A port with torch's default eps (1e-5 instead of YOLOv5's 1e-3) is caught at the first BN."""
    shape = CASES["yolov5n"].shape
    original = random_original(originals.YOLOv5(), torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    wrong = yolov5.YOLOv5()
    wrong.load_state_dict(original.state_dict())
    for m in wrong.modules():
        if isinstance(m, netdef.nn.BatchNorm2d):
            m.eps = 1e-5
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    report = netdef.compare(original, wrong, (x,))
    assert not report.ok
    assert report.first_failure.path == "model.0.bn"


def test_vit_rejects_other_image_sizes() -> None:
    with pytest.raises(netdef.TraceError, match="expects 32x32 images"):
        netdef.trace(vit.vit_tiny(), netdef.Input("x", (1, 3, 64, 64)))


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(CASES)))
def test_registry_models_have_their_originals_names_and_shapes(name: str) -> None:
    """Bundled models not compared above (e.g. vit_b_16, yolov5s): state_dict names and shapes."""
    with torch.device("meta"):  # shapes only: no memory, no init cost
        theirs = MODELS[name].original().state_dict()
    ours = create(name).state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
