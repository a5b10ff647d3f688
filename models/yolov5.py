"""YOLOv5 (v6.0 layout): the backbone + PAN neck returning the P3, P4, P5 feature maps, and the
complete detector with the Detect head and NMS inside the engine.

Module paths follow Ultralytics' naming (model.N.cv1.conv.weight, model.N.m.0.cv2.bn.*,
model.24.m.0.weight, model.24.anchors), so a YOLOv5 state_dict loads unchanged: `YOLOv5` takes
the one without the Detect head, `DetectionModel` the whole detector (model.24 = Detect,
model.25 = NMS, as Ultralytics' `model.nms()` appends it). The layer table below is the single
description of the architecture; the torch original in `netdef.models.originals` builds itself
from the same table and the same anchors.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from netdef import functional as F
from netdef import nn, ops

# (from, repeats, kind, args) at width/depth 1.0, as in Ultralytics' yolov5*.yaml without Detect;
# Conv args: (out_channels, kernel, stride[, padding]); C3: (out_channels[, shortcut]); SPPF: (out_channels, k)
LAYERS: list[tuple[Any, int, str, tuple]] = [
    (-1, 1, "Conv", (64, 6, 2, 2)),  # 0  P1/2
    (-1, 1, "Conv", (128, 3, 2)),  # 1  P2/4
    (-1, 3, "C3", (128,)),  # 2
    (-1, 1, "Conv", (256, 3, 2)),  # 3  P3/8
    (-1, 6, "C3", (256,)),  # 4
    (-1, 1, "Conv", (512, 3, 2)),  # 5  P4/16
    (-1, 9, "C3", (512,)),  # 6
    (-1, 1, "Conv", (1024, 3, 2)),  # 7  P5/32
    (-1, 3, "C3", (1024,)),  # 8
    (-1, 1, "SPPF", (1024, 5)),  # 9
    (-1, 1, "Conv", (512, 1, 1)),  # 10
    (-1, 1, "Upsample", ()),  # 11
    ((-1, 6), 1, "Concat", ()),  # 12 cat backbone P4
    (-1, 3, "C3", (512, False)),  # 13
    (-1, 1, "Conv", (256, 1, 1)),  # 14
    (-1, 1, "Upsample", ()),  # 15
    ((-1, 4), 1, "Concat", ()),  # 16 cat backbone P3
    (-1, 3, "C3", (256, False)),  # 17 P3/8 out
    (-1, 1, "Conv", (256, 3, 2)),  # 18
    ((-1, 14), 1, "Concat", ()),  # 19 cat head P4
    (-1, 3, "C3", (512, False)),  # 20 P4/16 out
    (-1, 1, "Conv", (512, 3, 2)),  # 21
    ((-1, 10), 1, "Concat", ()),  # 22 cat head P5
    (-1, 3, "C3", (1024, False)),  # 23 P5/32 out
]
OUTPUTS = (17, 20, 23)
# Ultralytics' yolov5*.yaml anchors in pixels, (w, h) pairs per output level P3/8, P4/16, P5/32
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
STRIDES = (8, 16, 32)


class LayerSpec(NamedTuple):
    source: Any  # -1 (previous layer) or a tuple of layer indices (-1 = previous)
    kind: str
    args: tuple  # constructor arguments with channels and repeats already scaled


def make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


def scaled_layers(depth_multiple: float = 0.33, width_multiple: float = 0.25,
                  in_channels: int = 3) -> list[LayerSpec]:
    """Ultralytics' parse_model: scale repeats and channels; the defaults are YOLOv5n's."""
    ch: list[int] = []
    specs = []
    for i, (src, n, kind, args) in enumerate(LAYERS):
        prev = ch[-1] if ch else in_channels
        n = max(round(n * depth_multiple), 1) if n > 1 else n
        if kind in ("Conv", "C3", "SPPF"):
            c2 = make_divisible(args[0] * width_multiple)
            rest = args[1:]
            built = (prev, c2, n, *rest) if kind == "C3" else (prev, c2, *rest)
        elif kind == "Concat":
            c2 = sum(ch[j] if j >= 0 else prev for j in src)
            built = ()
        else:
            c2, built = prev, ()
        ch.append(c2)
        specs.append(LayerSpec(src, kind, built))
    return specs


def autopad(k: int, p: int | None = None) -> int:
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: Any) -> Any:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: Any) -> Any:
        y = self.cv2(self.cv1(x))
        return F.add(x, y) if self.add else y


class C3(nn.Module):
    """CSP bottleneck with three convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: Any) -> Any:
        return self.cv3(F.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: one max pool applied three times in a row."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Any) -> Any:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(F.cat([x, y1, y2, self.m(y2)], 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[Any]) -> Any:
        return F.cat(x, self.d)


def _make(kind: str, args: tuple) -> nn.Module:
    if kind == "Upsample":
        return nn.Upsample(scale_factor=2, mode="nearest")
    return {"Conv": Conv, "C3": C3, "SPPF": SPPF, "Concat": Concat}[kind](*args)


class YOLOv5(nn.Module):
    """Backbone + neck; forward returns (P3, P4, P5) at strides 8, 16, 32."""

    def __init__(self, depth_multiple: float = 0.33, width_multiple: float = 0.25, in_channels: int = 3) -> None:
        super().__init__()
        specs = scaled_layers(depth_multiple, width_multiple, in_channels)
        self.sources = [s.source for s in specs]
        self.model = nn.Sequential(*(_make(s.kind, s.args) for s in specs))

    def _every_layer(self, x: Any) -> list[Any]:
        """Every layer's output, in order: a layer takes the previous output, or the outputs its
        source lists (YOLOv5's `from` column)."""
        y: list[Any] = []
        for src, m in zip(self.sources, self.model):
            x = m(x if src == -1 else [x if j == -1 else y[j] for j in src])
            y.append(x)
        return y

    def forward(self, x: Any) -> tuple[Any, Any, Any]:
        y = self._every_layer(x)
        return tuple(y[i] for i in OUTPUTS)


def grid_offsets(ny: int, nx: int) -> np.ndarray:
    """[ny, nx, 2] cell (x, y) minus 0.5: Ultralytics' _make_grid, where (2·sigmoid − 0.5 + cell)
    lets a centre reach half a cell beyond its own."""
    yv, xv = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
    return np.stack((xv, yv), 2) - np.float32(0.5)


class Detect(nn.Module):
    """YOLOv5's Detect head: a 1x1 conv per level, then the box decoding of Ultralytics (eval mode).

    xy = (2·σ(t_xy) + grid − 0.5)·stride, wh = (2·σ(t_wh))²·anchor, objectness and class scores σ.
    Returns (predictions [B, na·Σny·nx, 5 + nc] as (cx, cy, w, h, obj, cls...), the raw
    [B, na, ny, nx, 5 + nc] maps), the tuple Ultralytics' Detect returns in eval mode.
    `anchors` is the (nl, na, 2) buffer in units of each level's stride, as Ultralytics stores it.
    """

    def __init__(self, nc: int = 80, anchors: Any = ANCHORS, ch: tuple[int, ...] = (),
                 stride: tuple[int, ...] = STRIDES) -> None:
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.stride = tuple(float(s) for s in stride)
        grid = np.asarray(anchors, np.float32).reshape(self.nl, -1, 2)
        self.register_buffer("anchors", grid / np.asarray(self.stride, np.float32).reshape(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, x: list[Any]) -> tuple[Any, list[Any]]:
        z, raw = [], []
        for i in range(self.nl):
            y = self.m[i](x[i])
            _, _, ny, nx = y.shape
            y = y.reshape(-1, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2)
            raw.append(y)
            xy, wh, conf = F.split(F.sigmoid(y), (2, 2, self.nc + 1), 4)
            grid = grid_offsets(ny, nx).reshape(1, 1, ny, nx, 2)
            anchor_grid = (self.anchors[i] * self.stride[i]).reshape(1, self.na, 1, 1, 2)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            z.append(F.cat([xy, wh, conf], 4).reshape(-1, self.na * ny * nx, self.no))
        return F.cat(z, 1), raw

    def extra_repr(self) -> str:
        return f"nc={self.nc}, na={self.na}, stride={self.stride}"


class NMS(nn.Module):
    """Class-aware NMS inside the engine, with a fixed-size output (Ultralytics' NMS module, v5.0).

    Ultralytics' non_max_suppression with multi_label=False: score = objectness × best class
    score, candidates above `conf`, per-class NMS at `iou` (torchvision.ops.batched_nms), the
    `max_det` best per image. Returns (boxes [B, max_det, 4] xyxy, scores [B, max_det],
    classes [B, max_det] int64, count [B] int64); rows past count are zeros with class -1.
    """

    def __init__(self, conf: float = 0.25, iou: float = 0.45, max_det: int = 300) -> None:
        super().__init__()
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def forward(self, x: tuple[Any, Any]) -> tuple[Any, Any, Any, Any]:
        pred = x[0]
        boxes = ops.box_convert(pred[..., :4], "cxcywh", "xyxy")
        scores = pred[..., 5:] * pred[..., 4:5]  # conf = obj_conf * cls_conf
        nc = scores.shape[-1]
        best = F.amax(scores, -1, keepdim=True)
        label = F.argmax(scores, -1, keepdim=True)
        classes = np.arange(nc, dtype=np.int64).reshape(1, 1, nc)
        scores = F.where(F.eq(label, classes), best, 0.0)  # only the best class of a box competes
        return ops.multiclass_nms(boxes, scores, self.iou, self.conf, self.max_det)

    def extra_repr(self) -> str:
        return f"conf={self.conf}, iou={self.iou}, max_det={self.max_det}"


class DetectionModel(YOLOv5):
    """The whole detector: backbone + neck (model.0-23), Detect (model.24), NMS (model.25).

    forward(images) returns NMS's (boxes, scores, classes, count); the batch may be dynamic.
    """

    def __init__(self, depth_multiple: float = 0.33, width_multiple: float = 0.25, in_channels: int = 3,
                 nc: int = 80, anchors: Any = ANCHORS, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300) -> None:
        super().__init__(depth_multiple, width_multiple, in_channels)
        ch = tuple(self.model[i].cv3.conv.out_channels for i in OUTPUTS)
        self.model.append(Detect(nc, anchors, ch))
        self.model.append(NMS(conf, iou, max_det))
        self.sources = [*self.sources, OUTPUTS, -1]

    def forward(self, x: Any) -> tuple[Any, Any, Any, Any]:
        return self._every_layer(x)[-1]


def yolov5n() -> YOLOv5:
    return YOLOv5(0.33, 0.25)


def yolov5s() -> YOLOv5:
    return YOLOv5(0.33, 0.50)


__all__ = ["ANCHORS", "Bottleneck", "C3", "Concat", "Conv", "Detect", "DetectionModel", "LAYERS", "NMS", "OUTPUTS",
           "SPPF", "STRIDES", "YOLOv5", "grid_offsets", "scaled_layers", "yolov5n", "yolov5s"]
