"""Shared fixtures: seeded random inputs (never zeros) for every test."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def randn(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    """Standard-normal values; a test input is never all zeros."""
    x = rng.standard_normal(shape).astype(dtype)
    assert np.any(x != 0)
    return x
