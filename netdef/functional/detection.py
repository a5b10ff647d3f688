"""Non-maximum suppression without a plugin, in two emissions: TensorRT's NMS layer or a loop.

`non_max_suppression` is NMS in ONNX NonMaxSuppression's terms (batch, classes, selected
(batch, class, box) rows). Its "layer" emission is TensorRT's INMSLayer; its "loop" emission
(`loop_nms`) is the same greedy algorithm written with TopK, gather, elementwise and reduce
layers in a while loop, for backends that cannot build INMSLayer (TensorRT-RTX). Both give the
same rows in the same order; `F.emission(nms=...)` chooses (netdef/functional/attention.py).
torchvision.ops' nms/batched_nms and the fixed-size detector output are built on them in
netdef.ops. Semantics: docs/detection.md.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import dtypes, network
from netdef.functional._core import cast, constant, out, shape_tensor, trt
from netdef.functional.attention import emission_for
from netdef.functional.control import while_loop
from netdef.functional.creation import arange
from netdef.functional.elementwise import (
    add,
    div,
    eq,
    floor_divide,
    ge,
    gt,
    le,
    logical_and,
    logical_not,
    logical_or,
    lt,
    maximum,
    minimum,
    mul,
    sub,
)
from netdef.functional.indexing import gather, index_select, topk
from netdef.functional.misc import pad, where
from netdef.functional.reduce import amax, cumsum, sum
from netdef.functional.scatter import scatter
from netdef.functional.shape import cat, expand, flatten, getitem, reshape, unsqueeze
from netdef.tensor import Tensor

BOX_FORMATS = {"xyxy": "CORNER_PAIRS", "cxcywh": "CENTER_SIZES"}
TOPK_LIMIT = 5000  # the most candidates INMSLayer considers per batch item (2000 on SM 5.3/6.2)
TOPK_K = 3840  # the largest k of one TopK layer (ITopKLayer's docstring)


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
    """TensorRT's NMS, per batch item and per class.

    boxes: [B, N, 4] (shared by every class) or [B, N, C, 4]; scores: [B, N, C].
    A candidate is a (box, class) pair whose score is strictly greater than `score_threshold`;
    per batch item the candidates are sorted by decreasing score (across classes) and at most
    `topk_box_limit` of them are considered; per class a candidate is kept when its IoU with every
    box kept before it is <= `iou_threshold`, until `max_output_boxes_per_class` are kept.
    box_format "xyxy" is any pair of diagonal corners, "cxcywh" centre and size.

    Returns (selected, count): selected is int32 [K, 3] rows (batch, class, box) in increasing
    batch and, within a batch item, decreasing score; K is data-dependent (count = K, int32 0-d).
    Python thresholds are rounded down to float32, so `iou > threshold` means the same as in float64.
    Emitted as INMSLayer or as a loop (`F.emission(nms="layer" | "loop")`), with the same result.
    """
    net = network.current()
    scores, limit = _check(boxes, scores, box_format, topk_box_limit)
    if isinstance(max_output_boxes_per_class, Tensor):
        most = shape_tensor([max_output_boxes_per_class])  # 1-element int64
        layer = net.network.add_shuffle(cast(most, "int32").trt)
        layer.reshape_dims = ()
        most = out(layer, "max_output_boxes")
    else:
        if int(max_output_boxes_per_class) < 0:
            net.fail(f"non_max_suppression: max_output_boxes_per_class must be >= 0, got {max_output_boxes_per_class}")
        most = int(max_output_boxes_per_class)
    iou = _threshold(iou_threshold, "iou_threshold", 0.0, 1.0)
    score = _threshold(score_threshold, "score_threshold")
    if emission_for("nms") == "loop":
        kept, count = _loop_nms(boxes, scores, iou, score, box_format, limit, most)
        return _rows(kept, count, scores.shape[2])
    if not isinstance(most, Tensor):
        most = constant(np.array(most, np.int32), op="max_output_boxes")
    layer = net.network.add_nms(boxes.trt, scores.trt, most.trt)
    if layer is not None:
        layer.set_input(3, iou.trt)
        layer.set_input(4, score.trt)
        layer.bounding_box_format = getattr(trt().BoundingBoxFormat, BOX_FORMATS[box_format])
        layer.topk_box_limit = limit
    net.add(layer, "nms")
    return Tensor(layer.get_output(0)), Tensor(layer.get_output(1))


def _check(boxes: Tensor, scores: Tensor, box_format: str, topk_box_limit: int | None) -> tuple[Tensor, int]:
    """Both emissions' arguments checked in TensorRT's terms: (scores in the boxes' dtype, the limit)."""
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
    limit = TOPK_LIMIT if topk_box_limit is None else int(topk_box_limit)
    if not 1 <= limit <= TOPK_LIMIT:
        net.fail(f"non_max_suppression: topk_box_limit must be in [1, {TOPK_LIMIT}], got {topk_box_limit}")
    return (cast(scores, boxes.dtype) if boxes.dtype != scores.dtype else scores), limit


# ---- the loop emission ---------------------------------------------------------------------------
_NONE = np.iinfo(np.int32).max  # "no candidate left" in the pick's minimum over candidate numbers


def nms_slots(boxes: Tensor, scores: Tensor, max_kept: int, iou_threshold: Any, score_threshold: Any,
              box_format: str = "xyxy", topk_box_limit: int | None = None) -> tuple[Tensor, Tensor]:
    """The loop emission's own fixed-size result: per batch item, the first `max_kept` rows that
    `non_max_suppression` (with max_output_boxes_per_class = max_kept) gives it, with no
    data-dependent shape. Returns (kept [B, max_kept] int32 candidate numbers n * C + c in the
    order kept, valid below count; count [B] int32)."""
    scores, limit = _check(boxes, scores, box_format, topk_box_limit)
    iou = _threshold(iou_threshold, "iou_threshold", 0.0, 1.0)
    score = _threshold(score_threshold, "score_threshold")
    # a class cannot have more than max_kept of an item's first max_kept rows: no per-class cap
    return _loop_nms(boxes, scores, iou, score, box_format, limit, int(max_kept), slots=int(max_kept))


def _loop_nms(boxes: Tensor, scores: Tensor, iou: Tensor, score: Tensor, box_format: str, limit: int,
             most: Any, slots: int | None = None) -> tuple[Tensor, Tensor]:
    """INMSLayer's selection as a while loop of TopK, gather, reduce and elementwise layers.

    Per batch item: the candidates (score > `score`, as flat numbers n * C + c) are cut to the
    `limit` best (TopK; equal scores keep the lower number), then each iteration keeps the best
    live candidate (equal scores: the lower number) and retires it and every live candidate of its
    class whose IoU with it is > `iou` (and the rest of the class once `most` of it are kept). The
    loop stops when no batch item has a live candidate or `slots` are kept. IoUs and scores are
    compared in float32 with torchvision's arithmetic, so a float16 network decides as torchvision
    does on its values. Each iteration costs O(B * candidates); there are as many as boxes kept, + 1.

    Returns (kept, count): kept [B, slots] int32 flat numbers in the order kept (2**31 - 1 past
    count[b]), count [B] int32. `slots` defaults to every candidate's (or
    C * most) slot; iou and score are float32 0-d tensors, most an int or an int32 0-d tensor.
    """
    net = network.current()
    n, c = scores.shape[1], scores.shape[2]
    if c < 0:
        net.fail(f"non_max_suppression (loop emission) needs a static number of classes, got scores {scores.shape}")
    m = n * c if n >= 0 else -1
    flat = flatten(cast(scores, "float32"), 1)  # [B, M], candidate number n * C + c
    keys = where(gt(flat, score), flat, -np.inf)  # NaN and scores <= the threshold are no candidates
    coords = cast(boxes, "float32")
    per_number = boxes.ndim == 4 or c == 1  # one box per candidate number (else per box row n)
    if boxes.ndim == 4:
        coords = flatten(coords, 1, 2)  # [B, M, 4]
    planes = [getitem(coords, (Ellipsis, j)) for j in range(4)]  # [B, rows]
    if 0 < m <= limit:  # every candidate is considered: no TopK
        k = m
        values, number = keys, constant(np.arange(m, dtype=np.int32)[None], "int32", op="candidate")
        if not per_number:
            rows = constant(np.arange(m, dtype=np.int32) // c, "int32", op="candidate_box")
            planes = [index_select(p, 1, rows) for p in planes]
    else:  # the `limit` best; unless N * C is static and larger, -inf padding makes at least `limit` entries
        k, extra = limit, (0 if m > limit else limit)
        values, number = _best(pad(keys, (0, extra), value=-np.inf) if extra else keys, limit)
        rows = number if per_number else floor_divide(number, c)
        if extra and not per_number:
            extra = (limit - 1) // c + 1
        planes = [gather(pad(p, (0, extra)) if extra else p, 1, rows) for p in planes]
    x1, y1, x2, y2 = _corners(planes, box_format)
    area = mul(sub(x2, x1), sub(y2, y1))
    live = gt(values, -np.inf)
    # slots: at most every candidate, or C * most; the per-class cap is checked where it can bind
    d = slots if slots is not None else (k if isinstance(most, Tensor) else min(k, c * most))
    capped = isinstance(most, Tensor) or most < min(d, k)
    if isinstance(most, Tensor):
        most = reshape(most, 1, 1)
        live = logical_and(live, gt(most, 0))
    elif most == 0:
        live = logical_and(live, constant(np.zeros((1, 1), bool), "bool", op="no_output"))
    d = max(d, 1)

    # the body's constants, made here in the shapes it uses (no reshape or constant per iteration)
    def const(value: Any, dtype: str, op: str) -> Tensor:
        return constant(np.asarray(value, dtypes.to_numpy(dtype)).reshape(1, -1), dtype, op=op)
    neg, zero = const(-np.inf, "float32", "no_score"), const(0, "float32", "zero")
    none = const(_NONE, "int32", "no_candidate")
    order = const(np.arange(k), "int64", "candidate_position")
    slot, slots_max = const(np.arange(d), "int32", "slot"), const(d, "int32", "slots")
    step_one, nothing = const(1, "int32", "one"), const(0, "int32", "nothing")
    iou = reshape(iou, 1, 1)
    classes = const(np.arange(c), "int32", "class")
    candidate_class = None if c == 1 else sub(number, mul(floor_divide(number, c), c))
    batch = scores.size(0)
    kept = expand(const(np.full(d, _NONE), "int32", "kept_init"), batch, d)  # a slot never written: no candidate
    state = [const(0, "int32", "iteration"), live, kept]
    if capped:
        state.append(expand(const(np.zeros(c), "int32", "class_count_init"), batch, c))

    def going(i, live, *_):
        return logical_and(lt(i, slots_max), gt(amax(cast(live, "int32"), (0, 1), keepdim=True), nothing))

    def step(i, live, kept, *class_count):
        best = amax(where(live, values, neg), 1, keepdim=True)  # [B, 1]
        tied = logical_and(live, eq(values, best))
        pick, at = topk(where(tied, number, none), 1, 1, largest=False)  # lowest number among the best
        valid = lt(pick, none)  # [B, 1]: this batch item still had a candidate
        one = [gather(p, 1, at) for p in (x1, y1, x2, y2, area)]
        w = maximum(sub(minimum(one[2], x2), maximum(one[0], x1)), zero)
        h = maximum(sub(minimum(one[3], y2), maximum(one[1], y1)), zero)
        inter = mul(w, h)
        retire = gt(div(inter, sub(add(one[4], area), inter)), iou)  # torchvision: inter / (a1 + a2 - inter)
        pick_class = None if c == 1 else sub(pick, mul(floor_divide(pick, c), c))
        if capped:  # the class is full: its other candidates retire too
            count = add(class_count[0], cast(logical_and(eq(classes, pick_class if c > 1 else nothing), valid),
                                             "int32"))
            retire = logical_or(retire, ge(gather(count, 1, pick_class) if c > 1 else count, most))
            class_count = (count,)
        if c > 1:
            retire = logical_and(retire, eq(candidate_class, pick_class))
        retire = logical_and(valid, logical_or(retire, eq(order, at)))
        kept = where(eq(slot, i), pick, kept)
        return (add(i, step_one), logical_and(live, logical_not(retire)), kept, *class_count)

    kept = while_loop(going, step, tuple(state))[2]
    return kept, sum(cast(lt(kept, none), "int32"), 1)


def _best(keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest keys along dim 1 and their positions (int32), by TopK layers of at most 3840."""
    take = min(k, TOPK_K)
    values, where_ = topk(keys, take, 1)
    where_ = cast(where_, "int32")
    if take == k:
        return values, where_
    gone = expand(constant(np.full((1, 1), -np.inf, np.float32), "float32", op="taken"), keys.size(0), take)
    more, more_where = _best(scatter(keys, 1, where_, gone), k - take)
    return cat([values, more], 1), cat([where_, more_where], 1)


def _corners(planes: list[Tensor], box_format: str) -> list[Tensor]:
    """(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2 from either box format (the NMS layer's reading)."""
    a, b, c, d = planes
    if box_format == "cxcywh":
        a, b, c, d = sub(a, div(c, 2.0)), sub(b, div(d, 2.0)), add(a, div(c, 2.0)), add(b, div(d, 2.0))
    return [minimum(a, c), minimum(b, d), maximum(a, c), maximum(b, d)]


def _rows(kept: Tensor, count: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """The loop's per-item kept numbers as the NMS layer's rows: int32 [K, 3] (batch, class, box),
    batch by batch in the order kept, K = sum(count) (data-dependent, as the layer's)."""
    d = kept.shape[1]
    count = cast(count, "int64")
    total = sum(count)
    ends = cumsum(count, 0)  # [B]: rows up to and including each batch item's
    row = arange(total)  # [K]
    item = sum(cast(le(unsqueeze(ends, 0), unsqueeze(row, 1)), "int64"), 1)  # batch items that end at or before
    nth = sub(row, index_select(sub(ends, count), 0, item))
    number = index_select(reshape(kept, -1), 0, add(mul(item, d), nth))
    box = floor_divide(number, classes)
    cls = sub(number, mul(box, classes))
    selected = cat([unsqueeze(cast(t, "int32"), 1) for t in (item, cls, box)], 1)
    return selected, cast(total, "int32")


__all__ = ["non_max_suppression"]
