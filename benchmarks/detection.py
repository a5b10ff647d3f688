"""NMS's two emissions: engine build time and plan size of the complete detectors, and the
reference runner's time for each emission on realistic candidate counts.

Table 1 builds YOLOv5n (DetectionModel: backbone, Detect, NMS) and PointPillars (complete,
post-processing inside) with the loop emission, dynamic batch (and pillar count), on the
installed backend, in this process; "head only" is the same network without post-processing,
so the difference is what NMS and its output packing cost. The NMS layer itself cannot be
built on TensorRT-RTX (no implementation), so it has no row there.

Table 2 runs `ops.multiclass_nms` (YOLOv5's NMS: 25200 anchors x 80 classes at 640x640, only
each anchor's best class scoring, max_det 300) and `ops.nms` (a data-dependent result) through
the reference runner in both emissions on the same inputs, asserting that they agree.

Engines cannot run here (no GPU), so no engine latency is measured.
Run: python benchmarks/detection.py [--repeats 3] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import netdef
from _machine import describe
from netdef import functional as F
from netdef import nn, ops
from netdef.models import pointpillars, yolov5


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


# ---- table 1: engines ------------------------------------------------------------------------------
class HeadOnly(nn.Module):
    """A detector without its post-processing module (the last one)."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, *x: Any) -> Any:
        m = self.model
        if self.kind == "yolov5":
            y: list[Any] = []
            out = x[0]
            for src, layer in zip(m.sources[:-1], m.model[:-1]):
                if src != -1:
                    out = [out if j == -1 else y[j] for j in src]
                out = layer(out)
                y.append(out)
            return out[0]
        voxels, num, coords = x
        return m.dense_head(m.backbone_2d(m.map_to_bev_module(m.vfe(voxels, num, coords), num, coords)))


def detectors(quick: bool) -> list[tuple[str, nn.Module, tuple, str]]:
    """(label, model, inputs, kind): YOLOv5n at 640 (and 64), PointPillars as configured."""
    out = []
    for size, det in ((64, 10),) + (() if quick else ((640, 300),)):
        model = yolov5.DetectionModel(nc=80, max_det=det)
        spec = (netdef.Input("images", (("batch", 1, 1, 4), 3, size, size)),)
        out.append((f"YOLOv5n {size}x{size}, 80 classes, max_det {det}", model, spec, "yolov5"))
    for cfg, pillars in ((pointpillars.Config(max_detections=20), 600),) + (
            () if quick else ((pointpillars.Config(), 12000),)):
        nx, ny = cfg.grid_size
        spec = (netdef.Input("voxels", (("batch", 1, 1, 4), ("pillars", 1, pillars // 2, pillars), cfg.max_points, 4)),
                netdef.Input("voxel_num_points", (("batch", 1, 1, 4), ("pillars", 1, pillars // 2, pillars)), "int32"),
                netdef.Input("voxel_coords", (("batch", 1, 1, 4), ("pillars", 1, pillars // 2, pillars), 3), "int32"))
        out.append((f"PointPillars {nx}x{ny} BEV, up to {pillars} pillars, {cfg.max_detections} boxes",
                     pointpillars.PointPillar(cfg), spec, "pointpillars"))
    return out


def engines(repeats: int, quick: bool) -> None:
    print(f"\n## Engine build, NMS emission 'loop' ({netdef.backend.name()} {netdef.backend.version()})\n")
    print("| detector | dtype | network | layers | build s (median) | plan MB |")
    print("|---|---|---|---|---|---|")
    for label, model, spec, kind in detectors(quick):
        for dtype in ("float32", "float16"):
            for part, module in (("complete", model), ("head only", HeadOnly(model, kind))):
                def build(module: nn.Module = module, spec: tuple = spec, dtype: str = dtype) -> Any:
                    return netdef.build(module, *spec, dtype=dtype, progress=False)
                with F.emission(nms="loop"):
                    seconds, plan = median_seconds(build, repeats)
                print(f"| {label} | {dtype} | {part} | {plan.metadata['layers']} | {seconds:.2f} | "
                      f"{len(plan) / 1e6:.1f} |", flush=True)


# ---- table 2: the reference runner -------------------------------------------------------------------
class YoloNMS(nn.Module):
    def __init__(self, max_det: int) -> None:
        super().__init__()
        self.max_det = max_det

    def forward(self, boxes, scores):
        return ops.multiclass_nms(boxes, scores, 0.45, 0.25, self.max_det)


class PlainNMS(nn.Module):
    def forward(self, boxes, scores):
        return ops.nms(boxes, scores, 0.5)


def yolo_like(candidates: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """25200 boxes on a 640x640 image (xyxy, sides 8-200 px) and [1, 25200, 80] scores: only each
    box's best class scores (as YOLOv5's NMS module feeds it), `candidates` of them above 0.25."""
    g = torch.Generator().manual_seed(seed)
    n, c = 25200, 80
    centre, side = torch.rand(n, 2, generator=g) * 640, 8 + torch.rand(n, 2, generator=g) * 192
    boxes = torch.cat([centre - side / 2, centre + side / 2], 1)[None]
    best = torch.rand(n, generator=g) * 0.25  # below the threshold
    above = torch.randperm(n, generator=g)[:candidates]
    best[above] = 0.25 + 0.75 * torch.rand(candidates, generator=g)
    scores = torch.zeros(1, n, c)
    scores[0, torch.arange(n), torch.randint(0, c, (n,), generator=g)] = best
    return boxes, scores


def reference(repeats: int, quick: bool) -> None:
    print("\n## Reference runner: loop emission against the NMS layer's reference semantics\n")
    print("| op | input | kept | layer s | loop s | loop iterations |")
    print("|---|---|---|---|---|---|")
    counts = (1000,) if quick else (200, 1000, 5000, 20000)
    for candidates in counts:
        boxes, scores = yolo_like(candidates)
        row = _compare(YoloNMS(300), (netdef.Input("boxes", (1, 25200, 4)), netdef.Input("scores", (1, 25200, 80))),
                       {"boxes": boxes, "scores": scores}, repeats, slots=300)
        print(f"| multiclass_nms (max_det 300) | 25200 x 80, {candidates} candidates | {row}", flush=True)
    for n in (1000,) if quick else (1000, 4000):
        g = torch.Generator().manual_seed(n)
        centre, side = torch.rand(n, 2, generator=g) * 640, 8 + torch.rand(n, 2, generator=g) * 192
        boxes = torch.cat([centre - side / 2, centre + side / 2], 1)
        spec = (netdef.Input("boxes", (("n", 1, n, 5000), 4)), netdef.Input("scores", (("n", 1, n, 5000),)))
        row = _compare(PlainNMS(), spec, {"boxes": boxes, "scores": torch.rand(n, generator=g)}, repeats, slots=5000)
        print(f"| nms (data-dependent, N dynamic) | {n} boxes | {row}", flush=True)


def _compare(module: nn.Module, spec: tuple, feed: dict, repeats: int, slots: int) -> str:
    """Both emissions on one input: '| kept | layer s | loop s | loop iterations |'."""
    results, seconds = {}, {}
    for emission in ("layer", "loop"):
        with F.emission(nms=emission):
            program = netdef.reference.compile(netdef.trace(module, *spec))
        seconds[emission], results[emission] = median_seconds(lambda program=program: program(feed), repeats)
    for a, b in zip(results["layer"].values(), results["loop"].values()):
        assert torch.equal(a, b), "the emissions disagree"
    out = list(results["loop"].values())
    kept = int(out[3].sum()) if len(out) == 4 else len(out[0])
    return f"{kept} | {seconds['layer']:.2f} | {seconds['loop']:.2f} | {min(kept + 1, slots)} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="the small configurations only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    np.random.seed(0)
    print(describe())
    engines(args.repeats, args.quick)
    reference(args.repeats, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
