"""Decision margins of a detector's post-processing, so float16 checks use well-conditioned inputs.

Final detections are a discontinuous function of the scores and boxes: a score at the
confidence threshold, two candidates of (almost) equal score, a best class tied with the
second, or an IoU at the NMS threshold can each flip under float16 rounding. A float16 test
of final detections is meaningful only where these margins exceed the drift; `margins`
measures them on the float32 torch original, and the tests assert them before comparing.
"""
from __future__ import annotations

import torch
import torchvision


def margins(scores: torch.Tensor, boxes: torch.Tensor, conf: float, iou: float,
            class_aware: bool = True) -> dict[str, float]:
    """scores [B, N, C] (the score of every class), boxes [B, N, 4] xyxy, as NMS sees them.

    conf: min |best score - conf| over every box; order: min score gap between two candidates of
    one image; label: min gap between a candidate's best and second-best class score; iou: min
    |IoU - iou| over candidate pairs that NMS compares (same class when class_aware).
    """
    top = scores.topk(min(2, scores.shape[-1]), -1).values
    best = top[..., 0]
    out = {"conf": float((best - conf).abs().min()), "order": 1.0, "label": 1.0, "iou": 1.0, "candidates": 0.0}
    for i in range(scores.shape[0]):
        cand = best[i] > conf
        out["candidates"] += float(cand.sum())
        if not cand.any():
            continue
        if top.shape[-1] > 1:
            out["label"] = min(out["label"], float((top[i, cand, 0] - top[i, cand, 1]).min()))
        s = best[i, cand].sort().values
        if len(s) > 1:
            out["order"] = min(out["order"], float((s[1:] - s[:-1]).min()))
            b = boxes[i, cand]
            pairs = ~torch.eye(len(b), dtype=torch.bool)
            if class_aware:
                label = scores[i, cand].argmax(-1)
                pairs &= label[:, None] == label[None]
            if pairs.any():
                out["iou"] = min(out["iou"], float((torchvision.ops.box_iou(b, b)[pairs] - iou).abs().min()))
    return out
