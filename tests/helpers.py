"""Helpers shared by the test files (seeded, never-zero random data)."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from netdef.testing import random_original, randomize  # noqa: F401  (shared with benchmarks)


def randn(rng: np.random.Generator, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    """Standard-normal values; a test input is never all zeros."""
    x = rng.standard_normal(shape).astype(dtype)
    assert np.any(x != 0)
    return x


def _site_dirs() -> list[str]:
    return [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]


def _top_level(dist_name: str) -> set[str]:
    """The names a distribution installs at the top of site-packages (packages, .libs, its dist-info)."""
    dist = importlib.metadata.distribution(dist_name)
    return {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}


def bare_env(tmp: Path, without: tuple[str, ...] = ()) -> Path:
    """A fresh venv that sees this environment's packages, through a .pth file to a folder of links,
    except netdef and the distributions in `without`: nothing is copied or downloaded, and a left-out
    package is truly not importable. Returns the venv's python."""
    skip = {"netdef"}.union(*(_top_level(d) for d in without))
    shared = tmp / "shared"
    shared.mkdir()
    for site in _site_dirs():
        for name in os.listdir(site):
            if (name in skip or name.startswith(("netdef", "__editable__")) or name.endswith(".pth")
                    or (shared / name).exists()):
                continue
            (shared / name).symlink_to(os.path.join(site, name))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_netdef_test_shared.pth").write_text(f"{shared}\n")
    return python
