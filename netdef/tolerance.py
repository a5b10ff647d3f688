"""Default tolerances by dtype, and the error statistics every comparison reports.

One table serves tests, `netdef.compare` and the CLI, so "passes" means the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# dtype -> (atol, rtol). A value passes when |a - b| <= atol * scale + rtol * |b|, where
# scale = max(1, RMS of the expected tensor): reduced-precision error grows with the
# magnitude of the activations, so near-zero elements of a large tensor are judged
# against the tensor's own range, not against 1. Measured on the bundled models'
# fp16 ports (tests/test_models.py): the worst atol needed is 0.025 (MobileNetV2,
# YOLOv5n), 0.010 for every ResNet, so the fp16 default leaves a 2x margin.
DEFAULT: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "float16": (5e-2, 2e-2),
    "bfloat16": (2.5e-1, 1e-1),
    # 8-bit Q/DQ (netdef.quantize), measured on a ResNet-18 port over three seeds: int8 with
    # max calibration needs atol 0.29 at rtol 0.25, FP8 up to 0.64 (docs/precision.md)
    "float8_e4m3fn": (1.0, 2.5e-1),
    "int8": (5e-1, 2.5e-1),
}


def for_dtype(dtype: str) -> tuple[float, float]:
    return DEFAULT.get(dtype, (0.0, 0.0))


@dataclass
class Stats:
    max_abs: float
    max_rel: float
    cosine: float
    atol: float
    rtol: float
    passed: bool
    # smallest atol that would pass at this rtol (Polygraphy-style hint), in the same RMS units
    needed_atol: float

    def __str__(self) -> str:
        return (f"max|a-b|={self.max_abs:.3g} max_rel={self.max_rel:.3g} cos={self.cosine:.6f} "
                f"(atol={self.atol:g}, rtol={self.rtol:g}: {'ok' if self.passed else 'FAIL'})")


def _f64(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def compare_arrays(actual: Any, expected: Any, atol: float, rtol: float) -> Stats:
    a, b = _f64(actual), _f64(expected)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Stats(0.0, 0.0, 1.0, atol, rtol, True, 0.0)
    nan_mismatch = bool(np.any(np.isnan(a) != np.isnan(b)))
    a0, b0 = np.nan_to_num(a), np.nan_to_num(b)
    diff = np.abs(a0 - b0)
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(b0), 1e-12)).max())
    na, nb = np.linalg.norm(a0), np.linalg.norm(b0)
    cosine = float(np.dot(a0.ravel(), b0.ravel()) / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    scale = max(1.0, float(nb / np.sqrt(b0.size)))
    needed = float((diff - rtol * np.abs(b0)).max()) / scale
    passed = not nan_mismatch and bool(np.all(diff <= atol * scale + rtol * np.abs(b0)))
    return Stats(max_abs, max_rel, cosine, atol, rtol, passed, max(needed, 0.0))


def assert_close(actual: Any, expected: Any, dtype: str = "float32",
                 atol: float | None = None, rtol: float | None = None, what: str = "") -> Stats:
    """Raise AssertionError with the statistics when `actual` is not within tolerance."""
    d_atol, d_rtol = for_dtype(dtype)
    s = compare_arrays(actual, expected, d_atol if atol is None else atol, d_rtol if rtol is None else rtol)
    if not s.passed:
        raise AssertionError(f"{what or 'values'} differ ({dtype}): {s}; atol >= {s.needed_atol:.3g} would pass")
    return s
