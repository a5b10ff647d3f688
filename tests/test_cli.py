"""The netdef command line, run as a user would, in subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

NETDEF = [sys.executable, "-m", "netdef.cli"]


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*NETDEF, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("cmd", [[], ["export"], ["build"], ["inspect"], ["compare"], ["demo"]])
def test_help(cmd):
    res = run(*cmd, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: netdef" in res.stdout


@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    import torch

    from netdef import weights
    from netdef.models.originals import LeNet5

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("w") / "lenet.safetensors")
    weights.save(LeNet5().state_dict(), path)
    return path


def test_export_build_inspect(tmp_path, lenet_weights):
    wts = str(tmp_path / "lenet.wts")
    res = run("export", lenet_weights, wts)
    assert res.returncode == 0, res.stderr
    assert open(wts).readline().strip() == "10"

    engine = str(tmp_path / "lenet.engine")
    res = run("build", "lenet5", "-w", wts, "-s", "x=1-4-8,1,28,28", "--dtype", "float16", "-o", engine)
    assert res.returncode == 0, res.stderr
    meta = json.load(open(engine + ".json"))
    assert meta["dtype"] == "float16" and meta["inputs"][0]["max"] == [8, 1, 28, 28]
    assert os.path.getsize(engine) == meta["plan_bytes"]

    res = run("inspect", "lenet5", "-s", "x=2,1,28,28", "--calls")
    assert res.returncode == 0, res.stderr
    assert "conv1" in res.stdout and "CONVOLUTION" in res.stdout and ".stride_nd" in res.stdout

    res = run("inspect", engine)
    assert res.returncode == 0 and '"plan_bytes"' in res.stdout


def test_compare_exit_codes(tmp_path, lenet_weights):
    res = run("compare", "lenet5", "lenet5", "-w", lenet_weights, "-s", "x=2,1,28,28")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK:" in res.stdout

    buggy = tmp_path / "buggy.py"
    buggy.write_text(textwrap.dedent("""
        from netdef.models.lenet import LeNet5

        def build():
            model = LeNet5()
            model.conv2.padding = (1, 1)   # the port's bug
            return model
    """))
    res = run("compare", f"{buggy}:build", "lenet5", "-w", lenet_weights, "-s", "x=2,1,28,28",
              "--json", str(tmp_path / "r.json"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "first divergent module: conv2" in res.stdout
    assert json.load(open(tmp_path / "r.json"))["first_failure"] == "conv2"


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.wts"
    bad.write_text("2\nconv.weight 1 3f800000\n")
    res = run("build", "lenet5", "-w", str(bad), "-s", "x=1,1,28,28", "-o", str(tmp_path / "e.engine"))
    assert res.returncode == 2
    assert res.stderr.startswith("netdef build: error:") and "bad.wts" in res.stderr
    assert not os.path.exists(tmp_path / "e.engine")

    res = run("build", "nosuchmodel", "-s", "x=1,1,28,28")
    assert res.returncode == 2 and "unknown model 'nosuchmodel'" in res.stderr

    res = run("build", "lenet5", "-s", "x=1,one,28")
    assert res.returncode == 2 and "bad dimension" in res.stderr
