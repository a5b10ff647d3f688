"""torchvision ResNet-50 -> TensorRT engine: float16, dynamic batch 1..32, per-module report.

The netdef port (netdef.models.resnet.resnet50) has torchvision's module tree and
state_dict names, so the torchvision weights load unchanged. No weights are downloaded:
the model is randomly initialised with random BatchNorm statistics (pass --weights to
use a real state_dict file).

Run: python examples/resnet50_torchvision.py [--weights r50.pth] [--size 224] [--engine r50.engine]
"""
from __future__ import annotations

import argparse
import sys
import time

import netdef
from netdef.models.resnet import resnet50
from netdef.optional import require


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="torchvision ResNet-50 weights (.pth/.safetensors/.wts); default random")
    p.add_argument("--size", type=int, default=224, help="image size (default 224)")
    p.add_argument("--engine", default="resnet50_fp16.engine", help="where to save the engine")
    args = p.parse_args(argv)
    torch = require("torch", "this example")
    torchvision = require("torchvision", "this example")  # netdef's [torchvision] extra

    torch.manual_seed(0)
    original = torchvision.models.resnet50(weights=None).eval()
    if args.weights:
        state = netdef.weights.load(args.weights)
        original.load_state_dict(netdef.weights.to_torch(state, like=original.state_dict()))
    else:
        with torch.no_grad():
            for m in original.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    model = resnet50()
    model.load_state_dict(original.state_dict())

    t0 = time.perf_counter()
    plan = netdef.build(model, netdef.Input("x", (("batch", 1, 8, 32), 3, args.size, args.size)),
                        dtype="float16")
    netdef.save_engine(plan, args.engine)
    print(f"built {args.engine}: {len(plan):,} bytes in {time.perf_counter() - t0:.1f} s "
          f"(float16, batch 1..32)")

    x = torch.randn(2, 3, args.size, args.size)
    report = netdef.compare(original, model, (x,), dtype="float16")
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except netdef.NetdefError as exc:  # a missing package or a bad weights file: one line, no traceback
        print(f"{sys.argv[0]}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
