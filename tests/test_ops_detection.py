"""netdef.ops against torchvision.ops through the reference runner, and the NMS layer's semantics.

The oracle is torchvision (never netdef's own emission): random boxes with ties, zero-area
boxes, duplicates and IoUs exactly at the threshold, over 1,000 cases for nms/batched_nms.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import netdef
from netdef import functional as F
from netdef import nn, ops
from netdef.functional.detection import float32_below

THRESHOLDS = (0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0)


class NMSPair(nn.Module):
    def __init__(self, iou: float) -> None:
        super().__init__()
        self.iou = iou

    def forward(self, boxes, scores, idxs):
        return ops.nms(boxes, scores, self.iou), ops.batched_nms(boxes, scores, idxs, self.iou)


def random_case(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes on a coarse integer grid (so IoUs such as 1/2, 1/4 and 1/3 occur exactly), with
    quantized scores (ties), some zero-area boxes and some duplicates; N from 0 to 40."""
    n = int(rng.integers(0, 41))
    xy = rng.integers(0, 6, (n, 2)).astype(np.float32)
    wh = rng.integers(0, 4, (n, 2)).astype(np.float32)  # 0: a zero-area box
    if n and rng.random() < 0.5:  # continuous boxes too
        xy += rng.random((n, 2), dtype=np.float32)
        wh *= rng.random((n, 2), dtype=np.float32) * 2
    boxes = np.concatenate([xy, xy + wh], 1)
    if n > 2:
        boxes[rng.integers(0, n, 2)] = boxes[0]  # duplicates
    levels = int(rng.choice([4, 16, 1 << 20]))  # few levels: many equal scores
    scores = (rng.integers(0, levels, n) / levels).astype(np.float32)
    idxs = rng.integers(0, 3, n)
    return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs)


def test_float32_below_keeps_the_comparison() -> None:
    for t in (0.1, 1 / 3, 0.45, 0.5, 0.7, 1 / 7):
        below = float32_below(t)
        assert float(below) <= t < float(np.nextafter(below, np.float32(np.inf)))
        for x in (np.nextafter(below, np.float32(-1)), below, np.nextafter(below, np.float32(2))):
            assert (float(x) > t) == bool(x > below)


def test_nms_and_batched_nms_equal_torchvision_on_1200_random_cases() -> None:
    rng = np.random.default_rng(0)
    spec = (netdef.Input("boxes", (("n", 0, 20, 64), 4)), netdef.Input("scores", (("n", 0, 20, 64),)),
            netdef.Input("idxs", (("n", 0, 20, 64),), "int64"))
    checked, suppressed, at_threshold = 0, 0, 0
    for iou in THRESHOLDS:
        program = netdef.reference.compile(netdef.trace(NMSPair(iou), *spec))
        for _ in range(200):
            boxes, scores, idxs = random_case(rng)
            got = program({"boxes": boxes, "scores": scores, "idxs": idxs})
            want = torchvision.ops.nms(boxes, scores, iou)
            want_batched = torchvision.ops.batched_nms(boxes, scores, idxs, iou)
            assert torch.equal(got["output0"], want), (iou, boxes, scores, got["output0"], want)
            assert torch.equal(got["output1"], want_batched), (iou, boxes, scores, idxs)
            assert got["output0"].dtype == torch.int64
            checked += 1
            suppressed += len(want) < len(boxes)
            if len(boxes) > 1:
                m = torchvision.ops.box_iou(boxes, boxes)
                at_threshold += bool(((m == iou) & ~torch.eye(len(boxes), dtype=torch.bool)).any())
    assert checked == 1200
    assert suppressed > 500 and at_threshold > 100  # the cases exercise suppression and the boundary


def test_nms_edge_cases_equal_torchvision() -> None:
    """IoU exactly at the threshold is kept, a zero-area box never suppresses, equal scores keep
    box order, and a threshold that is not a float32 (1/3) compares as torchvision's double does."""
    cases = [
        ([[0, 0, 2, 1], [0, 0, 1, 1]], [0.9, 0.8], 0.5),  # IoU 1/2 == threshold: kept
        ([[0, 0, 2, 1], [0, 0, 1, 1]], [0.9, 0.8], 0.49),
        ([[0, 0, 3, 1], [0, 0, 1, 1]], [0.9, 0.8], 1 / 3),  # float32(1/3) > 1/3: suppressed
        ([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2]], [0.9, 0.8, 0.7], 0.0),  # zero-area duplicates
        ([[0, 0, 1, 1]] * 4, [0.5] * 4, 0.5),  # ties: the lowest index wins
        ([[0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1], [5, 5, 6, 6]], [0.5, 0.7, 0.7, 0.5], 0.3),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [-2.0, -1.0], 0.5),  # negative scores take part
    ]
    for boxes, scores, iou in cases:
        b, s = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores)
        net = netdef.trace(NMSPair(iou), netdef.Input("boxes", tuple(b.shape)), netdef.Input("scores", tuple(s.shape)),
                           netdef.Input("idxs", tuple(s.shape), "int64"))
        got = netdef.reference.run(net, {"boxes": b, "scores": s, "idxs": torch.zeros(len(s), dtype=torch.int64)})
        assert torch.equal(got["output0"], torchvision.ops.nms(b, s, iou)), (boxes, scores, iou)


def test_nms_in_a_float16_network() -> None:
    """Boxes and scores exact in float16: the float16 network keeps what torchvision keeps."""
    rng = np.random.default_rng(1)
    net = netdef.trace(NMSPair(0.5), netdef.Input("boxes", (("n", 1, 30, 64), 4)),
                       netdef.Input("scores", (("n", 1, 30, 64),)), netdef.Input("idxs", (("n", 1, 30, 64),), "int64"),
                       dtype="float16")
    for _ in range(20):
        b, s, i = random_case(rng)
        if len(b) == 0:
            continue
        b, s = b.half().float(), s.half().float()
        got = netdef.reference.run(net, {"boxes": b, "scores": s, "idxs": i})
        assert torch.equal(got["output0"], torchvision.ops.nms(b, s, 0.5))
        assert torch.equal(got["output1"], torchvision.ops.batched_nms(b, s, i, 0.5))


def torch_multiclass_nms(boxes, scores, iou, conf, d):
    """The fixed-size result written with torchvision.ops.batched_nms, image by image."""
    b = scores.shape[0]
    out = (torch.zeros(b, d, 4), torch.zeros(b, d), torch.full((b, d), -1), torch.zeros(b, dtype=torch.int64))
    for i in range(b):
        n, c = torch.nonzero(scores[i] > conf, as_tuple=True)
        s = scores[i, n, c]
        keep = torchvision.ops.batched_nms(boxes[i, n], s, c, iou)[:d]
        k = len(keep)
        out[0][i, :k], out[1][i, :k], out[2][i, :k], out[3][i] = boxes[i, n[keep]], s[keep], c[keep], k
    return out


class Multi(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d

    def forward(self, boxes, scores):
        return ops.multiclass_nms(boxes, scores, 0.5, 0.3, self.d)


@pytest.mark.parametrize("max_det", [1, 7, 60])
def test_multiclass_nms_fixed_size_equals_torchvision_per_image(max_det: int) -> None:
    net = netdef.trace(Multi(max_det), netdef.Input("boxes", (("b", 1, 3, 8), 30, 4)),
                       netdef.Input("scores", (("b", 1, 3, 8), 30, 5)))
    g = torch.Generator().manual_seed(max_det)
    for b in (1, 3, 8):
        xy = torch.rand(b, 30, 2, generator=g) * 10
        boxes = torch.cat([xy, xy + torch.rand(b, 30, 2, generator=g) * 5], 2)
        scores = torch.rand(b, 30, 5, generator=g)
        scores[0] *= 0.3  # an image without any detection
        got = list(netdef.reference.run(net, {"boxes": boxes, "scores": scores}).values())
        want = torch_multiclass_nms(boxes, scores, 0.5, 0.3, max_det)
        for g_, w in zip(got, want):
            assert g_.shape == w.shape and torch.equal(g_, w.to(g_.dtype)), (b, g_, w)
        assert got[3][0] == 0 and (got[3][1:] > 0).all()


def test_nms_layer_per_class_boxes_center_format_and_limits() -> None:
    """INMSLayer read through the raw API: per-class boxes [B, N, C, 4] in CENTER_SIZES, a
    topk_box_limit, max boxes per class, a score threshold; each class against torchvision.nms,
    rows ordered by decreasing score across classes (TensorRT's documented order)."""
    t = netdef.backend.trt()
    net = netdef.backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    b, n, c = 2, 25, 3
    boxes_in = net.add_input("boxes", t.float32, (b, n, c, 4))
    scores_in = net.add_input("scores", t.float32, (b, n, c))
    most = net.add_constant((), np.array(4, np.int32)).get_output(0)
    iou = net.add_constant((), np.array(0.4, np.float32)).get_output(0)
    score = net.add_constant((), np.array(0.2, np.float32)).get_output(0)
    layer = net.add_nms(boxes_in, scores_in, most)
    layer.set_input(3, iou)
    layer.set_input(4, score)
    layer.bounding_box_format = t.BoundingBoxFormat.CENTER_SIZES
    layer.topk_box_limit = 40
    net.mark_output(layer.get_output(0))
    net.mark_output(layer.get_output(1))
    g = torch.Generator().manual_seed(5)
    centers = torch.cat([torch.rand(b, n, c, 2, generator=g) * 6, torch.rand(b, n, c, 2, generator=g) * 3 + 0.5], -1)
    scores = torch.rand(b, n, c, generator=g)
    got = list(netdef.reference.run(net, {"boxes": centers, "scores": scores}).values())
    rows = []
    xyxy = torchvision.ops.box_convert(centers, "cxcywh", "xyxy")
    for i in range(b):
        flat = scores[i].flatten()
        top = flat.argsort(descending=True, stable=True)
        top = top[flat[top] > 0.2][:40]  # the 40 best candidates of the image, any class
        image_rows = []
        for k in range(c):
            cand = top[top % c == k] // c
            keep = torchvision.ops.nms(xyxy[i, cand, k], scores[i, cand, k], 0.4)[:4]
            image_rows += [(float(scores[i, cand[j], k]), i, k, int(cand[j])) for j in keep]
        rows += [r[1:] for r in sorted(image_rows, key=lambda r: -r[0])]
    assert got[0].tolist() == [list(r) for r in rows]
    assert int(got[1]) == len(rows) > 8


def test_box_utilities_equal_torchvision() -> None:
    class Boxes(nn.Module):
        def forward(self, a, b):
            outs = [ops.box_area(a), ops.box_iou(a, b), ops.clip_boxes_to_image(a, (5, 7))]
            outs += [ops.box_convert(a, i, o) for i in ("xyxy", "xywh", "cxcywh") for o in ("xyxy", "xywh", "cxcywh")]
            return outs

    g = torch.Generator().manual_seed(2)
    xy = torch.rand(9, 2, generator=g) * 8 - 1
    a = torch.cat([xy, xy + torch.rand(9, 2, generator=g) * 4], 1)
    b = a[:5] + 0.5
    net = netdef.trace(Boxes(), netdef.Input("a", (("n", 1, 9, 16), 4)), netdef.Input("b", (5, 4)))
    got = list(netdef.reference.run(net, {"a": a, "b": b}).values())
    tv = torchvision.ops
    want = [tv.box_area(a), tv.box_iou(a, b), tv.clip_boxes_to_image(a, (5, 7))]
    want += [tv.box_convert(a, i, o) for i in ("xyxy", "xywh", "cxcywh") for o in ("xyxy", "xywh", "cxcywh")]
    for g_, w in zip(got, want):
        netdef.tolerance.assert_close(g_, w, "float32")


def test_remove_small_boxes_equals_torchvision() -> None:
    class Small(nn.Module):
        def forward(self, boxes):
            return ops.remove_small_boxes(boxes, 1.0)

    g = torch.Generator().manual_seed(3)
    xy = torch.rand(20, 2, generator=g) * 8
    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 2], 1)
    net = netdef.trace(Small(), netdef.Input("boxes", (("n", 1, 20, 32), 4)))
    got = netdef.reference.run(net, {"boxes": boxes})["output"]
    want = torchvision.ops.remove_small_boxes(boxes, 1.0)
    assert torch.equal(got, want) and 0 < len(want) < 20


def test_bad_arguments_name_the_problem() -> None:
    spec = (netdef.Input("boxes", (10, 4)), netdef.Input("scores", (10,)), netdef.Input("idxs", (10,), "int64"))
    with pytest.raises(netdef.TraceError, match=r"iou_threshold must be in \[0.0, 1.0\]"):
        netdef.trace(NMSPair(1.5), *spec)

    class WrongScores(nn.Module):
        def forward(self, boxes, scores, idxs):
            return ops.nms(boxes, F.unsqueeze(scores, 1), 0.5)

    with pytest.raises(netdef.TraceError, match="scores must be a 1-D Tensor"):
        netdef.trace(WrongScores(), *spec)
    with pytest.raises(netdef.TraceError, match="at most 5000 boxes"):
        netdef.trace(NMSPair(0.5), netdef.Input("boxes", (6000, 4)), netdef.Input("scores", (6000,)),
                     netdef.Input("idxs", (6000,), "int64"))
    with pytest.raises(netdef.TraceError, match="unsupported box format"):
        class Fmt(nn.Module):
            def forward(self, boxes, scores, idxs):
                return ops.box_convert(boxes, "xyxy", "yxyx")
        netdef.trace(Fmt(), *spec)


def test_fixed_size_outputs_build_with_a_data_dependent_row_count() -> None:
    """Everything after the NMS layer (gathers, sums, scatters) builds with a dynamic batch and a
    dynamic selected-row count, standing in for the layer's data-dependent output."""
    class Pack(nn.Module):
        def forward(self, selected, scores, boxes):
            return ops.fixed_size(selected, scores, boxes, 5)

    plan = netdef.build(Pack(), netdef.Input("selected", (("k", 0, 10, 100), 3), "int32"),
                        netdef.Input("scores", (("b", 1, 2, 4), 30, 5)), netdef.Input("boxes", (("b", 1, 2, 4), 30, 4)),
                        progress=False)
    assert plan.metadata["inputs"][0]["max"] == [100, 3]


def test_the_backend_builds_the_nms_layer_or_names_it() -> None:
    """Classic TensorRT >= 10 implements INMSLayer; TensorRT-RTX 1.7 has no implementation of it
    ("has no runners"), so a build there fails with an error naming the layer."""
    spec = (netdef.Input("boxes", (("n", 1, 20, 64), 4)), netdef.Input("scores", (("n", 1, 20, 64),)),
            netdef.Input("idxs", (("n", 1, 20, 64),), "int64"))
    if netdef.backend.is_rtx():
        with pytest.raises(netdef.BuildError, match=r"nms.*no runners"):
            netdef.build(NMSPair(0.5), *spec, progress=False)
    else:
        assert len(netdef.build(NMSPair(0.5), *spec, progress=False)) > 0
