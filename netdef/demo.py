"""The main job: LeNet-5 from the shipped weights -> engine -> layer-by-layer proof -> accuracy.

Runs on a CPU-only machine: the engine is built and serialized with TensorRT; the
numerics are checked with the reference runner (and with the engine itself when a
GPU the backend supports is present).
"""
from __future__ import annotations

import os
import time

import numpy as np

import netdef
from netdef.errors import NetdefError
from netdef.optional import require


def main(engine_path: str = "lenet5.engine") -> int:
    torch = require("torch", "netdef demo")
    require("sklearn", "netdef demo (its held-out digits)")  # before the build, not after it
    from netdef.data import load_digits
    from netdef.models.lenet import WEIGHTS_DIR, LeNet5
    from netdef.models.originals import LeNet5 as TorchLeNet5

    weights_path = WEIGHTS_DIR / "lenet5.safetensors"
    if not weights_path.exists():
        raise NetdefError(f"the shipped weights are missing from this netdef installation: {weights_path}")
    t0 = time.perf_counter()
    state = netdef.weights.load(weights_path)
    model = LeNet5()
    model.load_state_dict(state)
    print(f"[1/4] loaded {len(state)} tensors from {weights_path.name} ({time.perf_counter() - t0:.2f} s)")

    t0 = time.perf_counter()
    plan = netdef.build(model, netdef.Input("x", (("batch", 1, 64, 512), 1, 28, 28)), progress=False)
    netdef.save_engine(plan, engine_path)
    build_s = time.perf_counter() - t0
    print(f"[2/4] built {engine_path}: {len(plan):,} bytes, {plan.metadata['layers']} layers, dynamic batch "
          f"1..512, {build_s:.2f} s ({plan.metadata['backend']} {plan.metadata['backend_version']})")

    images, labels = load_digits("test")
    original = TorchLeNet5()
    original.load_state_dict(netdef.weights.to_torch(state, like=original.state_dict()))
    report = netdef.compare(original, model, (torch.from_numpy(images[:64]),))
    print("[3/4] layer-by-layer comparison against the PyTorch original (64 held-out digits, float32):")
    print(report)

    t0 = time.perf_counter()
    net = netdef.trace(model, netdef.Input("x", (("batch", 1, 64, len(images)), 1, 28, 28)))
    logits = netdef.reference.run(net, {"x": images})["output"]
    ref_s = time.perf_counter() - t0
    with torch.no_grad():
        torch_logits = original(torch.from_numpy(images))
    acc = float((logits.argmax(1).numpy() == labels).mean())
    torch_acc = float((torch_logits.argmax(1).numpy() == labels).mean())
    agree = float((logits.argmax(1) == torch_logits.argmax(1)).float().mean())
    print(f"[4/4] held-out accuracy on {len(labels)} digits: reference runner {acc:.2%} "
          f"(PyTorch {torch_acc:.2%}, predictions agree on {agree:.2%}; {ref_s:.2f} s)")
    print(_engine_accuracy(engine_path, images, labels))
    print(f"\nsummary: accuracy {acc:.2%}, build {build_s:.2f} s, per-layer check "
          f"{'passed' if report.ok else 'FAILED'}; engine at {os.path.abspath(engine_path)}")
    return 0 if report.ok and agree == 1.0 else 1


def _engine_accuracy(engine_path: str, images: np.ndarray, labels: np.ndarray) -> str:
    """Run the engine where a supported GPU exists; otherwise say why not."""
    try:
        engine = netdef.Engine.load(engine_path)
    except (NetdefError, ImportError) as exc:
        return f"      engine not run: {str(exc).splitlines()[0]}"
    out = engine(images)
    out = out if isinstance(out, np.ndarray) else next(iter(out.values()))
    return f"      engine accuracy: {float((np.asarray(out).argmax(1) == labels).mean()):.2%}"
