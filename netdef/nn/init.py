"""Default parameter values, like torch's, so an unloaded model still builds.

numpy's generator is used (torch is not imported); values are not bit-identical
to torch's and need not be: real weights come from load_state_dict. Every helper
takes torch's `dtype=` constructor argument (None = float32).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from netdef import dtypes

_RNG = np.random.default_rng(0)


class Lazy:
    """A default value made only when first read: most models are loaded right after
    construction, so drawing ResNet-50's 25M random numbers up front (0.25 s) is waste."""

    __slots__ = ("shape", "dtype", "_make")

    def __init__(self, shape: tuple[int, ...], dtype: Any, make: Callable[[], np.ndarray]) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(np.float32) if dtype is None else dtypes.to_numpy(dtype)
        self._make = make

    def materialize(self) -> np.ndarray:
        return np.asarray(self._make(), dtype=self.dtype).reshape(self.shape)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, dtype: Any = None) -> Lazy:
    """torch's default for Conv/Linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return Lazy(shape, dtype, lambda: _RNG.uniform(-bound, bound, size=shape))


def uniform_bias(n: int, fan_in: int, dtype: Any = None) -> Lazy:
    return kaiming_uniform((n,), fan_in, dtype)


def normal(shape: tuple[int, ...], dtype: Any = None) -> Lazy:
    """N(0, 1): torch's default for Embedding weights."""
    return Lazy(shape, dtype, lambda: _RNG.standard_normal(shape))


def full(shape: tuple[int, ...], value: float, dtype: Any = None) -> Lazy:
    """Constant values: norm weights (1), biases and running means (0), PReLU slopes."""
    return Lazy(shape, dtype, lambda: np.full(shape, value))


def xavier_uniform(shape: tuple[int, ...], dtype: Any = None) -> Lazy:
    """torch's xavier_uniform_ (gain 1) for a 2-D weight: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return Lazy(shape, dtype, lambda: _RNG.uniform(-bound, bound, size=shape))


def xavier_normal(shape: tuple[int, ...], dtype: Any = None) -> Lazy:
    """torch's xavier_normal_ (gain 1): N(0, 2 / (fan_in + fan_out)), fans as torch counts them."""
    fan_in = shape[1] * int(np.prod(shape[2:])) if len(shape) > 1 else shape[0]
    fan_out = shape[0] * int(np.prod(shape[2:])) if len(shape) > 1 else shape[0]
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return Lazy(shape, dtype, lambda: _RNG.standard_normal(shape) * std)
