"""Default parameter values, like torch's, so an unloaded model still builds.

numpy's generator is used (torch is not imported); values are not bit-identical
to torch's and need not be: real weights come from load_state_dict. Every helper
takes torch's `dtype=` constructor argument (None = float32).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import dtypes

_RNG = np.random.default_rng(0)


def _as(arr: np.ndarray, dtype: Any) -> np.ndarray:
    return arr.astype(np.float32 if dtype is None else dtypes.to_numpy(dtype))


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, dtype: Any = None) -> np.ndarray:
    """torch's default for Conv/Linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return _as(_RNG.uniform(-bound, bound, size=shape), dtype)


def uniform_bias(n: int, fan_in: int, dtype: Any = None) -> np.ndarray:
    return kaiming_uniform((n,), fan_in, dtype)


def normal(shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """N(0, 1): torch's default for Embedding weights."""
    return _as(_RNG.standard_normal(shape), dtype)


def full(shape: tuple[int, ...], value: float, dtype: Any = None) -> np.ndarray:
    """Constant values: norm weights (1), biases and running means (0), PReLU slopes."""
    return _as(np.full(shape, value), dtype)
