"""Shared fixtures: seeded random inputs (never zeros) for every test, and one torch thread."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread per test process: the suite runs as `pytest -n 2` on 2 cores, so more threads
    only contend, and a reference run is many small ops (loop bodies, decode steps) that a thread pool
    slows down (tens of ms per tiny matmul on a loaded machine)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
