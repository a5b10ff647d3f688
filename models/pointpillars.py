"""PointPillars (Lang et al. 2019) as OpenPCDet builds it, end to end inside the engine.

Module paths follow OpenPCDet's (vfe.pfn_layers.0.linear, map_to_bev_module,
backbone_2d.blocks.0.1, backbone_2d.deblocks.0.0, dense_head.conv_cls/conv_box/conv_dir_cls),
so an OpenPCDet PointPillar state_dict of the same configuration loads unchanged. The torch
original lives in `netdef.models.originals`; both take their anchors from `make_anchors` here.

Inputs are OpenPCDet's voxels, padded per sample so the batch and the pillar count are plain
(dynamic) dimensions: voxels [B, P, M, 4] (x, y, z, intensity), voxel_num_points [B, P]
(0 marks a padding pillar) and voxel_coords [B, P, 3] (z, y, x cell; OpenPCDet's voxel_coords
without the batch column). Differences from OpenPCDet, each for the engine's sake:
* NMS is OpenPCDet's class-agnostic `nms_normal` (axis-aligned BEV boxes); TensorRT's NMS layer
  has no rotated boxes (OpenPCDet's default `nms_gpu`).
* The direction classifier's heading fix (limit_period + dir label) is applied to the kept
  boxes only, after NMS, which never reads the heading; the final boxes are the same.
* A padding pillar divides its (empty) point sum by 1, not 0, and writes into a spare canvas cell.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from netdef import functional as F
from netdef import nn, ops


class Config(NamedTuple):
    """OpenPCDet's pointpillar.yaml fields that shape the network (KITTI's values, scaled down)."""

    point_cloud_range: tuple = (0.0, -10.24, -3.0, 20.48, 10.24, 1.0)
    voxel_size: tuple = (0.32, 0.32, 4.0)
    max_points: int = 16  # MAX_POINTS_PER_VOXEL
    vfe_filters: tuple = (32,)  # NUM_FILTERS of the pillar feature net
    layer_nums: tuple = (1, 1, 1)
    layer_strides: tuple = (2, 2, 2)
    num_filters: tuple = (32, 64, 128)
    upsample_strides: tuple = (1, 2, 4)
    num_upsample_filters: tuple = (64, 64, 64)
    # per class: (size (dx, dy, dz), bottom height); rotations 0 and pi/2 for all (KITTI's anchors)
    anchors: tuple = (((3.9, 1.6, 1.56), -1.78), ((0.8, 0.6, 1.73), -0.6), ((1.76, 0.6, 1.73), -0.6))
    rotations: tuple = (0.0, 1.57)
    feature_map_stride: int = 2
    dir_offset: float = 0.78539
    dir_limit_offset: float = 0.0
    num_dir_bins: int = 2
    score_thresh: float = 0.1
    nms_thresh: float = 0.01
    nms_pre_max_size: int = 4096
    max_detections: int = 500  # NMS_POST_MAXSIZE

    @property
    def grid_size(self) -> tuple[int, int]:
        """(nx, ny) BEV cells."""
        r, v = self.point_cloud_range, self.voxel_size
        return round((r[3] - r[0]) / v[0]), round((r[4] - r[1]) / v[1])

    @property
    def num_classes(self) -> int:
        return len(self.anchors)

    @property
    def anchors_per_location(self) -> int:
        return len(self.anchors) * len(self.rotations)


def make_anchors(cfg: Config) -> np.ndarray:
    """[ny_f·nx_f·A, 7] anchors (x, y, z, dx, dy, dz, heading) in OpenPCDet's order: feature row y,
    column x, then class, then rotation. OpenPCDet's AnchorGenerator (align_center False): centres
    span the range end to end in (n − 1) steps; z is the bottom height raised by half the height."""
    r = cfg.point_cloud_range
    nx, ny = (g // cfg.feature_map_stride for g in cfg.grid_size)
    xs = np.linspace(r[0], r[3], nx, dtype=np.float32)
    ys = np.linspace(r[1], r[4], ny, dtype=np.float32)
    per_class = []
    for size, bottom in cfg.anchors:
        a = np.zeros((ny, nx, len(cfg.rotations), 7), np.float32)
        a[..., 0] = xs[None, :, None]
        a[..., 1] = ys[:, None, None]
        a[..., 2] = bottom + size[2] / 2
        a[..., 3:6] = size
        a[..., 6] = np.asarray(cfg.rotations, np.float32)
        per_class.append(a)
    return np.stack(per_class, 2).reshape(-1, 7)


class PFNLayer(nn.Module):
    """Linear + BatchNorm1d + ReLU over every point, then the max over a pillar's points."""

    def __init__(self, in_channels: int, out_channels: int, last_layer: bool = True) -> None:
        super().__init__()
        self.last_vfe = last_layer
        out = out_channels if last_layer else out_channels // 2
        self.linear = nn.Linear(in_channels, out, bias=False)
        self.norm = nn.BatchNorm1d(out, eps=1e-3, momentum=0.01)

    def forward(self, inputs: Any) -> Any:
        x = self.linear(inputs)
        x = F.relu(self.norm(x.permute(0, 2, 1)).permute(0, 2, 1))
        x_max = F.amax(x, 1, keepdim=True)
        if self.last_vfe:
            return x_max
        return F.cat([x, x_max.expand(-1, inputs.shape[1], -1)], 2)


class PillarVFE(nn.Module):
    """Pillar feature net: each point as (x, y, z, r, offsets from the pillar's mean and centre)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.voxel_size, self.pc_range = cfg.voxel_size, cfg.point_cloud_range
        filters = [10, *cfg.vfe_filters]
        self.pfn_layers = nn.ModuleList(PFNLayer(filters[i], filters[i + 1], i == len(filters) - 2)
                                        for i in range(len(filters) - 1))

    def forward(self, voxels: Any, num_points: Any, coords: Any) -> Any:
        b, p, m = voxels.size(0), voxels.size(1), voxels.shape[2]
        x = voxels.reshape(-1, m, 4)  # [B·P, M, 4]
        count = F.clamp(num_points.reshape(-1, 1, 1), min=1).to(x)
        xyz = x[..., :3]
        f_cluster = xyz - F.sum(xyz, 1, keepdim=True) / count
        vx, vy, vz = self.voxel_size
        offset = np.asarray([vx / 2 + self.pc_range[0], vy / 2 + self.pc_range[1], vz / 2 + self.pc_range[2]],
                            np.float32)
        cell = coords.reshape(-1, 1, 3).to(x)  # (z, y, x)
        centre = F.cat([cell[..., 2:3], cell[..., 1:2], cell[..., 0:1]], 2) * np.asarray([vx, vy, vz], np.float32)
        f_center = xyz - (centre + offset)
        features = F.cat([x, f_cluster, f_center], 2)
        mask = F.lt(F.arange(m, dtype="int32").reshape(1, m, 1), num_points.reshape(-1, 1, 1).to("int32"))
        features = features * mask.to(features)
        for pfn in self.pfn_layers:
            features = pfn(features)
        return features.reshape(b, p, features.shape[-1])  # [B, P, C]


class PointPillarScatter(nn.Module):
    """Each pillar's features into its (y, x) cell of a zero BEV canvas: one scatter layer."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.nx, self.ny = cfg.grid_size
        self.num_bev_features = cfg.vfe_filters[-1]

    def forward(self, pillars: Any, num_points: Any, coords: Any) -> Any:
        c, cells = self.num_bev_features, self.ny * self.nx
        images = F.cast(F.shape_of(pillars, 0), "int32")  # 0-d: the batch may be dynamic
        coords = coords.to("int32")
        index = F.arange(images, dtype="int32").reshape(-1, 1) * cells \
            + coords[..., 0] + coords[..., 1] * self.nx + coords[..., 2]  # [B, P]: OpenPCDet's z + y*nx + x
        spare = images * cells  # one cell past the canvas takes every padding pillar
        index = F.where(F.gt(num_points, 0), index, spare)
        zeros = F.constant(np.zeros((1, c), np.float32), pillars.dtype, op="canvas")
        canvas = F.scatter_nd(F.expand(zeros, spare + 1, c), index.reshape(-1, 1), pillars.reshape(-1, c))
        return canvas[:-1].reshape(-1, self.ny, self.nx, c).permute(0, 3, 1, 2)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class BaseBEVBackbone(nn.Module):
    """Blocks of 3x3 convolutions at decreasing resolution; each block's output upsampled by a
    deconvolution (the neck) to the first block's resolution and concatenated."""

    def __init__(self, cfg: Config, in_channels: int) -> None:
        super().__init__()
        c_in = [in_channels, *cfg.num_filters[:-1]]
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        for i, (n, s, c) in enumerate(zip(cfg.layer_nums, cfg.layer_strides, cfg.num_filters)):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in[i], c, 3, stride=s, padding=0, bias=False), _bn(c), nn.ReLU()]
            for _ in range(n):
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            u, uc = cfg.upsample_strides[i], cfg.num_upsample_filters[i]
            self.deblocks.append(nn.Sequential(nn.ConvTranspose2d(c, uc, u, stride=u, bias=False), _bn(uc), nn.ReLU()))

    def forward(self, x: Any) -> Any:
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return F.cat(ups, 1)


def decode_boxes(box_preds: Any, anchors: np.ndarray) -> Any:
    """OpenPCDet's ResidualCoder.decode_torch: centre offsets in units of the anchor's BEV diagonal
    (z in its height), log size ratios, heading residual added to the anchor's."""
    xa, ya, za, dxa, dya, dza, ra = (anchors[:, i:i + 1] for i in range(7))
    diagonal = np.sqrt(dxa ** 2 + dya ** 2)
    xt, yt, zt, dxt, dyt, dzt, rt = F.split(box_preds, 1, -1)
    return F.cat([xt * diagonal + xa, yt * diagonal + ya, zt * dza + za,
                  F.exp(dxt) * dxa, F.exp(dyt) * dya, F.exp(dzt) * dza, rt + ra], -1)


class AnchorHeadSingle(nn.Module):
    """SSD-style head: per anchor class logits, box residuals and direction logits (1x1 convs),
    boxes decoded against the anchors. Returns (cls_preds [B, N, classes], box_preds [B, N, 7],
    dir_cls_preds [B, N, 2]); the heading's direction fix waits for the kept boxes (module doc)."""

    def __init__(self, cfg: Config, in_channels: int) -> None:
        super().__init__()
        a, nc = cfg.anchors_per_location, cfg.num_classes
        self.num_class = nc
        self.register_buffer("anchors", make_anchors(cfg), persistent=False)
        self.conv_cls = nn.Conv2d(in_channels, a * nc, 1)
        self.conv_box = nn.Conv2d(in_channels, a * 7, 1)
        self.conv_dir_cls = nn.Conv2d(in_channels, a * cfg.num_dir_bins, 1)

    def forward(self, x: Any) -> tuple[Any, Any, Any]:
        n = self.anchors.shape[0]
        cls_preds = self.conv_cls(x).permute(0, 2, 3, 1).reshape(-1, n, self.num_class)
        box_preds = self.conv_box(x).permute(0, 2, 3, 1).reshape(-1, n, 7)
        dir_preds = self.conv_dir_cls(x).permute(0, 2, 3, 1).reshape(-1, n, 2)
        return cls_preds, decode_boxes(box_preds, self.anchors), dir_preds


class PostProcessing(nn.Module):
    """OpenPCDet's post_processing with class-agnostic nms_normal and a fixed-size output.

    score = max sigmoid class score, label = its class + 1; boxes scoring >= score_thresh,
    at most nms_pre_max_size of them, BEV NMS at nms_thresh, max_detections kept. Then the
    direction fix of the heading. Returns (boxes [B, D, 7], scores [B, D], labels [B, D] int64
    with 0 for an empty row, count [B] int64).
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.score_thresh, self.nms_thresh = cfg.score_thresh, cfg.nms_thresh
        self.pre_max, self.max_det = cfg.nms_pre_max_size, cfg.max_detections
        self.dir_offset, self.dir_limit_offset = cfg.dir_offset, cfg.dir_limit_offset
        self.period = 2 * math.pi / cfg.num_dir_bins

    def forward(self, preds: tuple[Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        cls_preds, box_preds, dir_preds = preds
        probs = F.sigmoid(cls_preds)
        score = F.amax(probs, -1, keepdim=True)
        label = F.argmax(probs, -1, keepdim=True).to(box_preds) + 1.0
        dir_label = F.gt(dir_preds[..., 1:2], dir_preds[..., 0:1]).to(box_preds)
        bev = F.cat([box_preds[..., 0:2], box_preds[..., 3:5]], -1)  # (x, y, dx, dy)
        # OpenPCDet keeps score >= thresh; for a float32 score that is score > the float32 below it
        at_least = float(np.nextafter(np.float32(self.score_thresh), np.float32(-np.inf)))
        data = F.cat([box_preds, label, dir_label], -1)
        boxes, scores, _, count = ops.multiclass_nms(bev, score, self.nms_thresh, at_least, self.max_det,
                                                     box_format="cxcywh", box_data=data,
                                                     topk_box_limit=self.pre_max)
        heading = boxes[..., 6:7]
        rot = heading - self.dir_offset
        rot = rot - F.floor(rot / self.period + self.dir_limit_offset) * self.period
        heading = rot + self.dir_offset + self.period * boxes[..., 8:9]
        valid = F.lt(F.arange(self.max_det, dtype="int64").reshape(1, -1), count.reshape(-1, 1))
        heading = F.where(valid.reshape(-1, self.max_det, 1), heading, 0.0)
        return F.cat([boxes[..., :6], heading], -1), scores, boxes[..., 7].to("int64"), count


class PointPillar(nn.Module):
    """The whole detector: forward(voxels, voxel_num_points, voxel_coords) -> (boxes, scores, labels, count)."""

    def __init__(self, cfg: Config = Config()) -> None:
        super().__init__()
        self.cfg = cfg
        self.vfe = PillarVFE(cfg)
        self.map_to_bev_module = PointPillarScatter(cfg)
        self.backbone_2d = BaseBEVBackbone(cfg, cfg.vfe_filters[-1])
        self.dense_head = AnchorHeadSingle(cfg, sum(cfg.num_upsample_filters))
        self.post_processing = PostProcessing(cfg)

    def forward(self, voxels: Any, voxel_num_points: Any, voxel_coords: Any) -> tuple[Any, Any, Any, Any]:
        pillars = self.vfe(voxels, voxel_num_points, voxel_coords)
        bev = self.map_to_bev_module(pillars, voxel_num_points, voxel_coords)
        return self.post_processing(self.dense_head(self.backbone_2d(bev)))


# ---- a synthetic point cloud ---------------------------------------------------------------------
def synthetic_scene(cfg: Config, seed: int, objects: int = 6, ground_points: int = 1500,
                    object_points: int = 150) -> np.ndarray:
    """A reproducible LiDAR-like cloud [N, 4] (x, y, z, intensity) inside the range: a flat ground
    at z = -1.7 with noise, and `objects` car-sized cuboids (3.9 x 1.6 x 1.56 m, random position and
    heading) whose surface points are denser towards the sensor at the origin."""
    rng = np.random.default_rng(seed)
    r = cfg.point_cloud_range
    ground = np.stack([rng.uniform(r[0], r[3], ground_points), rng.uniform(r[1], r[4], ground_points),
                       -1.7 + rng.normal(0, 0.03, ground_points), rng.uniform(0, 0.3, ground_points)], 1)
    parts = [ground]
    for _ in range(objects):
        cx, cy = rng.uniform(r[0] + 3, r[3] - 3), rng.uniform(r[1] + 3, r[4] - 3)
        yaw = rng.uniform(-math.pi, math.pi)
        local = rng.uniform(-0.5, 0.5, (object_points, 3)) * np.array([3.9, 1.6, 1.56])
        face = rng.integers(0, 3, object_points)  # push each point onto a face: a hollow shell
        local[np.arange(object_points), face] = np.sign(local[np.arange(object_points), face]) \
            * np.array([3.9, 1.6, 1.56])[face] / 2
        c, s = math.cos(yaw), math.sin(yaw)
        x = cx + c * local[:, 0] - s * local[:, 1]
        y = cy + s * local[:, 0] + c * local[:, 1]
        z = -1.7 + 0.78 + local[:, 2]
        parts.append(np.stack([x, y, z, rng.uniform(0.2, 1.0, object_points)], 1))
    points = np.concatenate(parts).astype(np.float32)
    keep = (points[:, 0] >= r[0]) & (points[:, 0] < r[3]) & (points[:, 1] >= r[1]) & (points[:, 1] < r[4])
    return points[keep]


def voxelize(clouds: Sequence[np.ndarray], cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point clouds -> (voxels [B, P, M, 4] float32, voxel_num_points [B, P] int32, voxel_coords
    [B, P, 3] int32 (z, y, x)): OpenPCDet's pillar voxelization (points kept in input order, at most
    M per pillar), padded to the largest pillar count P in the batch."""
    r, v = cfg.point_cloud_range, cfg.voxel_size
    nx, _ = cfg.grid_size
    per = []
    for pts in clouds:
        ix = np.floor((pts[:, 0] - r[0]) / v[0]).astype(np.int64)
        iy = np.floor((pts[:, 1] - r[1]) / v[1]).astype(np.int64)
        cell = iy * nx + ix
        order = np.argsort(cell, kind="stable")
        cells, start, counts = np.unique(cell[order], return_index=True, return_counts=True)
        vox = np.zeros((len(cells), cfg.max_points, 4), np.float32)
        num = np.minimum(counts, cfg.max_points).astype(np.int32)
        for j, (s, n) in enumerate(zip(start, num)):
            vox[j, :n] = pts[order[s:s + n]]
        coords = np.stack([np.zeros_like(cells), cells // nx, cells % nx], 1).astype(np.int32)
        per.append((vox, num, coords))
    p = max(len(n) for _, n, _ in per)
    voxels = np.zeros((len(per), p, cfg.max_points, 4), np.float32)
    num_points = np.zeros((len(per), p), np.int32)
    coords = np.zeros((len(per), p, 3), np.int32)
    for i, (vox, num, crd) in enumerate(per):
        voxels[i, :len(num)], num_points[i, :len(num)], coords[i, :len(num)] = vox, num, crd
    return voxels, num_points, coords


__all__ = ["AnchorHeadSingle", "BaseBEVBackbone", "Config", "PFNLayer", "PillarVFE", "PointPillar",
           "PointPillarScatter", "PostProcessing", "decode_boxes", "make_anchors", "synthetic_scene", "voxelize"]
