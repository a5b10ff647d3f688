"""Backend selection, build options, and build errors that must never pass silently."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import netdef
from netdef import backend, nn


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_netdef_backend_forces_a_backend():
    res = _run("from netdef import backend; print(backend.name())", NETDEF_BACKEND="tensorrt_rtx")
    assert res.returncode == 0 and res.stdout.strip() == "tensorrt_rtx"
    res = _run("from netdef import backend; backend.trt()", NETDEF_BACKEND="tensorflow")
    assert res.returncode != 0 and "NETDEF_BACKEND='tensorflow' is not one of tensorrt, tensorrt_rtx" in res.stderr


@pytest.mark.skipif(backend.name() == "tensorrt", reason="classic TensorRT is installed here")
def test_missing_forced_backend_says_what_to_install():
    res = _run("from netdef import backend; backend.trt()", NETDEF_BACKEND="tensorrt")
    assert res.returncode != 0
    assert "no TensorRT backend could be imported (tensorrt:" in res.stderr and "pip install" in res.stderr


def test_require_names_both_backends():
    other = "tensorrt" if backend.is_rtx() else "tensorrt_rtx"
    with pytest.raises(netdef.BackendError, match=f"only available with the {other} backend; the active "
                                                  f"backend is {backend.name()}"):
        backend.require("plugin layers", other)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def test_build_options_and_progress(tmp_path, capsys):
    cache = tmp_path / "timing.cache"
    plan = netdef.build(Small(), netdef.Input("x", (("n", 1, 2, 4), 3, 16, 16)), dtype="bfloat16",
                        workspace=1 << 26, optimization_level=1, timing_cache=cache, progress=True)
    assert plan.metadata["dtype"] == "bfloat16" and len(plan) > 10_000
    assert cache.stat().st_size > 0  # written atomically after the build
    err = capsys.readouterr().err
    assert "/" in err and "[" in err  # TensorRT's build phases were drawn


def test_build_error_is_raised_not_printed():
    net = netdef.Network("no_outputs")
    net.network.add_input("x", backend.trt().float32, (1, 3))
    with pytest.raises(netdef.BuildError, match="could not build network 'no_outputs'"):
        netdef.build(net, progress=False)


def test_save_engine_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(netdef.EngineError, match="expected a non-empty serialized plan"):
        netdef.save_engine(b"", tmp_path / "a.engine")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    plan = netdef.build(Small(), netdef.Input("x", (1, 3, 8, 8)), progress=False)
    with pytest.raises(OSError):
        netdef.save_engine(plan, blocker / "b.engine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    path = netdef.save_engine(plan, tmp_path / "ok.engine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ok.engine", "ok.engine.json"]
    assert netdef.load_plan(path).metadata["plan_sha256"]


def test_compare_engine_backend_without_gpu_is_a_clear_error():
    import torch

    from netdef.runtime import cuda_device

    try:
        cuda_device()
    except netdef.EngineError:
        pass
    else:
        pytest.skip("a GPU is present")
    orig = torch.nn.Conv2d(3, 4, 3).eval()
    port = nn.Conv2d(3, 4, 3)
    port.load_state_dict(orig.state_dict())
    with pytest.raises(netdef.EngineError):
        netdef.compare(orig, port, (torch.randn(1, 3, 8, 8),), backend="engine")
