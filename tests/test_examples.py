"""Every example runs as a user would run it, and the three ways build one network."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np

import netdef
from netdef import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, *args: str, cwd: str | None = None) -> str:
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                         capture_output=True, text=True, timeout=900, cwd=cwd)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_mnist_lenet_from_wts():
    out = run_example("mnist_lenet_wts.py", "--show-calls")
    assert ".kernel = <weights float32 x150" in out  # conv1's weights, read back from TensorRT
    acc = float(out.split("(reference runner): ")[1].split("%")[0])
    assert acc > 95.0


def test_resnet50_fp16_dynamic_batch(tmp_path):
    out = run_example("resnet50_torchvision.py", "--size", "64", "--engine", str(tmp_path / "r50.engine"))
    assert "float16, batch 1..32" in out and "OK:" in out
    assert netdef.load_plan(tmp_path / "r50.engine").metadata["inputs"][0]["max"][0] == 32


def test_pointpillars():
    out = run_example("pointpillars.py", "--batch", "2")
    nms = "'post_processing/nms'" if netdef.functional.emission_for("nms") == "layer" else "'post_processing/trip_limit'"
    assert "OK:" in out and "'map_to_bev_module/scatter_nd'" in out and nms in out


def test_yolov5_detect(tmp_path):
    png = tmp_path / "detections.png"
    out = run_example("yolov5_detect.py", "--size", "64", "--out", str(png))
    emission = netdef.functional.emission_for("nms")
    assert "OK:" in out and f"NMS emission: {emission}" in out and "(no plugin)" in out
    assert ("'NMS'" if emission == "layer" else "'TRIP_LIMIT'") in out
    assert int(out.split(" detections (")[0].splitlines()[-1]) > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _three_ways():
    spec = importlib.util.spec_from_file_location("three_ways", os.path.join(ROOT, "examples", "three_ways.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_ways_build_the_same_network():
    from netdef.inspect import layer_attributes

    ex = _three_ways()
    w = ex.make_weights()
    nets = [getattr(n, "network", n) for n in ex.three_networks(w).values()]
    kinds = [[n.get_layer(i).type for i in range(n.num_layers)] for n in nets]
    assert kinds[0] == kinds[1] == kinds[2]
    for i in range(nets[0].num_layers):  # every attribute TensorRT holds is equal
        attrs = [layer_attributes(n.get_layer(i)) for n in nets]
        for key, value in attrs[0].items():
            for other in attrs[1:]:
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(other[key], value)
                else:
                    assert str(other[key]) == str(value), (i, key)
    x = np.random.default_rng(3).standard_normal((5, 1, 8, 8)).astype(np.float32)
    outs = [netdef.reference.run(n, {"x": x})["output"].numpy() for n in nets]
    assert np.abs(outs[0]).max() > 0.1
    assert all(np.array_equal(o, outs[0]) for o in outs)
    assert backend.name() in ("tensorrt", "tensorrt_rtx")


def test_three_ways_script():
    out = run_example("three_ways.py")
    assert "outputs identical across the three: True" in out


def test_main_job(tmp_path):
    """The README's main job, on this CPU-only machine."""
    res = subprocess.run([sys.executable, "-m", "netdef.cli", "demo", "-o", str(tmp_path / "lenet5.engine")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: 13 outputs compared" in res.stdout
    assert "held-out accuracy on 360 digits: reference runner 98.06%" in res.stdout
    assert os.path.getsize(tmp_path / "lenet5.engine") > 100_000


def test_gpt2_generate(tmp_path):
    out = run_example("gpt2_generate.py", "--tokens", "8", "--engine", str(tmp_path / "gpt2.engine"))
    assert "OK:" in out and "identical to transformers' generate: True" in out
    assert netdef.load_plan(tmp_path / "gpt2.engine").metadata["inputs"][0]["max"] == [8, 64]
