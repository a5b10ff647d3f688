"""netdef.ops against torchvision.ops through the reference runner, and the NMS layer's semantics.

The oracle is torchvision (never netdef's own emission): random boxes with ties, zero-area
boxes, duplicates and IoUs exactly at the threshold, over 1,000 cases for nms/batched_nms; and
ONNX's NonMaxSuppression node cases. Every NMS test runs both emissions (F.emission(nms=...)):
TensorRT's NMS layer and the loop of TopK, gather and elementwise layers.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchvision

import netdef
from netdef import functional as F
from netdef import nn, ops
from netdef.functional.detection import float32_below

THRESHOLDS = (0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0)
EMISSIONS = ("layer", "loop")


def trace(module, *inputs, emission: str, **kwargs) -> netdef.Network:
    with F.emission(nms=emission):
        return netdef.trace(module, *inputs, **kwargs)


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


@pytest.mark.parametrize("emission", EMISSIONS)
def test_nms_and_batched_nms_equal_torchvision_on_1200_random_cases(emission: str) -> None:
    rng = np.random.default_rng(0)
    spec = (netdef.Input("boxes", (("n", 0, 20, 64), 4)), netdef.Input("scores", (("n", 0, 20, 64),)),
            netdef.Input("idxs", (("n", 0, 20, 64),), "int64"))
    checked, suppressed, at_threshold = 0, 0, 0
    for iou in THRESHOLDS:
        program = netdef.reference.compile(trace(NMSPair(iou), *spec, emission=emission))
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


@pytest.mark.parametrize("emission", EMISSIONS)
def test_nms_edge_cases_equal_torchvision(emission: str) -> None:
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
        net = trace(NMSPair(iou), netdef.Input("boxes", tuple(b.shape)), netdef.Input("scores", tuple(s.shape)),
                    netdef.Input("idxs", tuple(s.shape), "int64"), emission=emission)
        got = netdef.reference.run(net, {"boxes": b, "scores": s, "idxs": torch.zeros(len(s), dtype=torch.int64)})
        assert torch.equal(got["output0"], torchvision.ops.nms(b, s, iou)), (boxes, scores, iou)


@pytest.mark.parametrize("emission", EMISSIONS)
def test_nms_in_a_float16_network(emission: str) -> None:
    """Boxes and scores exact in float16: the float16 network keeps what torchvision keeps."""
    rng = np.random.default_rng(1)
    net = trace(NMSPair(0.5), netdef.Input("boxes", (("n", 1, 30, 64), 4)),
                netdef.Input("scores", (("n", 1, 30, 64),)), netdef.Input("idxs", (("n", 1, 30, 64),), "int64"),
                dtype="float16", emission=emission)
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


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("max_det", [1, 7, 60])
def test_multiclass_nms_fixed_size_equals_torchvision_per_image(max_det: int, emission: str) -> None:
    net = trace(Multi(max_det), netdef.Input("boxes", (("b", 1, 3, 8), 30, 4)),
                netdef.Input("scores", (("b", 1, 3, 8), 30, 5)), emission=emission)
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


def nms_rows(xyxy, scores, limit, most, score_threshold, iou):
    """The NMS layer's documented rows from torchvision.ops.nms, class by class: per image the
    `limit` best candidates (score > score_threshold; equal scores in candidate order n * C + c),
    each class's kept ones (at most `most`), rows ordered by decreasing score, then box, then class.
    xyxy: [B, N, 4] or per class [B, N, C, 4]; scores [B, N, C]."""
    b, _, c = scores.shape
    rows = []
    for i in range(b):
        flat = scores[i].flatten()
        top = flat.argsort(descending=True, stable=True)
        top = top[flat[top] > score_threshold][:limit]
        image_rows = []
        for k in range(c):
            cand = top[top % c == k] // c
            boxes = xyxy[i, cand, k] if xyxy.dim() == 4 else xyxy[i, cand]
            keep = torchvision.ops.nms(boxes, scores[i, cand, k], iou)[:most]
            image_rows += [(-float(scores[i, cand[j], k]), int(cand[j]), k) for j in keep]
        rows += [[i, k, box] for _, box, k in sorted(image_rows)]
    return rows


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
    rows = nms_rows(torchvision.ops.box_convert(centers, "cxcywh", "xyxy"), scores, 40, 4, 0.2, np.float32(0.4))
    assert got[0].tolist() == rows
    assert int(got[1]) == len(rows) > 8


class GeneralNMS(nn.Module):
    def __init__(self, most, iou: float, score: float, box_format: str, limit: int | None) -> None:
        super().__init__()
        self.most, self.iou, self.score, self.box_format, self.limit = most, iou, score, box_format, limit

    def forward(self, boxes, scores):
        most = self.most(boxes) if callable(self.most) else self.most
        return F.non_max_suppression(boxes, scores, most, self.iou, self.score, self.box_format, self.limit)


# (b, n, c, per-class boxes, box format, topk_box_limit, max per class, score threshold, IoU, score levels, dynamic n)
GENERAL = {
    "per-class cxcywh boxes, limit 12, 4 per class": (2, 25, 3, True, "cxcywh", 12, 4, 0.2, 0.4, 0, False),
    "shared boxes, tied scores, dynamic N, limit 20, max N // 10": (3, 30, 4, False, "xyxy", 20, "n // 10", 0.3, 0.5,
                                                                    8, True),
    "5200 candidates (TopK 3840 + 1160), tied at the cut": (1, 2600, 2, False, "xyxy", None, 1000, 0.0, 0.3, 0, False),
    "max 0 per class": (1, 10, 2, False, "xyxy", None, 0, 0.0, 0.5, 0, False),
}


def general_case(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(centers [B, N(, C), 4] cxcywh, scores [B, N, C]) for a GENERAL case. The 5200-candidate case
    is built so the cut matters: 2450 near-identical boxes score high (few survive NMS), 150 apart
    from each other and from them share one lower score, so the 5000-candidate cut falls among
    equal scores and keeps the 100 tied candidates of lowest number n * C + c."""
    b, n, c, per_class, _, _, _, _, _, levels, _ = GENERAL[case]
    g = torch.Generator().manual_seed(len(case))
    shape = (b, n, c) if per_class else (b, n)
    centers = torch.cat([torch.rand(*shape, 2, generator=g) * 6, torch.rand(*shape, 2, generator=g) * 3 + 0.5], -1)
    scores = torch.rand(b, n, c, generator=g)
    if levels:
        scores = (scores * levels).floor() / levels  # equal scores within and across classes
    if n > 1000:
        apart = torch.randperm(n, generator=g)[:150]
        centers[0, :, :2] = 1 + torch.rand(n, 2, generator=g) * 0.05
        centers[0, :, 2:] = 2.0
        grid = torch.stack(torch.meshgrid(torch.arange(10), torch.arange(15), indexing="ij"), -1).reshape(-1, 2)
        centers[0, apart, :2] = 10.0 + 4.0 * grid
        scores = 0.5 + 0.5 * torch.rand(b, n, c, generator=g)
        scores[0, apart] = 0.25
    return centers, scores


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("case", list(GENERAL))
def test_non_max_suppression_equals_torchvision_per_class(case: str, emission: str) -> None:
    """F.non_max_suppression, both emissions: per-class or shared boxes, both formats, the
    topk_box_limit cut (also past one TopK layer's 3840, among equal scores), a per-class maximum
    (also a run-time one, and 0), a score threshold; torchvision.nms's rows class by class, in
    TensorRT's order. Each case's limit and maximum change the result (checked on the oracle)."""
    b, n, c, per_class, fmt, limit, most, score, iou, _, dynamic = GENERAL[case]
    centers, scores = general_case(case)
    xyxy = torchvision.ops.box_convert(centers, "cxcywh", "xyxy")
    rank = (n, c, 4) if per_class else (n, 4)
    dim_n = ("n", 1, n, 2 * n) if dynamic else n
    most_fn = (lambda x: F.floor_divide(x.size(1), 10)) if most == "n // 10" else most
    net = trace(GeneralNMS(most_fn, iou, score, fmt, limit), netdef.Input("boxes", (b, dim_n, *rank[1:])),
                netdef.Input("scores", (b, dim_n, c)), emission=emission)
    got = list(netdef.reference.run(net, {"boxes": centers if fmt == "cxcywh" else xyxy, "scores": scores}).values())
    most = n // 10 if most == "n // 10" else most
    want = nms_rows(xyxy, scores, limit or 5000, most, score, iou)
    assert got[0].tolist() == want
    assert int(got[1]) == len(want) and got[0].dtype == torch.int32
    if most:
        assert len(want) > 10
        assert want != nms_rows(xyxy, scores, 10 ** 6, most, score, iou)  # the limit cuts
        assert want != nms_rows(xyxy, scores, limit or 5000, 10 ** 6, score, iou) or n > 1000  # the maximum binds


@functools.cache
def onnx_nms_cases() -> list:
    """ONNX's NonMaxSuppression node cases (generated by ONNX's own code, not through netdef)."""
    from onnx.backend.test.case.node import nonmaxsuppression

    found = []
    real = nonmaxsuppression.expect
    nonmaxsuppression.expect = lambda node, inputs, outputs, name, **kw: found.append((name, node, inputs, outputs))
    try:  # ONNX's registry of case names is left alone: the node-case tests collect these again
        for attr in sorted(dir(nonmaxsuppression.NonMaxSuppression)):
            if attr.startswith("export_"):
                getattr(nonmaxsuppression.NonMaxSuppression, attr)()
    finally:
        nonmaxsuppression.expect = real
    return found


@pytest.mark.parametrize("emission", EMISSIONS)
def test_non_max_suppression_on_onnx_node_cases(emission: str) -> None:
    """ONNX's expected rows, compared per (batch, class) in order: TensorRT orders rows by score
    across classes where ONNX lists them class by class (docs/detection.md)."""
    cases = onnx_nms_cases()
    assert len(cases) == 10
    for name, node, inputs, outputs in cases:
        center = any(a.name == "center_point_box" and a.i == 1 for a in node.attribute)
        boxes, scores, most, iou, score = inputs
        net = trace(GeneralNMS(int(most[0]), float(iou[0]), float(score[0]), "cxcywh" if center else "xyxy", None),
                    netdef.Input("boxes", boxes.shape), netdef.Input("scores", np.moveaxis(scores, 1, 2).shape),
                    emission=emission)
        got = netdef.reference.run(net, {"boxes": torch.from_numpy(boxes),
                                         "scores": torch.from_numpy(np.moveaxis(scores, 1, 2).copy())})
        rows = next(iter(got.values())).tolist()

        def by_class(rs):
            return {(i, k): [r[2] for r in rs if (r[0], r[1]) == (i, k)] for i, k, _ in rs}
        assert by_class(rows) == by_class(outputs[0].tolist()), name
        assert sorted(rows) == sorted(outputs[0].tolist()), name


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


@pytest.mark.parametrize("emission", EMISSIONS)
def test_each_emission_builds_where_the_backend_implements_it(emission: str) -> None:
    """The loop emission builds on every backend, with a dynamic box count; INMSLayer only where
    capabilities().nms_layer: TensorRT-RTX 1.7 has no implementation of it ("has no runners"), so
    that build fails with an error naming the layer."""
    spec = (netdef.Input("boxes", (("n", 1, 20, 64), 4)), netdef.Input("scores", (("n", 1, 20, 64),)),
            netdef.Input("idxs", (("n", 1, 20, 64),), "int64"))
    with F.emission(nms=emission):
        if emission == "layer" and not netdef.backend.capabilities().nms_layer:
            with pytest.raises(netdef.BuildError, match=r"nms.*no runners"):
                netdef.build(NMSPair(0.5), *spec, progress=False)
        else:
            plan = netdef.build(NMSPair(0.5), *spec, progress=False)
            assert len(plan) > 0 and plan.metadata["inputs"][0]["max"] == [64, 4]


def test_the_emission_switch_and_its_default() -> None:
    """nms="layer" emits INMSLayer, "loop" a loop with TopK and no NMS or NonZero layer (neither
    builds on TensorRT-RTX); the default follows backend.capabilities().nms_layer."""
    spec = (netdef.Input("boxes", (("n", 1, 20, 64), 4)), netdef.Input("scores", (("n", 1, 20, 64),)),
            netdef.Input("idxs", (("n", 1, 20, 64),), "int64"))
    kinds = {e: {layer.type.name for layer in trace(NMSPair(0.5), *spec, emission=e).layers} for e in EMISSIONS}
    assert "NMS" in kinds["layer"] and "LOOP_OUTPUT" not in kinds["layer"]
    assert not {"NMS", "NON_ZERO"} & kinds["loop"] and {"TRIP_LIMIT", "RECURRENCE", "TOPK"} <= kinds["loop"]
    assert F.emission_for("nms") == ("layer" if netdef.backend.capabilities().nms_layer else "loop")
    assert netdef.backend.capabilities_of("tensorrt_rtx", "1.7.0").nms_layer is False
    with F.emission(nms="loop"), F.emission(attention="decomposed"):
        assert F.emission_for("nms") == "loop"  # another op's choice keeps this one
    with pytest.raises(ValueError, match="emission nms='fused': choose 'layer' or 'loop' or None"), \
            F.emission(nms="fused"):
        pass
    multi = trace(Multi(7), netdef.Input("boxes", (("b", 1, 3, 8), 30, 4)), netdef.Input("scores", (("b", 1, 3, 8), 30, 5)),
                  emission="loop")  # the detector form: nothing data-dependent
    assert [tuple(multi.network.get_output(i).shape) for i in range(4)] == [(-1, 7, 4), (-1, 7), (-1, 7), (-1,)]


def test_the_loop_emission_needs_a_static_class_count() -> None:
    class Dynamic(nn.Module):
        def forward(self, boxes, scores):
            return F.non_max_suppression(boxes, scores, 5, 0.5)

    spec = (netdef.Input("boxes", (1, 10, 4)), netdef.Input("scores", (1, 10, ("c", 1, 3, 8))))
    with pytest.raises(netdef.TraceError, match="loop emission.* static number of classes"):
        trace(Dynamic(), *spec, emission="loop")
