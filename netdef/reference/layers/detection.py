"""Reference semantics: non-maximum suppression (INMSLayer).

From TensorRT's NMS operator page and the INMSLayer docstring (tensorrt_rtx 1.7), checked on
ONNX's NonMaxSuppression node tests through NVIDIA's parser and against torchvision.ops.nms:

* a candidate is a (box, class) pair with score > ScoreThreshold (strict; default 0);
* per batch item the candidates are sorted by decreasing score regardless of class, and only
  the first `topk_box_limit` are considered;
* per class, a candidate is selected when its IoU with every box selected before it is
  <= IoUThreshold (default 0), until MaxOutputBoxesPerClass are selected;
* SelectedIndices rows are (batch, class, box), batch ascending, then decreasing score.

What TensorRT leaves unspecified, decided here (docs/detection.md): equal scores keep box order
(then class order), as torchvision's stable sort does; IoU is torchvision's float arithmetic
(inter / (area_a + area_b - inter)), so a box of zero area never suppresses another (0/0 is
no IoU above any threshold).
"""
from __future__ import annotations

import torch

from netdef.reference.registry import register


def _corners(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    """(x1, y1, x2, y2) with x1 <= x2, y1 <= y2, from either TensorRT box format."""
    a, b, c, d = boxes.unbind(-1)
    if fmt == "CENTER_SIZES":  # (xc, yc, w, h), as ONNX's center_point_box=1
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    return torch.stack((torch.minimum(a, c), torch.minimum(b, d), torch.maximum(a, c), torch.maximum(b, d)), -1)


def _iou(one: torch.Tensor, one_area: torch.Tensor, rest: torch.Tensor, rest_area: torch.Tensor) -> torch.Tensor:
    """IoU of one box per batch item ([B, 4]) with others ([B, M, 4]); torchvision's arithmetic."""
    lo = torch.maximum(one[:, None, :2], rest[..., :2])
    hi = torch.minimum(one[:, None, 2:], rest[..., 2:])
    wh = (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (one_area[:, None] + rest_area - inter)


@register("NMS")
def nms(layer, ctx):
    fmt, limit = layer.bounding_box_format.name, layer.topk_box_limit

    def fn(boxes, scores, max_out, iou_threshold=None, score_threshold=None):
        b, n, c = scores.shape
        most = max(int(max_out.reshape(-1)[0]), 0)
        iou_t = 0.0 if iou_threshold is None else iou_threshold.reshape(())
        score_t = 0.0 if score_threshold is None else score_threshold.reshape(())
        flat = scores.reshape(b, n * c)
        valid = flat > score_t  # NaN scores are never candidates
        key = torch.where(valid, flat, torch.full_like(flat, -torch.inf))
        order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :min(limit, n * c)]
        candidate = valid.gather(1, order)  # valid candidates first, in score order
        alive = candidate.clone()  # not suppressed so far
        box, cls = order // c, order % c
        corners = _corners(boxes, fmt)
        if corners.dim() == 4:  # per-class boxes [B, N, C, 4]
            cand = corners.reshape(b, n * c, 4).gather(1, order[..., None].expand(-1, -1, 4))
        else:
            cand = corners.gather(1, box[..., None].expand(-1, -1, 4))
        area = (cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1])
        keep = torch.zeros_like(alive)
        kept = torch.zeros((b, c), dtype=torch.int64, device=scores.device)
        for i in range(order.shape[1]):
            if not candidate[:, i].any():
                break  # no batch item has a candidate left
            ci = cls[:, i]
            ok = alive[:, i] & (kept.gather(1, ci[:, None])[:, 0] < most)
            keep[:, i] = ok
            kept.scatter_add_(1, ci[:, None], ok[:, None].long())
            over = _iou(cand[:, i], area[:, i], cand[:, i + 1:], area[:, i + 1:]) > iou_t
            alive[:, i + 1:] &= ~(ok[:, None] & (cls[:, i + 1:] == ci[:, None]) & over)
        bi, pos = torch.nonzero(keep, as_tuple=True)  # row-major: batch, then score order
        selected = torch.stack((bi, cls[bi, pos], box[bi, pos]), 1)
        return selected, torch.tensor(selected.shape[0], dtype=torch.int32, device=scores.device)
    return fn
