"""Default parameter values, like torch's, so an unloaded model still builds.

numpy's generator is used (torch is not imported); values are not bit-identical
to torch's and need not be: real weights come from load_state_dict.
"""
from __future__ import annotations

import math

import numpy as np

_RNG = np.random.default_rng(0)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """torch's default for Conv/Linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return _RNG.uniform(-bound, bound, size=shape).astype(np.float32)


def uniform_bias(n: int, fan_in: int) -> np.ndarray:
    return kaiming_uniform((n,), fan_in)
