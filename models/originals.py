"""Plain-torch originals of the models torchvision lacks.

netdef's ports in this package must load these modules' state_dicts unchanged and match
them layer by layer; nothing in netdef imports this file unless an original is asked for.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from netdef.models.yolov5 import ANCHORS, OUTPUTS, STRIDES, autopad, grid_offsets, scaled_layers


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 digits (ReLU and average pooling, padding 2 on the first conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


# ---- YOLOv5-style backbone + neck (Ultralytics v6.0 layout, module names as Ultralytics') ----

class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class YOLOv5(nn.Module):
    """Backbone + neck from the layer table in netdef.models.yolov5; returns (P3, P4, P5)."""

    def __init__(self, depth_multiple: float = 0.33, width_multiple: float = 0.25, in_channels: int = 3) -> None:
        super().__init__()
        specs = scaled_layers(depth_multiple, width_multiple, in_channels)
        kinds = {"Conv": Conv, "C3": C3, "SPPF": SPPF, "Concat": Concat}
        self.sources = [s.source for s in specs]
        self.outputs = OUTPUTS
        self.model = nn.Sequential(*(nn.Upsample(scale_factor=2, mode="nearest") if s.kind == "Upsample"
                                     else kinds[s.kind](*s.args) for s in specs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y: list[torch.Tensor] = []
        for src, m in zip(self.sources, self.model):
            if src != -1:
                x = [x if j == -1 else y[j] for j in src]
            x = m(x)
            y.append(x)
        return tuple(y[i] for i in self.outputs)


class Detect(nn.Module):
    """Ultralytics' Detect head in eval mode: returns (decoded predictions, raw per-level maps)."""

    def __init__(self, nc: int = 80, anchors: tuple = ANCHORS, ch: tuple[int, ...] = (),
                 stride: tuple[int, ...] = STRIDES) -> None:
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.stride = torch.tensor(stride, dtype=torch.float32)
        # stored in units of each level's stride, as Ultralytics' Model.__init__ leaves them
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
                             / self.stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = []
        x = list(x)
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid = torch.from_numpy(grid_offsets(ny, nx)).expand(1, self.na, ny, nx, 2)
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
            xy, wh, conf = x[i].sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
        return torch.cat(z, 1), x


def xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


class NMS(nn.Module):
    """Ultralytics' non_max_suppression (multi_label=False) written with torchvision.ops.batched_nms,
    padded to max_det rows per image: (boxes, scores, classes, count)."""

    def __init__(self, conf: float = 0.25, iou: float = 0.45, max_det: int = 300) -> None:
        super().__init__()
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def forward(self, x: tuple[torch.Tensor, list[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        prediction = x[0]
        bs, d = prediction.shape[0], self.max_det
        boxes = prediction.new_zeros(bs, d, 4)
        scores = prediction.new_zeros(bs, d)
        classes = torch.full((bs, d), -1, dtype=torch.int64)
        count = torch.zeros(bs, dtype=torch.int64)
        candidates = prediction[..., 4] > self.conf
        for i, p in enumerate(prediction):
            p = p[candidates[i]].clone()
            p[:, 5:] *= p[:, 4:5]  # conf = obj_conf * cls_conf
            box = xywh2xyxy(p[:, :4])
            conf, j = p[:, 5:].max(1)
            keep = conf > self.conf
            box, conf, j = box[keep], conf[keep], j[keep]
            kept = torchvision.ops.batched_nms(box, conf, j, self.iou)[:d]
            n = len(kept)
            boxes[i, :n], scores[i, :n], classes[i, :n], count[i] = box[kept], conf[kept], j[kept], n
        return boxes, scores, classes, count


class DetectionModel(YOLOv5):
    """The whole YOLOv5 detector: backbone + neck, Detect (model.24), NMS (model.25)."""

    def __init__(self, depth_multiple: float = 0.33, width_multiple: float = 0.25, in_channels: int = 3,
                 nc: int = 80, anchors: tuple = ANCHORS, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300) -> None:
        super().__init__(depth_multiple, width_multiple, in_channels)
        ch = tuple(self.model[i].cv3.conv.out_channels for i in OUTPUTS)
        self.model.append(Detect(nc, anchors, ch))
        self.model.append(NMS(conf, iou, max_det))
        self.sources = [*self.sources, OUTPUTS, -1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y: list = []
        for src, m in zip(self.sources, self.model):
            if src != -1:
                x = [x if j == -1 else y[j] for j in src]
            x = m(x)
            y.append(x)
        return x


def calibrate_objectness(model: DetectionModel, images: torch.Tensor, candidates: float = 20.0,
                         class_gain: float = 4.0) -> DetectionModel:
    """Make a randomly initialised detector detect: a trained YOLOv5 is confident about few anchors,
    random weights make every anchor's objectness and class scores about 0.5, which puts all of
    them at the confidence threshold. Multiply the class logits by `class_gain` (a decisive best
    class) and shift the objectness bias so that on average `candidates` anchors per image score
    above the NMS confidence. Acts in place on the torch model; returns it.
    """
    detect, nms = model.model[-2], model.model[-1]
    logits: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: logits.append(out)) for m in detect.m]
    with torch.no_grad():
        for conv in detect.m:
            w = conv.weight.view(detect.na, detect.no, -1)
            b = conv.bias.view(detect.na, detect.no)
            w[:, 5:] *= class_gain
            b[:, 5:] *= class_gain
        try:
            model(images)
        finally:
            for h in hooks:
                h.remove()
        obj, cls = [], []
        for y in logits[:detect.nl]:
            y = y.view(y.shape[0], detect.na, detect.no, -1)
            obj.append(y[:, :, 4].flatten(1))
            cls.append(y[:, :, 5:].sigmoid().amax(2).flatten(1))
        obj, cls = torch.cat(obj, 1), torch.cat(cls, 1)

        def above(shift: float) -> float:
            return float(((obj + shift).sigmoid() * cls > nms.conf).sum(1).float().mean())

        lo, hi = -30.0, 30.0
        for _ in range(60):  # bisection: the count grows with the shift
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if above(mid) < candidates else (lo, mid)
        for conv in detect.m:
            conv.bias.view(detect.na, detect.no)[:, 4] += hi
    return model
