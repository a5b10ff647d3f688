"""Helpers shared by the test files (seeded, never-zero random data)."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.testing import random_original, randomize  # noqa: F401  (shared with benchmarks)


def randn(rng: np.random.Generator, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    """Standard-normal values; a test input is never all zeros."""
    x = rng.standard_normal(shape).astype(dtype)
    assert np.any(x != 0)
    return x
