"""Ready-made netdef models with torch's state_dict names (installed as netdef.models).

`MODELS` names each bundled model for the CLI (`netdef build resnet50 ...`): where its
constructor lives, a default input shape, and how to make its torch original
(torchvision where it exists, else netdef.models.originals).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple


def _torchvision(name: str) -> Callable[[], Any]:
    def make() -> Any:
        from netdef.optional import require

        tvm = require("torchvision.models", f"the torch original of {name} (torchvision.models.{name})")
        return getattr(tvm, name)(weights=None)
    return make


def _original(name: str, *args: Any) -> Callable[[], Any]:
    def make() -> Any:
        from netdef.models import originals

        return getattr(originals, name)(*args)
    return make


class Entry(NamedTuple):
    module: str
    factory: str
    input_shape: tuple[int, ...]
    original: Callable[[], Any]


_IMAGENET = (1, 3, 224, 224)
MODELS: dict[str, Entry] = {
    "lenet5": Entry("lenet", "LeNet5", (1, 1, 28, 28), _original("LeNet5")),
    **{n: Entry("resnet", n, _IMAGENET, _torchvision(n)) for n in
       ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2")},
    "vgg16_bn": Entry("vgg", "vgg16_bn", _IMAGENET, _torchvision("vgg16_bn")),
    "mobilenet_v2": Entry("mobilenetv2", "mobilenet_v2", _IMAGENET, _torchvision("mobilenet_v2")),
    "yolov5n": Entry("yolov5", "yolov5n", (1, 3, 640, 640), _original("YOLOv5", 0.33, 0.25)),
    "yolov5s": Entry("yolov5", "yolov5s", (1, 3, 640, 640), _original("YOLOv5", 0.33, 0.50)),
    "vit_b_16": Entry("vit", "vit_b_16", _IMAGENET, _torchvision("vit_b_16")),
    "crnn": Entry("crnn", "crnn", (1, 1, 32, 100), _original("CRNN")),
    "gru_classifier": Entry("gru_classifier", "gru_classifier", (1, 100, 40), _original("GRUClassifier")),
}


def create(name: str) -> Any:
    """A fresh instance of the bundled model `name` (KeyError if unknown)."""
    entry = MODELS[name.lower()]
    return getattr(importlib.import_module(f"netdef.models.{entry.module}"), entry.factory)()
