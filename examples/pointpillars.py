"""PointPillars end to end inside the engine: pillar feature net, PillarScatter, 2-D backbone with
deconvolution neck, SSD head with box decoding, and NMS, with OpenPCDet's module names.

The ONNX route stopped at PillarScatter (ScatterND, which TensorRT 7.1's parser rejected) and at
NMS, so PointPillars ports ended in hand-written plugins. Here PillarScatter is one TensorRT
scatter layer and NMS TensorRT's own NMS layer, or a loop of TopK and gather layers where the
backend cannot build that layer (TensorRT-RTX: F.emission(nms=...)); the whole network is checked module by module
and on the final boxes against the torch original (netdef.models.originals.PointPillar, whose
NMS is torchvision.ops.nms), on a synthetic point cloud: flat ground plus car-sized hollow
cuboids (netdef.models.pointpillars.synthetic_scene), voxelized into pillars as OpenPCDet does.
The weights are random; the class bias is shifted so a few anchors score above the threshold.

Run: python examples/pointpillars.py [--batch 2] [--scene 10]
"""
from __future__ import annotations

import argparse

import torch

import netdef
from netdef.models import originals
from netdef.models import pointpillars as pp

NAMES = ["voxels", "voxel_num_points", "voxel_coords"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2, help="point clouds in the batch (default 2)")
    p.add_argument("--scene", type=int, default=10, help="seed of the first synthetic scene")
    args = p.parse_args(argv)

    cfg = pp.Config(max_detections=20)
    clouds = [pp.synthetic_scene(cfg, args.scene + i) for i in range(args.batch)]
    inputs = tuple(torch.from_numpy(a) for a in pp.voxelize(clouds, cfg))
    print(f"{[len(c) for c in clouds]} points -> voxels {tuple(inputs[0].shape)} "
          f"(batch, pillars, points per pillar, xyzr); {inputs[1].gt(0).sum(1).tolist()} non-empty pillars")

    torch.manual_seed(0)
    original = originals.PointPillar(cfg).eval()
    with torch.no_grad():  # He-initialised weights keep activations' scale; random BatchNorm statistics
        for m in original.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    originals.calibrate_scores(original, inputs, candidates=8)
    model = pp.PointPillar(cfg)
    model.load_state_dict(original.state_dict())

    report = netdef.compare(original, model, inputs, input_names=NAMES)
    print(report)
    spec = (netdef.Input("voxels", (("batch", 1, 2, 4), ("pillars", 1, 1000, 12000), cfg.max_points, 4)),
            netdef.Input("voxel_num_points", (("batch", 1, 2, 4), ("pillars", 1, 1000, 12000)), "int32"),
            netdef.Input("voxel_coords", (("batch", 1, 2, 4), ("pillars", 1, 1000, 12000), 3), "int32"))
    net = netdef.trace(model, *spec)
    boxes, scores, labels, count = netdef.reference.run(net, dict(zip(NAMES, inputs))).values()
    for i, n in enumerate(count.tolist()):
        print(f"cloud {i}: {n} boxes (x, y, z, dx, dy, dz, heading), label, score")
        for b, s, c in zip(boxes[i, :n].tolist(), scores[i, :n].tolist(), labels[i, :n].tolist()):
            print("   " + " ".join(f"{v:6.2f}" for v in b) + f"  {c}  {s:.3f}")
    kinds = [layer.name for layer in net.layers if layer.type.name in ("SCATTER", "NMS", "TRIP_LIMIT")]
    print(f"scatter, NMS and loop layers (NMS emission: {netdef.functional.emission_for('nms')}): {kinds}")
    return 0 if report.ok and int(count.sum()) > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
