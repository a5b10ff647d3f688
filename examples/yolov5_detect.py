"""YOLOv5 with its post-processing inside the engine: decoding and class-aware NMS, no plugin.

The complete detector (netdef.models.yolov5.DetectionModel: backbone, Detect head, NMS) is
checked module by module against its torch original, whose NMS is written with
torchvision.ops.batched_nms, on one of scikit-learn's sample photographs. The weights are
random (nothing is downloaded), calibrated so the detector detects: the objectness bias is
shifted so about `--candidates` anchors score above the confidence threshold. The detections
are printed and drawn to a PNG. Boxes and classes therefore mean nothing; the point is that
the engine's detections equal PyTorch's.

Run: python examples/yolov5_detect.py [--size 128] [--out detections.png]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import netdef
from netdef.data import sample_photos
from netdef.models import originals, yolov5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="input size, a multiple of 32 (default 128)")
    p.add_argument("--candidates", type=float, default=12.0, help="anchors above conf per image after calibration")
    p.add_argument("--out", default="yolov5_detections.png", help="the photo with its detections drawn")
    args = p.parse_args(argv)

    photo = torch.from_numpy(sample_photos(args.size, letterbox=False)[:1])  # china.jpg, centre square
    torch.manual_seed(0)
    original = originals.DetectionModel(conf=0.25, iou=0.45, max_det=20).eval()
    with torch.no_grad():  # He-initialised convolutions keep the activations' scale through 60 layers;
        for m in original.modules():  # random BatchNorm statistics, so folding mistakes cannot hide
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    originals.calibrate_objectness(original, photo, candidates=args.candidates, class_gain=1.0)
    model = yolov5.DetectionModel(conf=0.25, iou=0.45, max_det=20)
    model.load_state_dict(original.state_dict())

    report = netdef.compare(original, model, (photo,))
    print(report.summary())
    net = netdef.trace(model, netdef.Input("images", (("batch", 1, 1, 8), 3, args.size, args.size)))
    boxes, scores, classes, count = netdef.reference.run(net, {"images": photo}).values()
    n = int(count[0])
    print(f"{n} detections (engine outputs {', '.join(net.outputs)}: fixed size {tuple(boxes.shape)}, "
          f"valid count {count.tolist()})")
    for b, s, c in zip(boxes[0, :n].tolist(), scores[0, :n].tolist(), classes[0, :n].tolist()):
        print(f"  class {c:2d}  score {s:.3f}  box ({b[0]:6.1f}, {b[1]:6.1f}, {b[2]:6.1f}, {b[3]:6.1f})")
    layers = sorted({layer.type.name for layer in net.layers} & {"NMS", "TOPK", "SCATTER", "GATHER", "TRIP_LIMIT"})
    print(f"NMS emission: {netdef.functional.emission_for('nms')} (the NMS layer where the backend builds it, "
          f"else a loop); post-processing layers in the network: {layers} (no plugin)")

    from PIL import Image, ImageDraw

    image = Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for b, c in zip(boxes[0, :n].tolist(), classes[0, :n].tolist()):
        draw.rectangle(b, outline=(255, 64, 32))
        draw.text((b[0] + 2, b[1] + 1), str(c), fill=(255, 255, 0))
    image.save(args.out)
    print(f"drawn to {args.out}")
    return 0 if report.ok and n > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
