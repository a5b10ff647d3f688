"""The wheel as a user installs it (`pip install <wheel>`, not editable), and the install hints in
environments where an optional package really is absent.

Each environment is a fresh venv with the wheel installed by pip and, through a .pth file, a
folder of links to this environment's other packages (torch, scikit-learn, ...) minus the ones a
test removes: nothing is downloaded or copied, and a removed package is truly not importable.
Deselect with `-m 'not wheel'`.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import bare_env

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
# build outputs and local state that a clean checkout does not have
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     ".ruff_cache", "*.engine", "*.engine.json")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """netdef's wheel, built offline from a copy of the source (so the checkout gets no build/ folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
                          "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("netdef-*.whl")
    return whl


def make_env(tmp: Path, wheel: Path, without: tuple[str, ...] = ()) -> Path:
    """A fresh venv with the wheel installed, seeing this environment's packages except netdef and
    the distributions in `without`; returns its bin folder."""
    python = bare_env(tmp, without)
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                          "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return python.parent


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def one_error_line(res: subprocess.CompletedProcess, prefix: str) -> str:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), res.stderr
    return lines[0]


def test_wheel_holds_every_module_and_the_shipped_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"netdef/{p.relative_to(ROOT / 'netdef')}" for p in (ROOT / "netdef").rglob("*.py")}
    expected |= {f"netdef/models/{p.relative_to(ROOT / 'models')}" for p in (ROOT / "models").glob("*.py")}
    expected |= {f"netdef/models/weights/{n}" for n in ("lenet5.safetensors", "lenet5.wts", "README.md")}
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (list new packages in pyproject.toml [tool.setuptools]): {missing}"
    assert not any(n.startswith("netdef/models/weights/") and n.endswith(".py") for n in names)  # the training script


# what `dev` installs beyond the README's main-job command (`pip install torch==2.13.0 -e ".[demo]"`)
_DEV_ONLY = ("torchvision", "safetensors", "onnx", "onnxscript", "transformers", "pillow", "tritonclient")


def test_demo_from_the_installed_wheel(tmp_path, wheel):
    """The main job with only what the README's first command installs (no torchvision, ...)."""
    bin_dir = make_env(tmp_path, wheel, without=_DEV_ONLY)
    assert run([str(bin_dir / "python"), "-c", "import torchvision"], cwd=tmp_path).returncode != 0
    where = run([str(bin_dir / "python"), "-c", "import netdef; print(netdef.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr  # not the checkout
    res = run([str(bin_dir / "netdef"), "demo", "-o", "lenet5.engine"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "loaded 10 tensors from lenet5.safetensors" in res.stdout
    assert "held-out accuracy on 360 digits: reference runner 98.06%" in res.stdout
    assert (tmp_path / "lenet5.engine").stat().st_size > 100_000


def test_hints_without_torchvision_and_scikit_learn(tmp_path, wheel):
    bin_dir = make_env(tmp_path, wheel, without=("torchvision", "scikit-learn"))
    assert run([str(bin_dir / "python"), "-c", "import torchvision"], cwd=tmp_path).returncode != 0

    res = run([str(bin_dir / "netdef"), "compare", "resnet18", "torchvision:resnet18", "-w", "r18.safetensors",
               "-s", "x=1,3,32,32"], cwd=tmp_path)
    line = one_error_line(res, "netdef compare: error: the original 'torchvision:resnet18' needs torchvision, "
                               "which is not installed: pip install ")
    pins = dict(re.findall(r"'(torch|torchvision)==([0-9.]+)'", line))  # the [torchvision] extra, as pyproject pins it
    assert pins == {"torch": importlib.metadata.version("torch").split("+")[0],
                    "torchvision": importlib.metadata.version("torchvision").split("+")[0]}, line

    res = run([str(bin_dir / "python"), str(ROOT / "examples" / "resnet50_torchvision.py")], cwd=tmp_path)
    assert "this example needs torchvision, which is not installed: pip install" in one_error_line(res, "")

    res = run([str(bin_dir / "netdef"), "demo"], cwd=tmp_path)
    line = one_error_line(res, "netdef demo: error: netdef demo (its held-out digits) needs scikit-learn")
    assert line.endswith("pip install 'scikit-learn>=1.3'"), line
    assert not (tmp_path / "lenet5.engine").exists()  # it stopped before building


def test_building_needs_no_torch(tmp_path, wheel):
    bin_dir = make_env(tmp_path, wheel, without=("torch", "torchvision"))
    assert run([str(bin_dir / "python"), "-c", "import torch"], cwd=tmp_path).returncode != 0

    res = run([str(bin_dir / "netdef"), "build", "lenet5", "--random-weights", "-s", "x=1-2-4,1,28,28"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "lenet5.engine").stat().st_size > 100_000

    res = run([str(bin_dir / "netdef"), "demo"], cwd=tmp_path)
    assert "netdef demo needs torch, which is not installed: pip install 'torch>=2.4'" in one_error_line(res, "")
    res = run([str(bin_dir / "netdef"), "compare", "lenet5", "lenet5", "-w", "x.wts"], cwd=tmp_path)
    assert "netdef compare needs torch, which is not installed" in one_error_line(res, "netdef compare: error:")

