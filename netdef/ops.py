"""torchvision.ops for TensorRT networks: box utilities and NMS inside the engine, without plugins.

Same names, signatures and results as torchvision.ops (`nms`, `batched_nms`, `box_convert`,
`box_iou`, `box_area`, `clip_boxes_to_image`, `remove_small_boxes`), built on TensorRT's NMS,
TopK, gather and scatter layers; NMS is TensorRT's NMS layer or, where the backend cannot build
it (TensorRT-RTX), a loop with the same results (`F.emission(nms="layer" | "loop")`). `nms`, `batched_nms` and `remove_small_boxes` return
data-dependent lengths, as torchvision does; `multiclass_nms` is the detector form with a
fixed-size output (max_detections per image and a valid count), which needs no output
allocator. What each guarantees and where TensorRT differs from torchvision: docs/detection.md.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef import dtypes, network
from netdef import functional as F
from netdef.functional.detection import TOPK_LIMIT, nms_slots, non_max_suppression
from netdef.tensor import Tensor

_FORMATS = ("xyxy", "xywh", "cxcywh")


def _fail(msg: str) -> None:
    network.current().fail(msg)


def _check_boxes(boxes: Any, op: str, rank: int | None = 2) -> None:
    if not isinstance(boxes, Tensor):
        _fail(f"{op}: boxes must be a netdef Tensor, got {type(boxes).__name__}")
    if (rank is not None and boxes.ndim != rank) or boxes.shape[-1] not in (4, -1):
        want = "[N, 4]" if rank == 2 else "[..., 4]"
        _fail(f"{op}: boxes must have shape {want}, got {boxes.shape}")
    if not dtypes.is_floating(boxes.dtype):
        _fail(f"{op}: boxes must be floating point, got {boxes.dtype}")


def _column(x: Tensor, j: int) -> Tensor:
    """x[:, j] of a 2-D tensor as a gather (safe on a data-dependent first dimension)."""
    return F.reshape(F.index_select(x, 1, np.array([j], np.int32)), -1)


# ---- box utilities -------------------------------------------------------------------------------
def box_area(boxes: Tensor) -> Tensor:
    """torchvision.ops.box_area: (x2 - x1) * (y2 - y1) of [..., 4] xyxy boxes."""
    _check_boxes(boxes, "box_area", None)
    return F.mul(F.sub(boxes[..., 2], boxes[..., 0]), F.sub(boxes[..., 3], boxes[..., 1]))


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """torchvision.ops.box_iou: the [N, M] IoU matrix of two sets of xyxy boxes."""
    _check_boxes(boxes1, "box_iou")
    _check_boxes(boxes2, "box_iou")
    a = F.unsqueeze(boxes1, 1)  # [N, 1, 4]
    b = F.unsqueeze(boxes2, 0)  # [1, M, 4]
    lt = F.maximum(a[..., :2], b[..., :2])
    rb = F.minimum(a[..., 2:], b[..., 2:])
    wh = F.clamp(F.sub(rb, lt), min=0)
    inter = F.mul(wh[..., 0], wh[..., 1])
    area1 = F.unsqueeze(box_area(boxes1), 1)
    area2 = F.unsqueeze(box_area(boxes2), 0)
    return F.div(inter, F.sub(F.add(area1, area2), inter))


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """torchvision.ops.box_convert between 'xyxy', 'xywh' (corner + size) and 'cxcywh' (centre + size)."""
    for fmt in (in_fmt, out_fmt):
        if fmt not in _FORMATS:
            _fail(f"box_convert: unsupported box format {fmt!r}; use one of {', '.join(_FORMATS)}")
    _check_boxes(boxes, "box_convert", None)
    if in_fmt == out_fmt:
        return F.identity(boxes)
    a, b, c, d = F.split(boxes, 1, -1)
    if in_fmt == "xywh":  # to xyxy
        a, b, c, d = a, b, F.add(a, c), F.add(b, d)
    elif in_fmt == "cxcywh":
        a, b, c, d = F.sub(a, F.mul(c, 0.5)), F.sub(b, F.mul(d, 0.5)), F.add(a, F.mul(c, 0.5)), F.add(b, F.mul(d, 0.5))
    if out_fmt == "xywh":
        a, b, c, d = a, b, F.sub(c, a), F.sub(d, b)
    elif out_fmt == "cxcywh":
        a, b, c, d = F.div(F.add(a, c), 2), F.div(F.add(b, d), 2), F.sub(c, a), F.sub(d, b)
    return F.cat([a, b, c, d], -1)


def clip_boxes_to_image(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """torchvision.ops.clip_boxes_to_image: x into [0, width], y into [0, height]; size = (height, width)."""
    _check_boxes(boxes, "clip_boxes_to_image", None)
    height, width = size
    hi = np.array([width, height, width, height], dtype=np.float64)
    return F.clamp(boxes, min=0, max=F.constant(hi, boxes.dtype, op="image_size"))


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """torchvision.ops.remove_small_boxes: int64 indices of the [N, 4] boxes whose sides are both >= min_size.

    The count is data-dependent (TensorRT's NonZero layer; TensorRT-RTX 1.7 cannot build it)."""
    _check_boxes(boxes, "remove_small_boxes")
    x1, y1, x2, y2 = (_column(boxes, j) for j in range(4))
    keep = F.logical_and(F.ge(F.sub(x2, x1), min_size), F.ge(F.sub(y2, y1), min_size))
    return F.reshape(F.nonzero(keep), -1)


# ---- non-maximum suppression ---------------------------------------------------------------------
def _check_nms(boxes: Any, scores: Any, op: str) -> None:
    _check_boxes(boxes, op)
    if not isinstance(scores, Tensor) or scores.ndim != 1:
        _fail(f"{op}: scores must be a 1-D Tensor [N], got {getattr(scores, 'shape', scores)!r}")
    n = boxes.shape[0]
    if n >= 0 and scores.shape[0] >= 0 and n != scores.shape[0]:
        _fail(f"{op}: boxes {boxes.shape} and scores {scores.shape} must have the same N")
    if n > TOPK_LIMIT:
        _fail(f"{op}: TensorRT's NMS considers at most {TOPK_LIMIT} boxes per image and this network has "
              f"{n}; keep the best {TOPK_LIMIT} first (F.topk on the scores), as detectors do")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision.ops.nms: int64 indices of the kept [N, 4] xyxy boxes, by decreasing score.

    A box is discarded when its IoU with a kept box of higher score is > iou_threshold. Every
    finite score takes part (torchvision has no score threshold); at most 5000 boxes (TensorRT's
    TopK limit). The length of the result is data-dependent.
    """
    _check_nms(boxes, scores, "nms")
    batch_boxes = F.unsqueeze(boxes, 0)  # [1, N, 4]: one batch item, one class
    batch_scores = F.reshape(F.cast(scores, boxes.dtype), 1, -1, 1)
    # at most TOPK_LIMIT boxes take part, so that many per class is no limit
    selected, _ = non_max_suppression(batch_boxes, batch_scores, TOPK_LIMIT, iou_threshold, score_threshold=-np.inf)
    return F.cast(_column(selected, 2), "int64")


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """torchvision.ops.batched_nms: NMS within each category of `idxs`, indices by decreasing score.

    torchvision's own method: every box is shifted by idx * (max coordinate + 1) so boxes of
    different categories cannot overlap, then one NMS. The shift is computed in float32 (a float16
    network's offsets would lose the boxes' precision or overflow).
    """
    _check_nms(boxes, scores, "batched_nms")
    if not isinstance(idxs, Tensor) or idxs.ndim != 1 or dtypes.is_floating(idxs.dtype):
        _fail(f"batched_nms: idxs must be a 1-D integer Tensor [N], got {getattr(idxs, 'shape', idxs)!r}")
    wide = F.cast(boxes, "float32")
    # max(boxes.max(), 0): a zero joins the reduction so that no boxes (N = 0) is not an empty max;
    # the same offset as torchvision's for its domain, coordinates >= 0
    top = F.amax(F.cat([F.reshape(wide, -1), F.constant(np.zeros(1, np.float32), "float32")], 0))
    offsets = F.mul(F.cast(idxs, "float32"), F.add(top, 1.0))
    return nms(F.add(wide, F.unsqueeze(offsets, 1)), F.cast(scores, "float32"), iou_threshold)


def multiclass_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
                   max_detections: int, box_format: str = "xyxy", box_data: Tensor | None = None,
                   topk_box_limit: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-aware NMS per image with a fixed-size result: what a detector engine outputs.

    boxes: [B, N, 4] in `box_format` ("xyxy" or "cxcywh"); scores: [B, N, C]. Every (box, class)
    with score > score_threshold is a candidate; NMS runs per image and per class (as
    torchvision.ops.batched_nms with the class as category), and each image keeps its
    `max_detections` best. Returns (boxes [B, D, F], scores [B, D], labels [B, D] int64,
    count [B] int64) with D = max_detections, by decreasing score; rows past `count` hold zero
    boxes and scores and label -1. The output rows are `box_data` [B, N, F] (default: `boxes`),
    so a detector can carry more than the four NMS coordinates (a 3-D box, a heading).
    topk_box_limit: consider only the best that many candidates per image (at most 5000).
    """
    net = network.current()
    if not isinstance(max_detections, (int, np.integer)) or max_detections < 1:
        net.fail(f"multiclass_nms: max_detections must be a positive int, got {max_detections!r}")
    if boxes.ndim != 3 or scores.ndim != 3:
        net.fail(f"multiclass_nms: boxes must be [B, N, 4] and scores [B, N, C], got {boxes.shape} and {scores.shape}")
    data = boxes if box_data is None else box_data
    if data.ndim != 3:
        net.fail(f"multiclass_nms: box_data must be [B, N, F], got {data.shape}")
    n, c, d = boxes.shape[1], scores.shape[2], int(max_detections)
    if n < 0 or c < 0 or data.shape[2] < 0:
        net.fail(f"multiclass_nms: the number of boxes, classes and box_data features must be static, "
                 f"got boxes {boxes.shape}, scores {scores.shape}, box_data {data.shape}")
    if F.emission_for("nms") == "loop":  # the fixed size is the loop's own: no data-dependent rows
        kept, count = nms_slots(boxes, scores, d, iou_threshold, score_threshold, box_format, topk_box_limit)
        return _slots_as_detections(kept, count, scores, data)
    selected, _ = non_max_suppression(boxes, scores, d, iou_threshold, score_threshold, box_format, topk_box_limit)
    return fixed_size(selected, scores, data, d)


def _slots_as_detections(kept: Tensor, count: Tensor, scores: Tensor,
                         box_data: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loop emission's kept candidate numbers [B, D] as multiclass_nms' outputs (what
    `fixed_size` makes of the NMS layer's rows): gathers, and zeros / -1 past each count."""
    b, d, n, c, f = scores.size(0), kept.shape[1], box_data.shape[1], scores.shape[2], box_data.shape[2]
    valid = F.lt(F.constant(np.arange(d, dtype=np.int32)[None], "int32", op="slot"), F.unsqueeze(count, 1))
    number = F.where(valid, kept, 0)  # [B, D]: n * C + c, 0 past the count
    box = F.floor_divide(number, c)
    row = F.add(F.mul(F.unsqueeze(F.arange(b, dtype="int32"), 1), n), box)  # image * N + box
    det_rows = F.reshape(F.index_select(F.reshape(box_data, -1, f), 0, F.reshape(row, -1)), -1, d, f)
    det_scores = F.gather(F.flatten(scores, 1), 1, number)
    out_boxes = F.where(F.unsqueeze(valid, 2), det_rows, F.constant(np.zeros((1, 1, 1)), box_data.dtype, op="no_box"))
    out_scores = F.where(valid, det_scores, F.constant(np.zeros((1, 1)), scores.dtype, op="no_score"))
    out_labels = F.cast(F.where(valid, F.sub(number, F.mul(box, c)), -1), "int64")
    return out_boxes, out_scores, out_labels, F.cast(count, "int64")


def fixed_size(selected: Tensor, scores: Tensor, box_data: Tensor,
               max_detections: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """NMS's data-dependent (image, class, box) rows [K, 3] as multiclass_nms' fixed-size outputs.

    Only gathers, comparisons, sums and one scatter per output, so this part builds on every backend.
    """
    n, c, d = box_data.shape[1], scores.shape[2], int(max_detections)
    img, cls, box = (F.unsqueeze(_column(selected, j), 1) for j in range(3))  # int32 [K, 1] each
    # selected rows come image by image: a row's slot is its row number minus the rows of earlier images
    batch = scores.size(0)  # once: with a dynamic batch each size() adds shape and gather layers
    images = F.unsqueeze(F.arange(batch, dtype="int32"), 0)  # [1, B]
    per_image = F.sum(F.cast(F.eq(img, images), "int32"), 0)  # [B]
    first = F.sum(F.cast(F.lt(img, images), "int32"), 0)  # [B]: rows before each image's first
    rows = F.unsqueeze(F.arange(selected.size(0), dtype="int32"), 1)  # [K, 1]
    first_of_row = F.unsqueeze(F.index_select(first, 0, F.reshape(img, -1)), 1)
    slot = F.minimum(F.sub(rows, first_of_row), d)  # rows past max_detections share a spare column, dropped
    where = F.cat([img, slot], 1)  # [K, 2]: (image, slot)
    flat_box = F.reshape(F.add(F.mul(img, n), box), -1)  # image * N + box
    det_scores = F.index_select(F.reshape(scores, -1), 0, F.add(F.mul(flat_box, c), F.reshape(cls, -1)))
    det_rows = F.index_select(F.reshape(box_data, -1, box_data.shape[2]), 0, flat_box)  # [K, F]

    def canvas(fill: float | int, dtype: str, *tail: int) -> Tensor:
        base = F.constant(np.full((1, d + 1, *tail), fill), dtype, op="canvas")
        return F.expand(base, batch, d + 1, *tail)

    def place(values: Tensor, fill: Any, dtype: str, *tail: int) -> Tensor:
        full = F.scatter_nd(canvas(fill, dtype, *tail), where, F.cast(values, dtype))
        return full[:, :d]

    out_boxes = place(det_rows, 0, box_data.dtype, box_data.shape[2])
    out_scores = place(det_scores, 0, scores.dtype)
    out_labels = F.cast(place(F.reshape(cls, -1), -1, "int32"), "int64")
    count = F.cast(F.minimum(per_image, d), "int64")
    return out_boxes, out_scores, out_labels, count


__all__ = ["batched_nms", "box_area", "box_convert", "box_iou", "clip_boxes_to_image", "multiclass_nms", "nms",
           "remove_small_boxes"]
