"""YOLOv5 and PointPillars end to end: every module, and the final detections, against torch originals.

Weights are random (no download), rescaled (netdef.testing.random_original) and then
calibrated so the detectors detect: YOLOv5's objectness bias and PointPillars' class bias are
shifted so a few anchors per input score above the confidence threshold, the shift placed
midway between two anchors' crossing points (originals.calibrate_*). Final detections are
discontinuous in the scores, so the float16 checks first assert that the inputs' decision
margins (tests/_detection_helpers.margins) exceed float16's drift. NMS runs in both emissions
(F.emission(nms="layer" | "loop")); the engines build complete, NMS inside, with the loop
emission (TensorRT-RTX has no implementation of the NMS layer).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from _detection_helpers import margins
from helpers import random_original
from netdef.models import originals, pointpillars, yolov5

import netdef
from netdef import functional as F
from netdef.data import sample_photos

SIZE = 64
EMISSIONS = ("layer", "loop")
DRIFT = {"score": 0.01, "iou": 0.02}  # float16's drift of scores and IoUs measured here, x2


@functools.cache
def images() -> torch.Tensor:
    """scikit-learn's two photographs and two uniform-noise images, 64x64."""
    noise = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return torch.cat([torch.from_numpy(sample_photos(SIZE)), noise])


@functools.cache
def yolo(nc: int, seed: int, candidates: float) -> tuple:
    torch.manual_seed(seed)
    x = images()
    original = random_original(originals.DetectionModel(nc=nc, max_det=10), x, seed=seed)
    originals.calibrate_objectness(original, x, candidates=candidates, class_gain=1.0)
    return original, x


def yolo_port(original: torch.nn.Module, nc: int) -> yolov5.DetectionModel:
    port = yolov5.DetectionModel(nc=nc, max_det=10)
    port.load_state_dict(original.state_dict())
    return port


def yolo_margins(original: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    seen = []
    hook = original.model[-2].register_forward_hook(lambda m, i, o: seen.append(o[0]))
    with torch.no_grad():
        original(x)
    hook.remove()
    p = seen[0]
    return margins(p[..., 5:] * p[..., 4:5], originals.xywh2xyxy(p[..., :4]), 0.25, 0.45)


# (nc, seed, candidates): COCO's 80 classes with detections in three of the four images for float32;
# 3 classes where every float16 decision margin exceeds the drift
FLOAT32, FLOAT16 = (80, 0, 4), (3, 4, 2)


def test_yolov5_state_dict_is_ultralytics() -> None:
    original, _ = yolo(*FLOAT32)
    keys = list(original.state_dict())
    assert keys == list(yolov5.DetectionModel().state_dict())
    assert "model.24.anchors" in keys and "model.24.m.2.bias" in keys and keys[-1] == "model.24.m.2.bias"


@pytest.mark.parametrize("emission", EMISSIONS)
def test_yolov5_detections_match_in_float32(emission: str) -> None:
    original, x = yolo(*FLOAT32)
    with torch.no_grad():
        count = original(x)[3]
    assert (count > 0).sum() >= 3 and count.sum() >= 10, count  # a meaningful number of detections
    # exact float32 math: TF32 rounding (compare's default model of a float32 engine) is as coarse as
    # float16's and flips near-tied decisions of this many-candidate setup; the float16 test below
    # checks its inputs' decision margins first
    with F.emission(nms=emission):
        report = netdef.compare(original, yolo_port(original, FLOAT32[0]), (x,), tf32=False)
    assert report.ok, str(report)
    assert {"model.24", "model.25"} <= {r.path for r in report.rows}


@pytest.mark.parametrize("emission", EMISSIONS)
def test_yolov5_detections_match_in_float16(emission: str) -> None:
    original, x = yolo(*FLOAT16)
    m = yolo_margins(original, x)
    assert min(m["conf"], m["order"], m["label"]) > DRIFT["score"] and m["iou"] > DRIFT["iou"], m
    assert m["candidates"] >= 5
    with F.emission(nms=emission):
        report = netdef.compare(original, yolo_port(original, FLOAT16[0]), (x,), dtype="float16")
    assert report.ok, str(report)


def _anchors_swapped(port, mp):
    port.model[24].anchors = port.model[24].anchors[:, :, ::-1].copy()  # (h, w) read as (w, h)


def _grid_offset_missing(port, mp):
    mp.setattr(yolov5, "grid_offsets", lambda ny, nx: originals.grid_offsets(ny, nx) + np.float32(0.5))


def _stride_wrong(port, mp):
    port.model[24].stride = (8.0, 16.0, 16.0)


def _xywh_as_xyxy(port, mp):
    mp.setattr(yolov5.ops, "box_convert", lambda boxes, i, o: boxes)


def _iou_threshold_off(port, mp):
    port.model[25].iou = 0.2


def _class_offset_missing(port, mp):
    real = yolov5.ops.multiclass_nms

    def agnostic(boxes, scores, iou, conf, d, *args, **kwargs):  # every class in one: no class offset
        return real(boxes, netdef.functional.amax(scores, -1, keepdim=True), iou, conf, d, *args, **kwargs)
    mp.setattr(yolov5.ops, "multiclass_nms", agnostic)


MISTAKES = {
    "anchor order swapped": (_anchors_swapped, "model.24"),
    "grid offset 0.5 missing": (_grid_offset_missing, "model.24"),
    "stride wrong": (_stride_wrong, "model.24"),
    "xywh read as xyxy": (_xywh_as_xyxy, "model.25"),
    "IoU threshold off": (_iou_threshold_off, "model.25"),
    "class offset missing in batched NMS": (_class_offset_missing, "model.25"),
}


# every mistake with the loop emission (TensorRT-RTX's default) in both dtypes; NMS's own also with the layer
PLANTED = [(m, d, "loop") for m in MISTAKES for d in ("float32", "float16")] + [
    (m, "float32", "layer") for m, (_, where) in MISTAKES.items() if where == "model.25"]


@pytest.mark.parametrize("mistake,dtype,emission", PLANTED)
def test_yolov5_planted_mistakes_are_named(mistake: str, dtype: str, emission: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = FLOAT32 if mistake.startswith(("IoU", "class")) else FLOAT16
    original, x = yolo(*config)
    port = yolo_port(original, config[0])
    plant, where = MISTAKES[mistake]
    plant(port, monkeypatch)
    with F.emission(nms=emission):
        report = netdef.compare(original, port, (x,), dtype=dtype)
    assert not report.ok
    assert report.first_failure.path == where, str(report)


def test_yolov5_engine_builds_complete_with_dynamic_batch() -> None:
    """The whole DetectionModel, NMS inside, builds with a dynamic batch in the loop emission; the
    NMS layer only where the backend implements it (TensorRT-RTX 1.7 does not, and says where)."""
    original, _ = yolo(*FLOAT32)
    port = yolo_port(original, FLOAT32[0])
    spec = netdef.Input("x", (("batch", 1, 2, 4), 3, SIZE, SIZE))
    with F.emission(nms="loop"):
        plan = netdef.build(port, spec, dtype="float16", progress=False)
    assert plan.metadata["inputs"][0]["max"] == [4, 3, SIZE, SIZE]
    assert [o["shape"] for o in plan.metadata["outputs"]] == [[-1, 10, 4], [-1, 10], [-1, 10], [-1]]
    if not netdef.backend.capabilities().nms_layer:
        with F.emission(nms="layer"), pytest.raises(netdef.BuildError, match=r"model\.25/nms.*no runners"):
            netdef.build(port, spec, progress=False)


# ---- PointPillars ------------------------------------------------------------------------------
PP_NAMES = ["voxels", "voxel_num_points", "voxel_coords"]


@functools.cache
def pillars(seed: int = 0) -> tuple:
    cfg = pointpillars.Config(max_detections=20)
    clouds = [pointpillars.synthetic_scene(cfg, s) for s in (10, 11)]
    inputs = tuple(torch.from_numpy(a) for a in pointpillars.voxelize(clouds, cfg))
    torch.manual_seed(seed)
    original = random_original(originals.PointPillar(cfg), inputs, seed=seed)
    originals.calibrate_scores(original, inputs, candidates=8)
    return cfg, original, inputs


def pillar_port(cfg, original) -> pointpillars.PointPillar:
    port = pointpillars.PointPillar(cfg)
    port.load_state_dict(original.state_dict())
    return port


def test_pointpillars_state_dict_is_openpcdet() -> None:
    cfg, original, _ = pillars()
    keys = list(original.state_dict())
    assert keys == list(pointpillars.PointPillar(cfg).state_dict())
    for key in ("vfe.pfn_layers.0.linear.weight", "vfe.pfn_layers.0.norm.running_var", "backbone_2d.blocks.0.1.weight",
                "backbone_2d.deblocks.2.0.weight", "dense_head.conv_cls.bias", "dense_head.conv_dir_cls.weight"):
        assert key in keys


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_pointpillars_boxes_match(dtype: str, emission: str) -> None:
    cfg, original, inputs = pillars()
    with torch.no_grad():
        count = original(*inputs)[3]
    assert (count >= 1).all() and count.sum() >= 8, count
    with F.emission(nms=emission):
        report = netdef.compare(original, pillar_port(cfg, original), inputs, dtype=dtype, input_names=PP_NAMES)
    assert report.ok, str(report)
    assert "post_processing" in {r.path for r in report.rows}


def test_pointpillars_planted_anchor_mistake_is_named() -> None:
    cfg, original, inputs = pillars()
    port = pillar_port(cfg, original)
    anchors = port.dense_head.anchors.copy()
    anchors[:, [3, 4]] = anchors[:, [4, 3]]  # dx and dy swapped
    port.dense_head.anchors = anchors
    report = netdef.compare(original, port, inputs, input_names=PP_NAMES)
    assert not report.ok and report.first_failure.path == "dense_head", str(report)


def test_pointpillars_engine_builds_complete_with_dynamic_batch_and_pillars() -> None:
    """The whole PointPillar, post-processing inside, builds with a dynamic batch and pillar count
    in the loop emission, and runs (reference) at another batch and pillar count than traced."""
    cfg, original, inputs = pillars()
    port = pillar_port(cfg, original)
    p, m = inputs[0].shape[1], cfg.max_points
    spec = (netdef.Input("voxels", (("batch", 1, 2, 4), ("pillars", 1, p, 2 * p), m, 4)),
            netdef.Input("voxel_num_points", (("batch", 1, 2, 4), ("pillars", 1, p, 2 * p)), "int32"),
            netdef.Input("voxel_coords", (("batch", 1, 2, 4), ("pillars", 1, p, 2 * p), 3), "int32"))
    with F.emission(nms="loop"):
        plan = netdef.build(port, *spec, dtype="float16", progress=False)
        net = netdef.trace(port, *spec)
    assert [i["max"][:2] for i in plan.metadata["inputs"]] == [[4, 2 * p]] * 3
    assert [o["shape"] for o in plan.metadata["outputs"]] == [[-1, 20, 7], [-1, 20], [-1, 20], [-1]]
    one = [t[:1, : p // 2] for t in inputs]
    got = netdef.reference.run(net, dict(zip(PP_NAMES, one)))
    with torch.no_grad():
        want = original(*one)
    for g, w in zip(got.values(), want):
        netdef.tolerance.assert_close(g, w, "float32")
    if not netdef.backend.capabilities().nms_layer:
        with F.emission(nms="layer"), pytest.raises(netdef.BuildError, match=r"post_processing/nms"):
            netdef.build(port, *spec, progress=False)
