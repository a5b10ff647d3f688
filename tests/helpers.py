"""Helpers shared by the test files (seeded, never-zero random data)."""
from __future__ import annotations

from typing import Any

import numpy as np


def randn(rng: np.random.Generator, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    """Standard-normal values; a test input is never all zeros."""
    x = rng.standard_normal(shape).astype(dtype)
    assert np.any(x != 0)
    return x


def randomize(torch_model: Any, seed: int = 0) -> Any:
    """Random BatchNorm statistics and affine parameters, so folding bugs cannot hide.

    running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1).
    Returns the model in eval mode.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return torch_model.eval()
