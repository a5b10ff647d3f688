"""Tolerances and the error statistics every comparison reports, in two stages.

Stage one asks "is the port right?": the port traced in float32 against the torch original.
Two correct float32 computations of the same function differ by their rounding, which grows
with depth and with the network's conditioning, so no fixed tolerance fits every module of
every model. Stage one therefore measures it: the same port runs once more in float64, and
the distance between its float32 and float64 values, `noise = max|a32 - a64|`, is the port's
own rounding error at that tensor. A value passes when

    |a - b| <= factor * noise + atol * RMS(b) + rtol * |b|

with RMS(b) the root mean square of the expected tensor (no floor at 1, which let a
BatchNorm-eps mistake pass on small activations): the port may differ from torch by a few
times its own rounding, and a mistake larger than that is caught wherever it is.

Stage two asks "how far does reduced precision drift?": the port as built (float16,
bfloat16, 8-bit Q/DQ, TF32 math, folded BatchNorm) against the float32 run of the same
port, per module, by signal-to-noise ratio and by the worst element error relative to
the tensor's RMS, against a drift `Budget` per precision.

The defaults are derived by `benchmarks/tolerances.py` on held-out models that no test
asserts on (docs/precision.md cites its output); one table serves tests, `netdef.compare`
and the CLI, so "passes" means the same everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Float32:
    """Stage one's tolerance: |a - b| <= factor * max|a32 - a64| + atol * RMS(b) + rtol * |b|."""

    factor: float
    atol: float
    rtol: float = 0.0

    def __str__(self) -> str:
        return f"{self.factor:g} x float32 rounding + {self.atol:g} RMS" + (f" + {self.rtol:g} |b|" if self.rtol else "")


# stage one (float32 port vs torch), derived by benchmarks/tolerances.py on held-out models
# (docs/precision.md, 2026-11-29, CPU and CUDA): the worst error was 3.76x the port's own rounding
# (CUDA; 2.24x on CPU), so 3x that, rounded up; the floor is 8 float32 ulps of the RMS, for
# tensors the port computes exactly
FLOAT32 = Float32(factor=20.0, atol=1e-6)

# element tolerances by dtype for `assert_close`, the unit tests' check of single layers and ops
# against torch (|a - b| <= atol * RMS + rtol * |b|); compare() never uses them
DEFAULT: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "float16": (5e-2, 2e-2),
    "bfloat16": (2.5e-1, 1e-1),
    "float8_e4m3fn": (1.0, 2.5e-1),
    "int8": (5e-1, 2.5e-1),
}


@dataclass(frozen=True)
class Budget:
    """How far a module's output may drift from the float32 port: SNR at least `min_snr_db`,
    and no element further than `max_err` times the tensor's RMS."""

    min_snr_db: float
    max_err: float

    def __str__(self) -> str:
        return f"SNR >= {self.min_snr_db:g} dB, max|a-b| <= {self.max_err:g} RMS"


# stage two budgets by precision, derived by benchmarks/tolerances.py on held-out models
# (docs/precision.md, 2026-11-29, CPU and CUDA): the worst SNR less 10 dB and 3x the worst max error
DRIFT: dict[str, Budget] = {
    "float32": Budget(100.0, 5e-4),  # BatchNorm folding alone; worst 111.6 dB, 8.2e-5
    "tf32": Budget(30.0, 1.0),  # worst 44.2 dB, 0.22
    "float16": Budget(20.0, 2.0),  # worst 33.1 dB, 0.45
    "bfloat16": Budget(5.0, 20.0),  # worst 19.7 dB, 4.1
    "int8": Budget(-10.0, 100.0),  # worst 1.8 dB, 18.4 (per-tensor int8 of depthwise + SE models)
    "float8_e4m3fn": Budget(-10.0, 100.0),  # worst 1.5 dB, 18.6
}


def for_dtype(dtype: str) -> tuple[float, float]:
    return DEFAULT.get(dtype, (0.0, 0.0))


def _f64(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _rms(b: np.ndarray) -> float:
    """RMS of the finite values, floored at the smallest normal float32 (all-zero tensors)."""
    finite = b[np.isfinite(b)]
    rms = float(np.sqrt(np.mean(finite * finite))) if finite.size else 0.0
    return max(rms, float(np.finfo(np.float32).tiny))


def _nonfinite(a: np.ndarray, b: np.ndarray) -> str | None:
    """How `a` has NaN/inf where `b` has finite values (or the reverse), in words; None if it does not."""
    bad = []
    for what, fa, fb in (("NaN", np.isnan(a), np.isnan(b)), ("inf", np.isinf(a), np.isinf(b))):
        extra = int(np.count_nonzero(fa & ~fb))
        missing = int(np.count_nonzero(fb & ~fa))
        if extra:
            bad.append(f"{extra} {what} where the reference is finite")
        if missing:
            bad.append(f"{missing} finite where the reference is {what}")
    if not bad:
        infs = np.isinf(a) & np.isinf(b)
        if np.any(np.sign(a[infs]) != np.sign(b[infs])):
            bad.append("inf of the wrong sign")
    return "; ".join(bad) or None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb)) if na > 0 and nb > 0 else float(na == nb)


@dataclass
class Stats:
    """Stage one: one tensor against its expected value."""

    max_abs: float
    cosine: float
    atol: float
    rtol: float
    passed: bool
    needed_atol: float  # smallest atol that would pass with the rest unchanged (a Polygraphy-style hint), RMS units
    ratio: float  # the worst element's error as a fraction of its tolerance (<= 1 passes)
    nonfinite: str | None = None  # NaN/inf where the expected value is finite, or the reverse
    noise: float = 0.0  # the rounding allowance (factor * max|a32 - a64|), in RMS units

    def __str__(self) -> str:
        extra = f"; {self.nonfinite}" if self.nonfinite else ""
        noise = f"{self.noise:.3g} RMS rounding + " if self.noise else ""
        return (f"max|a-b|={self.max_abs:.3g} err/tol={self.ratio:.3g} cos={self.cosine:.6f} "
                f"(tolerance {noise}atol={self.atol:g}*RMS + rtol={self.rtol:g}*|b|: "
                f"{'ok' if self.passed else 'FAIL'}{extra})")


def compare_arrays(actual: Any, expected: Any, atol: float, rtol: float, noise: float = 0.0) -> Stats:
    """`actual` against `expected`: |a - b| <= noise + atol * RMS(b) + rtol * |b| elementwise, where
    `noise` is an absolute allowance for rounding (compare passes factor * max|a32 - a64|)."""
    a, b = _f64(actual), _f64(expected)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Stats(0.0, 1.0, atol, rtol, True, 0.0, 0.0)
    nonfinite = _nonfinite(a, b)
    both = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(both, a, 0.0), np.where(both, b, 0.0)
    diff = np.abs(a0 - b0)
    scale = _rms(b)
    allowed = noise + atol * scale + rtol * np.abs(b0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(np.where(diff > 0, diff / allowed, 0.0)))
    needed = float((diff - noise - rtol * np.abs(b0)).max()) / scale
    passed = nonfinite is None and bool(np.all(diff <= allowed))
    return Stats(float(diff.max()), _cosine(a0, b0), atol, rtol, passed, max(needed, 0.0),
                 ratio, nonfinite, noise / scale)


def rounding(float32: Any, float64: Any) -> float:
    """max|a32 - a64|: how far the float32 run of a tensor is from its float64 run (0 if unknown)."""
    if float64 is None or float32 is None or tuple(float32.shape) != tuple(float64.shape):
        return 0.0
    a, b = _f64(float32), _f64(float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a - b), where=both, initial=0.0))


@dataclass
class Drift:
    """Stage two: the port as built against the float32 port, for one tensor."""

    max_abs: float
    cosine: float
    snr_db: float  # 10*log10(sum b^2 / sum (a-b)^2); inf when identical
    err: float  # max|a-b| / RMS(b)
    budget: Budget
    passed: bool
    ratio: float  # drift as a fraction of the budget (<= 1 passes), the worse of SNR and max error
    nonfinite: str | None = None

    def __str__(self) -> str:
        extra = f"; {self.nonfinite}" if self.nonfinite else ""
        return (f"SNR={self.snr_db:.1f} dB max|a-b|={self.err:.3g} RMS drift/budget={self.ratio:.3g} "
                f"({self.budget}: {'ok' if self.passed else 'FAIL'}{extra})")


def drift(actual: Any, reference: Any, budget: Budget) -> Drift:
    a, b = _f64(actual), _f64(reference)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Drift(0.0, 1.0, math.inf, 0.0, budget, True, 0.0)
    nonfinite = _nonfinite(a, b)
    both = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(both, a, 0.0), np.where(both, b, 0.0)
    diff = np.abs(a0 - b0)
    noise, signal = float(np.sum(diff * diff)), float(np.sum(b0 * b0))
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    err = float(diff.max()) / _rms(b)
    # both criteria as amplitude ratios to the budget, so one number reads "fraction of budget"
    snr_ratio = 0.0 if noise == 0 else 10 ** ((budget.min_snr_db - snr) / 20) if signal > 0 else math.inf
    ratio = max(snr_ratio, err / budget.max_err)
    passed = nonfinite is None and ratio <= 1.0
    return Drift(float(diff.max()), _cosine(a0, b0), snr, err, budget, passed, ratio, nonfinite)


def assert_close(actual: Any, expected: Any, dtype: str = "float32",
                 atol: float | None = None, rtol: float | None = None, what: str = "") -> Stats:
    """Raise AssertionError with the statistics when `actual` is not within tolerance."""
    d_atol, d_rtol = for_dtype(dtype)
    s = compare_arrays(actual, expected, d_atol if atol is None else atol, d_rtol if rtol is None else rtol)
    if not s.passed:
        raise AssertionError(f"{what or 'values'} differ ({dtype}): {s}; atol >= {s.needed_atol:.3g} would pass")
    return s
