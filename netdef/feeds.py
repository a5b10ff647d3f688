"""Example inputs as the reference runner takes them: named torch tensors, float64 narrowed.

compare() and calibrate() both accept numpy or torch inputs given positionally; this is
the one place that names them and converts them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def input_names(n: int) -> list[str]:
    """Default names of `n` positional inputs: "x", or "input0", "input1", ..."""
    return ["x"] if n == 1 else [f"input{i}" for i in range(n)]


def to_torch(values: Sequence[Any]) -> list:
    """torch tensors of `values`; float64 becomes float32 (TensorRT has no float64)."""
    import torch

    out = []
    for v in values:
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        out.append(t.float() if t.dtype == torch.float64 else t)
    return out
