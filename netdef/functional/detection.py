"""Non-maximum suppression on TensorRT's own NMS layer (INMSLayer): no plugin.

`non_max_suppression` is the layer itself, in ONNX NonMaxSuppression's terms (batch, classes,
selected (batch, class, box) rows). torchvision.ops' nms/batched_nms and the fixed-size
detector output are built on it in netdef.ops. Semantics: docs/detection.md.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import network
from netdef.functional._core import cast, constant, out, shape_tensor, trt
from netdef.tensor import Tensor

BOX_FORMATS = {"xyxy": "CORNER_PAIRS", "cxcywh": "CENTER_SIZES"}
TOPK_LIMIT = 5000  # the most candidates INMSLayer considers per batch item (2000 on SM 5.3/6.2)


def float32_below(value: float) -> np.float32:
    """The largest float32 <= `value`: for a float32 x, `x > value` and `x > float32_below(value)`
    agree (torchvision compares a float32 IoU with the double threshold; TensorRT's is float32)."""
    f = np.float32(value)
    return np.nextafter(f, np.float32(-np.inf)) if float(f) > value else f


def _threshold(value: Any, what: str, lo: float | None = None, hi: float | None = None) -> Tensor:
    net = network.current()
    if isinstance(value, Tensor):
        if value.ndim != 0:
            net.fail(f"non_max_suppression: {what} must be a 0-d tensor, got shape {value.shape}")
        return cast(value, "float32")
    value = float(value)
    if math.isnan(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        net.fail(f"non_max_suppression: {what} must be in [{lo}, {hi}], got {value}")
    return constant(np.array(float32_below(value)), "float32", op=what)


def non_max_suppression(boxes: Tensor, scores: Tensor, max_output_boxes_per_class: Any,
                        iou_threshold: Any = 0.0, score_threshold: Any = 0.0, box_format: str = "xyxy",
                        topk_box_limit: int | None = None) -> tuple[Tensor, Tensor]:
    """TensorRT's NMS layer, per batch item and per class.

    boxes: [B, N, 4] (shared by every class) or [B, N, C, 4]; scores: [B, N, C].
    A candidate is a (box, class) pair whose score is strictly greater than `score_threshold`;
    per batch item the candidates are sorted by decreasing score (across classes) and at most
    `topk_box_limit` of them are considered; per class a candidate is kept when its IoU with every
    box kept before it is <= `iou_threshold`, until `max_output_boxes_per_class` are kept.
    box_format "xyxy" is any pair of diagonal corners, "cxcywh" centre and size.

    Returns (selected, count): selected is int32 [K, 3] rows (batch, class, box) in increasing
    batch and, within a batch item, decreasing score; K is data-dependent (count = K, int32 0-d).
    Python thresholds are rounded down to float32, so `iou > threshold` means the same as in float64.
    """
    net = network.current()
    for name, t, ranks in (("boxes", boxes, (3, 4)), ("scores", scores, (3,))):
        if not isinstance(t, Tensor) or t.ndim not in ranks:
            net.fail(f"non_max_suppression: {name} must be a Tensor of rank {' or '.join(map(str, ranks))}, "
                     f"got {getattr(t, 'shape', t)!r}")
        if t.dtype not in ("float32", "float16"):
            net.fail(f"non_max_suppression: {name} must be float32 or float16 (TensorRT's NMS), got {t.dtype}")
    if box_format not in BOX_FORMATS:
        net.fail(f"non_max_suppression: box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    if boxes.shape[-1] not in (4, -1):
        net.fail(f"non_max_suppression: boxes need 4 coordinates in the last dimension, got shape {boxes.shape}")
    if boxes.dtype != scores.dtype:
        scores = cast(scores, boxes.dtype)
    limit = TOPK_LIMIT if topk_box_limit is None else int(topk_box_limit)
    if not 1 <= limit <= TOPK_LIMIT:
        net.fail(f"non_max_suppression: topk_box_limit must be in [1, {TOPK_LIMIT}], got {topk_box_limit}")
    if isinstance(max_output_boxes_per_class, Tensor):
        most = shape_tensor([max_output_boxes_per_class])  # 1-element int64
        layer = net.network.add_shuffle(cast(most, "int32").trt)
        layer.reshape_dims = ()
        most = out(layer, "max_output_boxes")
    else:
        if int(max_output_boxes_per_class) < 0:
            net.fail(f"non_max_suppression: max_output_boxes_per_class must be >= 0, got {max_output_boxes_per_class}")
        most = constant(np.array(int(max_output_boxes_per_class), np.int32), op="max_output_boxes")
    iou = _threshold(iou_threshold, "iou_threshold", 0.0, 1.0)
    score = _threshold(score_threshold, "score_threshold")
    layer = net.network.add_nms(boxes.trt, scores.trt, most.trt)
    if layer is not None:
        layer.set_input(3, iou.trt)
        layer.set_input(4, score.trt)
        layer.bounding_box_format = getattr(trt().BoundingBoxFormat, BOX_FORMATS[box_format])
        layer.topk_box_limit = limit
    net.add(layer, "nms")
    return Tensor(layer.get_output(0)), Tensor(layer.get_output(1))


__all__ = ["non_max_suppression"]
