"""compare() localizes planted faults in a ResNet-18 port to exactly the faulty module."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision

import netdef
from helpers import randomize
from netdef.models.resnet import resnet18


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    return randomize(torchvision.models.resnet18(weights=None), seed=1)


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def port(original, **edits):
    model = resnet18()
    state = {k: v.clone() for k, v in original.state_dict().items()}
    for key, fn in edits.items():
        state[key] = fn(state[key])
    model.load_state_dict(state)
    return model


def test_correct_port_passes(original, x):
    report = netdef.compare(original, port(original), (x,))
    assert report.ok, str(report)
    assert report.first_failure is None
    paths = [r.path for r in report.rows]
    assert "layer3.1.conv2" in paths and "layer2.0.downsample.0" in paths
    assert paths.index("layer1.0.conv1") < paths.index("layer1.0") < paths.index("fc")
    data = json.loads(report.to_json())
    assert data["ok"] is True and len(data["rows"]) == len(report.rows)


def test_transposed_weight_is_found(original, x):
    bad = port(original, **{"layer3.1.conv2.weight": lambda w: w.transpose(0, 1).contiguous()})
    report = netdef.compare(original, bad, (x,))
    assert not report.ok
    assert report.first_failure.path == "layer3.1.conv2"
    assert "first divergent module: layer3.1.conv2" in str(report)
    # every module before it still matches
    first = report.rows.index(report.first_failure)
    assert all(r.passed for r in report.rows[:first])


def test_wrong_padding_is_found(original, x):
    bad = port(original)
    bad.layer2[0].downsample[0].padding = (1, 1)
    report = netdef.compare(original, bad, (x,))
    assert not report.ok
    assert report.first_failure.path == "layer2.0.downsample.0"
    assert report.first_failure.status == "shape"


def test_float16_port_is_proven_in_float32_and_its_drift_measured(original, x):
    report = netdef.compare(original, port(original), (x,), dtype="float16")
    assert report.ok, str(report)
    assert report.precision == "float16" and report.drift_checked
    worst = max(r.drift.err for r in report.rows if r.drift)
    assert 0 < worst  # float16 really differs from the float32 port ...
    strict = netdef.compare(original, port(original), (x,), dtype="float16",
                            drift=netdef.tolerance.Budget(120.0, 1e-6))
    assert not strict.ok  # ... and a float32-sized budget would catch it, as drift, not as a port error
    assert strict.first_failure.status == "DRIFT" and all(r.stats.passed for r in strict.rows)


def test_per_module_tolerance_override(original, x):
    bad = port(original, **{"fc.weight": lambda w: w * 1.001})
    assert netdef.compare(original, bad, (x,)).first_failure.path == "fc"
    loose = netdef.compare(original, bad, (x,), tolerances={"fc": (1.0, 1.0), "": (1.0, 1.0)})
    assert loose.ok, str(loose)


def test_numpy_float64_inputs_are_accepted():
    import numpy as np

    from netdef import nn

    orig = torch.nn.Conv2d(3, 4, 3).eval()
    port = nn.Conv2d(3, 4, 3)
    port.load_state_dict(orig.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))  # float64, as numpy makes it
    report = netdef.compare(orig, port, (x,))
    assert report.ok, str(report)
    assert report.rows[-1].stats.max_abs < 1e-5


def test_a_port_error_is_named_before_an_earlier_float16_overflow():
    """float16 overflows at `0` (stage two: nonfinite), the port is wrong at `2` (stage one): the
    first divergent module is the port error, described by its float32 numbers, and the JSON
    report stays strict JSON (no Infinity) with the overflowing row's infinite drift in it."""
    torch.manual_seed(3)
    original = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).eval()
    with torch.no_grad():
        original[0].weight.mul_(1e6)  # weights and activations near 1e5-1e6: finite in float32, inf in float16
    model = netdef.nn.Sequential(netdef.nn.Linear(8, 8), netdef.nn.ReLU(), netdef.nn.Linear(8, 4))
    state = original.state_dict()
    state["2.weight"] = state["2.weight"] * 1.1  # the planted port mistake
    model.load_state_dict(state)
    report = netdef.compare(original, model, torch.randn(3, 8), dtype="float16")
    by_path = {r.path: r for r in report.rows}
    assert by_path["0"].stats.passed and by_path["0"].status == "nonfinite", str(report)
    assert not by_path["2"].stats.passed
    assert report.first_failure.path == "2"
    line = next(x for x in str(report).splitlines() if x.startswith("first divergent module:"))
    assert line.startswith("first divergent module: 2 (Linear): max|a-b|=") and "FAIL" in line, line
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    drift = next(r["drift"] for r in data["rows"] if r["path"] == "0")
    assert drift["nonfinite"] and drift["snr_db"] in ("inf", "-inf"), drift  # written as a string
