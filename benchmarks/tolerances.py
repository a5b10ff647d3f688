"""Derive compare's default tolerance and drift budgets from held-out models; print them.

The models (benchmarks/heldout.py: SqueezeNet 1.1, ShuffleNetV2 x0.5, MobileNetV3-Small,
EfficientNet-B0, ConvNeXt-Tiny, DenseNet-121) are correct ports that no test asserts on, with
random weights scaled to unit activations (netdef.testing.random_original) and random
BatchNorm statistics. For each:

* stage one: the float32 port against torch; per module output, max|a-b| against the port's own
  float32 rounding max|a32 - a64| (and against RMS(torch) where the port rounds nothing);
* stage two, per precision: the network as built against the float32 port; per module output,
  the SNR (dB) and max|a-b| / RMS.

Rules (docs/precision.md): the rounding factor is 3x the worst ratio of error to rounding, and
the floor atol 10x the worst error/RMS where the port rounds nothing (1e-6 if there is none),
each rounded up to 1, 2 or 5 times a power of ten (rtol stays 0); each precision's budget is the worst SNR less 10 dB (3.2x the noise amplitude), rounded
down to a whole 5 dB, and 3x the worst max error, rounded up the same way.

Usage: python benchmarks/tolerances.py [--device cpu|cuda] [--size 64] [--models a,b] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netdef  # noqa: E402
from _machine import describe  # noqa: E402
from heldout import MODELS, port_of  # noqa: E402
from netdef.quantize import calibrate  # noqa: E402
from netdef.testing import random_original  # noqa: E402
from netdef.tolerance import Budget  # noqa: E402

OPEN = Budget(-math.inf, math.inf)  # measure only: every drift passes
PRECISIONS = {  # name -> compare() arguments beyond the model and inputs
    "float32": dict(dtype="float32", tf32=False),  # BatchNorm folding only
    "tf32": dict(dtype="float32", tf32=True),
    "float16": dict(dtype="float16"),
    "bfloat16": dict(dtype="bfloat16"),
    "int8": dict(dtype="float32", tf32=False, quantization="int8"),
    "float8_e4m3fn": dict(dtype="float32", tf32=False, quantization="float8_e4m3fn"),
}


def _rms_of(row) -> float:
    """RMS of the torch tensor of a row, from its stats (needed_atol = max|a-b| / RMS at zero allowance)."""
    return row.stats.max_abs / row.stats.needed_atol if row.stats.needed_atol else 1.0


def nice_up(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= x."""
    k = math.floor(math.log10(x))
    return next(m * 10 ** k for m in (1, 2, 5, 10) if m * 10 ** k >= x * (1 - 1e-12))


def measure(name: str, size: int, device: str) -> dict:
    make = MODELS[name][0]
    gen = torch.Generator().manual_seed(11)
    calib = torch.randn(4, 3, size, size, generator=gen)
    original = random_original(make(), calib, seed=5)
    port = port_of(name, original)
    x = torch.randn(2, 3, size, size, generator=gen)
    out: dict = {"model": name}
    # stage one with no allowance but the rounding measured: each row's error against its rounding
    report = netdef.compare(original, port, x, "float32", fold_batchnorm=False, tf32=False, device=device,
                            atol=0.0, rtol=0.0, noise_factor=1.0)
    rows = [r for r in report.rows if r.stats is not None]
    if not rows or any(r.stats is None or r.stats.cosine < 0.9999 for r in report.rows):
        raise SystemExit(f"{name}: the held-out port does not match its original:\n{report}")
    with_noise = [r.stats.max_abs / (r.stats.noise * _rms_of(r)) for r in rows if r.stats.noise > 0]
    exact = [r.stats.needed_atol for r in rows if r.stats.noise == 0]  # max|a-b| / RMS where a32 == a64
    out["rows"] = len(rows)
    out["err_over_rounding"] = max(with_noise)
    out["exact_rows"] = len(exact)
    out["err_where_exact"] = max(exact, default=0.0)
    for prec, kw in PRECISIONS.items():
        kw = dict(kw)
        if "quantization" in kw:
            kw["quantization"] = calibrate(port, [calib], dtype=kw["quantization"])
        r = netdef.compare(original, port, x, atol=1.0, rtol=0.0, drift=OPEN, device=device, **kw)
        drifts = [row.drift for row in r.rows if row.drift is not None]
        bad = [row.label for row in r.rows if row.drift is not None and row.drift.nonfinite]
        out[prec] = None if not drifts else {  # None: nothing to fold, so nothing differs in float32
            "min_snr_db": min(d.snr_db for d in drifts), "max_err": max(d.err for d in drifts), "nonfinite": bad}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=64, help="image size (default 64)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", help="also write the measurements here")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    for name in args.models.split(","):
        start = time.perf_counter()
        results.append(measure(name, args.size, args.device))
        print(f"measured {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"Held-out models, batch 2, {args.size}x{args.size}, device {args.device}; {describe()}; "
          f"torch {torch.__version__}, {netdef.backend.name()} {netdef.backend.version()}\n")
    head = ["model", "outputs", "worst err / rounding", "rows with no rounding", "their worst err/RMS"] + [
        f"{p} SNR dB / max err" for p in PRECISIONS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        cells = [r["model"], str(r["rows"]), f"{r['err_over_rounding']:.2f}", str(r["exact_rows"]),
                 f"{r['err_where_exact']:.2e}"]
        cells += ["-" if r[p] is None else f"{r[p]['min_snr_db']:.1f} / {r[p]['max_err']:.3g}"
                  + (" (nonfinite: " + ", ".join(r[p]["nonfinite"]) + ")" if r[p]["nonfinite"] else "")
                  for p in PRECISIONS]
        print("| " + " | ".join(cells) + " |")
    ratio = max(r["err_over_rounding"] for r in results)
    exact = max(r["err_where_exact"] for r in results)
    floor = nice_up(10 * exact) if exact > 0 else 1e-6
    print(f"\nstage one: worst error {ratio:.3g} x the port's own rounding, worst {exact:.3g} RMS where it "
          f"has none -> FLOAT32 = Float32(factor={nice_up(3 * ratio):g}, atol={floor:g})")
    print("drift budgets (stage two):")
    for p in PRECISIONS:
        measured = [r[p] for r in results if r[p] is not None]
        snr = min(m["min_snr_db"] for m in measured)
        err = max(m["max_err"] for m in measured)
        budget_snr = 5 * math.floor((snr - 10) / 5)
        print(f'    "{p}": Budget({budget_snr:.1f}, {nice_up(3 * err):g}),  # worst SNR {snr:.1f} dB, '
              f"max err {err:.3g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
