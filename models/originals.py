"""Plain-torch originals of the models torchvision lacks.

netdef's ports in this package must load these modules' state_dicts unchanged and match
them layer by layer; nothing in netdef imports this file unless an original is asked for.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import nn

from netdef import optional
from netdef.models import pointpillars as pp
from netdef.models.yolov5 import ANCHORS, OUTPUTS, STRIDES, autopad, grid_offsets, scaled_layers


def _vision_ops() -> ModuleType:
    """torchvision.ops, imported only by the detectors' post-processing: the other originals
    (LeNet-5 for `netdef demo`) work without torchvision."""
    return optional.require("torchvision.ops", "the detectors' torch originals (their NMS)")


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

    def _every_layer(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, in order: a layer takes the previous output, or the outputs its
        source lists (YOLOv5's `from` column)."""
        y: list[torch.Tensor] = []
        for src, m in zip(self.sources, self.model):
            x = m(x if src == -1 else [x if j == -1 else y[j] for j in src])
            y.append(x)
        return y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._every_layer(x)
        return tuple(y[i] for i in self.outputs)


# ---- CRNN (crnn.pytorch, the model tensorrtx's crnn ports) ----

class BidirectionalLSTM(nn.Module):
    def __init__(self, nIn: int, nHidden: int, nOut: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(nIn, nHidden, bidirectional=True)
        self.embedding = nn.Linear(nHidden * 2, nOut)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        recurrent, _ = self.rnn(input)
        T, b, h = recurrent.size()
        output = self.embedding(recurrent.view(T * b, h))
        return output.view(T, b, -1)


class CRNN(nn.Module):
    def __init__(self, imgH: int = 32, nc: int = 1, nclass: int = 37, nh: int = 256, leakyRelu: bool = False) -> None:
        super().__init__()
        assert imgH % 16 == 0, "imgH has to be a multiple of 16"
        ks, ps, nm = [3, 3, 3, 3, 3, 3, 2], [1, 1, 1, 1, 1, 1, 0], [64, 128, 256, 256, 512, 512, 512]
        cnn = nn.Sequential()

        def conv_relu(i: int, batch_normalization: bool = False) -> None:
            n_in = nc if i == 0 else nm[i - 1]
            cnn.add_module(f"conv{i}", nn.Conv2d(n_in, nm[i], ks[i], 1, ps[i]))
            if batch_normalization:
                cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nm[i]))
            cnn.add_module(f"relu{i}", nn.LeakyReLU(0.2, inplace=True) if leakyRelu else nn.ReLU(True))

        conv_relu(0)
        cnn.add_module("pooling0", nn.MaxPool2d(2, 2))
        conv_relu(1)
        cnn.add_module("pooling1", nn.MaxPool2d(2, 2))
        conv_relu(2, True)
        conv_relu(3)
        cnn.add_module("pooling2", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        conv_relu(4, True)
        conv_relu(5)
        cnn.add_module("pooling3", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        conv_relu(6, True)
        self.cnn = cnn
        self.rnn = nn.Sequential(BidirectionalLSTM(512, nh, nh), BidirectionalLSTM(nh, nh, nclass))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        conv = self.cnn(input)
        b, c, h, w = conv.size()
        assert h == 1, "the height of conv must be 1"
        conv = conv.squeeze(2).permute(2, 0, 1)  # [w, b, c]
        return self.rnn(conv)


# ---- a GRU sequence classifier ----

class GRUClassifier(nn.Module):
    def __init__(self, n_features: int = 40, hidden_size: int = 64, num_layers: int = 2, num_classes: int = 12,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden_size, num_layers, batch_first=True, dropout=dropout,
                          bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden_size)
        self.fc = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(x)
        return self.fc(self.norm(torch.cat((h_n[-2], h_n[-1]), 1)))
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
            kept = _vision_ops().batched_nms(box, conf, j, self.iou)[:d]
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
        return self._every_layer(x)[-1]


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
        obj, cls = torch.cat(obj, 1).flatten(), torch.cat(cls, 1).flatten()
        # the shift at which each anchor's score obj * cls crosses conf; the count of anchors above
        # conf steps at these values, so the shift is put midway in the widest step near the target
        able = cls > nms.conf
        steps = (torch.logit(nms.conf / cls[able]).double() - obj[able].double()).sort().values
        k = int(round(candidates * images.shape[0]))
        lo, hi = max(k - k // 3, 1), min(k + k // 3 + 1, len(steps) - 1)
        if hi <= lo:
            raise ValueError(f"calibrate_objectness: only {len(steps)} anchors can reach conf={nms.conf}")
        gaps = steps[lo:hi + 1] - steps[lo - 1:hi]
        i = lo - 1 + int(gaps.argmax())
        shift = float(steps[i] + steps[i + 1]) / 2
        for conv in detect.m:
            conv.bias.view(detect.na, detect.no)[:, 4] += shift
    return model


# ---- PointPillars (OpenPCDet's modules and names; inputs and NMS as netdef.models.pointpillars) ----

class PFNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, last_layer: bool = True) -> None:
        super().__init__()
        self.last_vfe = last_layer
        out = out_channels if last_layer else out_channels // 2
        self.linear = nn.Linear(in_channels, out, bias=False)
        self.norm = nn.BatchNorm1d(out, eps=1e-3, momentum=0.01)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.linear(inputs)
        x = torch.relu(self.norm(x.permute(0, 2, 1)).permute(0, 2, 1))
        x_max = torch.max(x, dim=1, keepdim=True)[0]
        if self.last_vfe:
            return x_max
        return torch.cat([x, x_max.repeat(1, inputs.shape[1], 1)], dim=2)


class PillarVFE(nn.Module):
    def __init__(self, cfg: pp.Config) -> None:
        super().__init__()
        self.voxel_size, self.pc_range = cfg.voxel_size, cfg.point_cloud_range
        filters = [10, *cfg.vfe_filters]
        self.pfn_layers = nn.ModuleList(PFNLayer(filters[i], filters[i + 1], i == len(filters) - 2)
                                        for i in range(len(filters) - 1))

    def forward(self, voxels: torch.Tensor, num_points: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        b, p, m, _ = voxels.shape
        features = voxels.reshape(-1, m, 4)
        count = num_points.reshape(-1).clamp(min=1).type_as(features).view(-1, 1, 1)
        coords = coords.reshape(-1, 3).type_as(features)  # (z, y, x)
        f_cluster = features[:, :, :3] - features[:, :, :3].sum(dim=1, keepdim=True) / count
        vx, vy, vz = self.voxel_size
        f_center = torch.zeros_like(features[:, :, :3])
        f_center[:, :, 0] = features[:, :, 0] - (coords[:, 2].unsqueeze(1) * vx + (vx / 2 + self.pc_range[0]))
        f_center[:, :, 1] = features[:, :, 1] - (coords[:, 1].unsqueeze(1) * vy + (vy / 2 + self.pc_range[1]))
        f_center[:, :, 2] = features[:, :, 2] - (coords[:, 0].unsqueeze(1) * vz + (vz / 2 + self.pc_range[2]))
        features = torch.cat([features, f_cluster, f_center], dim=-1)
        mask = torch.arange(m).view(1, -1) < num_points.reshape(-1, 1)
        features = features * mask.unsqueeze(-1).type_as(features)
        for pfn in self.pfn_layers:
            features = pfn(features)
        return features.reshape(b, p, -1)


class PointPillarScatter(nn.Module):
    def __init__(self, cfg: pp.Config) -> None:
        super().__init__()
        self.nx, self.ny = cfg.grid_size
        self.num_bev_features = cfg.vfe_filters[-1]

    def forward(self, pillars: torch.Tensor, num_points: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        out = []
        for feats, n, c in zip(pillars, num_points, coords):
            canvas = feats.new_zeros(self.num_bev_features, self.ny * self.nx)
            real = n > 0
            c = c[real].long()
            canvas[:, c[:, 0] + c[:, 1] * self.nx + c[:, 2]] = feats[real].t()
            out.append(canvas)
        return torch.stack(out).view(-1, self.num_bev_features, self.ny, self.nx)


class BaseBEVBackbone(nn.Module):
    def __init__(self, cfg: pp.Config, in_channels: int) -> None:
        super().__init__()
        c_in = [in_channels, *cfg.num_filters[:-1]]
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        for i, (n, s, c) in enumerate(zip(cfg.layer_nums, cfg.layer_strides, cfg.num_filters)):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in[i], c, 3, stride=s, padding=0, bias=False),
                      nn.BatchNorm2d(c, eps=1e-3, momentum=0.01), nn.ReLU()]
            for _ in range(n):
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, eps=1e-3, momentum=0.01),
                           nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            u, uc = cfg.upsample_strides[i], cfg.num_upsample_filters[i]
            self.deblocks.append(nn.Sequential(nn.ConvTranspose2d(c, uc, u, stride=u, bias=False),
                                               nn.BatchNorm2d(uc, eps=1e-3, momentum=0.01), nn.ReLU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, dim=1)


class AnchorHeadSingle(nn.Module):
    def __init__(self, cfg: pp.Config, in_channels: int) -> None:
        super().__init__()
        a, self.num_class = cfg.anchors_per_location, cfg.num_classes
        self.anchors = torch.from_numpy(pp.make_anchors(cfg))  # a plain attribute, as in OpenPCDet
        self.conv_cls = nn.Conv2d(in_channels, a * self.num_class, 1)
        self.conv_box = nn.Conv2d(in_channels, a * 7, 1)
        self.conv_dir_cls = nn.Conv2d(in_channels, a * cfg.num_dir_bins, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n = x.shape[0], self.anchors.shape[0]
        cls_preds = self.conv_cls(x).permute(0, 2, 3, 1).contiguous().view(b, n, -1)
        box_preds = self.conv_box(x).permute(0, 2, 3, 1).contiguous().view(b, n, -1)
        dir_preds = self.conv_dir_cls(x).permute(0, 2, 3, 1).contiguous().view(b, n, -1)
        xa, ya, za, dxa, dya, dza, ra = torch.split(self.anchors, 1, dim=-1)  # ResidualCoder.decode_torch
        xt, yt, zt, dxt, dyt, dzt, rt = torch.split(box_preds, 1, dim=-1)
        diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
        boxes = torch.cat([xt * diagonal + xa, yt * diagonal + ya, zt * dza + za, torch.exp(dxt) * dxa,
                           torch.exp(dyt) * dya, torch.exp(dzt) * dza, rt + ra], dim=-1)
        return cls_preds, boxes, dir_preds


def limit_period(val: torch.Tensor, offset: float = 0.5, period: float = math.pi) -> torch.Tensor:
    return val - torch.floor(val / period + offset) * period


class PostProcessing(nn.Module):
    """OpenPCDet's post_processing (class-agnostic nms_normal: torchvision.ops.nms on BEV boxes),
    padded to max_detections rows per sample; the direction fix on the kept boxes."""

    def __init__(self, cfg: pp.Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, preds: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        cls_preds, box_preds, dir_preds = preds
        cfg, d = self.cfg, self.cfg.max_detections
        b = cls_preds.shape[0]
        boxes, scores = box_preds.new_zeros(b, d, 7), box_preds.new_zeros(b, d)
        labels, count = torch.zeros(b, d, dtype=torch.int64), torch.zeros(b, dtype=torch.int64)
        period = 2 * math.pi / cfg.num_dir_bins
        for i in range(b):
            score, label = torch.max(torch.sigmoid(cls_preds[i]), dim=-1)
            keep = torch.nonzero(score >= cfg.score_thresh).view(-1)
            # OpenPCDet's topk(NMS_PRE_MAXSIZE), as a stable sort: equal scores keep anchor order
            keep = keep[score[keep].sort(descending=True, stable=True).indices[:cfg.nms_pre_max_size]]
            ops = _vision_ops()
            bev = ops.box_convert(box_preds[i, keep][:, [0, 1, 3, 4]], "cxcywh", "xyxy")
            keep = keep[ops.nms(bev, score[keep], cfg.nms_thresh)][:d]
            box = box_preds[i, keep].clone()
            dir_label = torch.max(dir_preds[i, keep], dim=-1)[1]
            rot = limit_period(box[:, 6] - cfg.dir_offset, cfg.dir_limit_offset, period)
            box[:, 6] = rot + cfg.dir_offset + period * dir_label.to(box.dtype)
            n = len(keep)
            boxes[i, :n], scores[i, :n], labels[i, :n], count[i] = box, score[keep], label[keep] + 1, n
        return boxes, scores, labels, count


class PointPillar(nn.Module):
    def __init__(self, cfg: pp.Config = pp.Config()) -> None:
        super().__init__()
        self.vfe = PillarVFE(cfg)
        self.map_to_bev_module = PointPillarScatter(cfg)
        self.backbone_2d = BaseBEVBackbone(cfg, cfg.vfe_filters[-1])
        self.dense_head = AnchorHeadSingle(cfg, sum(cfg.num_upsample_filters))
        self.post_processing = PostProcessing(cfg)

    def forward(self, voxels: torch.Tensor, voxel_num_points: torch.Tensor,
                voxel_coords: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pillars = self.vfe(voxels, voxel_num_points, voxel_coords)
        bev = self.map_to_bev_module(pillars, voxel_num_points, voxel_coords)
        return self.post_processing(self.dense_head(self.backbone_2d(bev)))


def calibrate_scores(model: PointPillar, inputs: tuple, candidates: float = 8.0, heading_gain: float = 0.2,
                     direction_gain: float = 4.0) -> PointPillar:
    """Make a randomly initialised PointPillars detect, as `calibrate_objectness` does for YOLOv5:
    shift the class biases so that about `candidates` anchors per sample score above score_thresh
    (midway between two anchors' crossing points), scale the heading residuals down to a trained
    head's range (|residual| well under pi/4, the rotation anchors being pi/2 apart) and the
    direction logits up (a decisive direction). In place; returns the model."""
    head, cfg = model.dense_head, model.post_processing.cfg
    a = cfg.anchors_per_location
    with torch.no_grad():
        head.conv_box.weight.view(a, 7, -1)[:, 6] *= heading_gain
        head.conv_box.bias.view(a, 7)[:, 6] *= heading_gain
        head.conv_dir_cls.weight.mul_(direction_gain)
        head.conv_dir_cls.bias.mul_(direction_gain)
        seen: list = []
        hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out[0]))
        try:
            model(*inputs)
        finally:
            hook.remove()
        best = seen[0].amax(-1).flatten().double()  # best class logit of every anchor
        steps = (math.log(cfg.score_thresh / (1 - cfg.score_thresh)) - best).sort().values
        k = int(round(candidates * inputs[0].shape[0]))
        lo, hi = max(k - k // 3, 1), min(k + k // 3 + 1, len(steps) - 1)
        gaps = steps[lo:hi + 1] - steps[lo - 1:hi]
        i = lo - 1 + int(gaps.argmax())
        head.conv_cls.bias += float(steps[i] + steps[i + 1]) / 2
    return model
