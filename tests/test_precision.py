"""Precision lives in the graph: float16/bfloat16 networks, per-module dtype overrides, and
compare() judging each module's drift from the float32 torch original by dtype."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

import netdef
from helpers import randomize
from netdef import dtypes
from netdef import nn as dnn
from netdef.reference import run


def small_cnn(lib):
    """conv-bn-relu x2 + linear, written once for torch.nn and netdef.nn (same state_dict names)."""
    return lib.Sequential(OrderedDict(
        conv1=lib.Conv2d(3, 16, 3, padding=1), bn1=lib.BatchNorm2d(16), relu1=lib.ReLU(),
        conv2=lib.Conv2d(16, 32, 3, stride=2, padding=1), bn2=lib.BatchNorm2d(32), relu2=lib.ReLU(),
        pool=lib.AdaptiveAvgPool2d(1), flat=lib.Flatten(), fc=lib.Linear(32, 10)))


def block(lib):
    """A small pre-norm transformer-ish block (attention + MLP + head) for torch.nn and netdef.nn."""

    class Block(lib.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln = lib.LayerNorm(16)
            self.qkv = lib.Linear(16, 48)
            self.attn = lib.Softmax(-1)
            self.proj = lib.Linear(16, 16)
            self.mlp = lib.Sequential(lib.Linear(16, 32), lib.GELU(), lib.Linear(32, 16))
            self.head = lib.Linear(16, 4)

        def forward(self, x):
            q, k, v = self.qkv(self.ln(x)).split(16, -1)
            x = x + self.proj(self.attn(q @ k.transpose(-1, -2) * 0.25) @ v)
            x = x + self.mlp(x)
            return self.head(x)

    return Block()


def twins(make, seed: int = 0):
    """(torch original, netdef port with the original's weights)."""
    torch.manual_seed(seed)
    original = randomize(make(torch.nn), seed=seed + 1)
    port = make(dnn)
    port.load_state_dict(original.state_dict())
    return original, port


def layer_dtypes(net) -> dict[str, str]:
    return {layer.name: dtypes.name(layer.get_output(0).dtype) for layer in net.layers}


BLOCK_X = (2, 5, 16)
KEEP_FP32 = {"ln": "float32", "attn": "float32", "head": "float32"}


def test_override_computes_in_float32_inside_a_float16_graph():
    _, port = twins(small_cnn)
    net = netdef.trace(port, netdef.Input("x", (2, 3, 16, 16)), dtype="float16",
                       dtype_overrides={"fc": "float32"})
    dt = layer_dtypes(net)
    assert dt["conv1"] == dt["conv2"] == dt["flat"] == "float16"
    assert dt["fc/cast"] == "float32"  # cast in at the module boundary ...
    assert dt["fc/weight"] == dt["fc/matmul"] == dt["fc/bias"] == "float32"  # ... compute and weights ...
    cast_in = next(la for la in net.layers if la.name == "fc/cast")
    assert cast_in.get_input(0).name == "flat"
    assert net.module_layers["fc"] == ["fc/cast", "fc/weight", "fc/matmul", "fc/bias", "fc/add", "fc"]
    # ... and the module's output is cast back to the graph's dtype, so its consumers see float16
    assert dt["fc"] == "float16" and net.module_outputs["fc"] == [["fc"]]
    assert dtypes.name(net.network.get_output(0).dtype) == "float32"


def test_nested_overrides_innermost_wins():
    net = netdef.trace(block(dnn), netdef.Input("x", BLOCK_X), dtype="float16",
                       dtype_overrides={"mlp": "float32", "mlp.1": "float16"})
    dt = layer_dtypes(net)
    assert dt["mlp/cast"] == "float32"
    assert dt["mlp.0/matmul"] == dt["mlp.2/matmul"] == "float32"
    assert dt["mlp.1/cast"] == "float16" and dt["mlp.1/gelu"] == "float16"
    assert dt["mlp.1"] == "float32"  # back to mlp's dtype ...
    assert dt["mlp"] == "float16"  # ... and mlp back to the graph's
    assert dt["qkv/matmul"] == "float16"


def test_softmax_layernorm_and_head_kept_in_float32_match_torch():
    original, port = twins(block)
    x = torch.randn(*BLOCK_X, generator=torch.Generator().manual_seed(3))
    net = netdef.trace(port, netdef.Input("x", BLOCK_X), dtype="float16", dtype_overrides=KEEP_FP32)
    dt = layer_dtypes(net)
    assert dt["attn/softmax"] == dt["ln/layer_norm"] == dt["head/matmul"] == "float32"
    assert dt["qkv/matmul"] == dt["proj/matmul"] == dt["mlp.0/matmul"] == "float16"
    out = run(net, {"x": x})["output"]
    netdef.tolerance.assert_close(out, original(x).detach(), "float16", what="block output")
    report = netdef.compare(original, port, (x,), dtype="float16", dtype_overrides=KEEP_FP32)
    assert report.ok, str(report)
    assert {"ln", "attn", "head", "mlp.1"} <= {r.path for r in report.rows}


def test_float32_head_output_is_not_rounded_through_float16():
    """A float32 head in a float16 graph feeds a float32 network output directly: logits beyond
    float16's range (65504) stay finite instead of overflowing in the cast back."""
    original, port = twins(block)
    with torch.no_grad():
        original.head.weight.mul_(1e5)
    port.load_state_dict(original.state_dict())
    x = torch.randn(*BLOCK_X, generator=torch.Generator().manual_seed(4))
    expected = original(x).detach()
    assert expected.abs().max() > 65504
    plain = run(netdef.trace(port, netdef.Input("x", BLOCK_X), dtype="float16"), {"x": x})["output"]
    assert torch.isinf(plain).any()  # float16 all the way overflows
    net = netdef.trace(port, netdef.Input("x", BLOCK_X), dtype="float16", dtype_overrides={"head": "float32"})
    out = run(net, {"x": x})["output"]
    assert torch.isfinite(out).all()
    netdef.tolerance.assert_close(out, expected, "float16", what="float32 head")
    producer = next(la for la in net.layers if la.get_output(0).name == "output")
    assert producer.name == "head/add"  # no float16 round trip before the output


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compare_reports_per_module_drift_within_dtype_budget(dtype):
    original, port = twins(small_cnn)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    report = netdef.compare(original, port, (x,), dtype=dtype)
    assert report.ok, str(report)
    assert report.drift_checked and report.precision == dtype
    drift = {r.path: r.drift for r in report.rows if r.drift}
    assert set(drift) >= {"bn1", "relu1", "fc"}  # conv1/conv2 are folded with their BatchNorms
    assert all(0 < d.err and d.snr_db < 200 for d in drift.values())  # the port really computes in `dtype`
    assert all(r.dtype == dtype for r in report.rows if r.drift and r.path != "<output>")
    assert all(r.stats.ratio <= 1 for r in report.rows)  # and the float32 port matches torch


def test_a_strict_drift_budget_catches_float16_rounding():
    original, port = twins(small_cnn)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    strict = netdef.compare(original, port, (x,), dtype="float16", drift=netdef.tolerance.Budget(200.0, 1e-9))
    assert not strict.ok
    assert strict.first_failure.path == "bn1" and strict.first_failure.status == "DRIFT"  # the first output
    assert all(r.stats.passed for r in strict.rows)  # stage one (float32) still passes
    assert netdef.compare(original, port, (x,), dtype="float16").ok


def test_bfloat16_with_overrides_matches_torch():
    original, port = twins(block)
    x = torch.randn(*BLOCK_X, generator=torch.Generator().manual_seed(7))
    report = netdef.compare(original, port, (x,), dtype="bfloat16", dtype_overrides=KEEP_FP32)
    assert report.ok, str(report)
    net = netdef.trace(port, netdef.Input("x", BLOCK_X), dtype="bfloat16", dtype_overrides=KEEP_FP32)
    dt = layer_dtypes(net)
    assert dt["qkv/matmul"] == "bfloat16" and dt["attn/softmax"] == "float32"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_engine_builds_with_overrides(dtype):
    _, cnn = twins(small_cnn)
    plan = netdef.build(cnn, netdef.Input("x", (("batch", 1, 2, 4), 3, 16, 16)), dtype=dtype,
                        dtype_overrides={"fc": "float32", "bn2": "float32"}, progress=False)
    assert len(plan) > 1000
    assert plan.metadata["dtype"] == dtype
    assert plan.metadata["dtype_overrides"] == {"fc": "float32", "bn2": "float32"}
    _, port = twins(block)
    plan = netdef.build(port, netdef.Input("x", BLOCK_X), dtype=dtype, dtype_overrides=KEEP_FP32,
                        progress=False)
    assert len(plan) > 1000 and plan.metadata["outputs"][0]["dtype"] == "float32"


def test_override_of_a_missing_module_is_an_error():
    _, port = twins(small_cnn)
    with pytest.raises(netdef.TraceError, match=r"dtype_overrides names module 'conv3'"):
        netdef.trace(port, netdef.Input("x", (1, 3, 8, 8)), dtype="float16", dtype_overrides={"conv3": "float32"})
    with pytest.raises(netdef.TraceError, match=r"did you mean fc"):
        netdef.trace(port, netdef.Input("x", (1, 3, 8, 8)), dtype_overrides={"model.fc": "float32"})


def test_override_to_an_integer_type_is_an_error():
    _, port = twins(small_cnn)
    with pytest.raises(netdef.TraceError, match=r"dtype_overrides\['fc'\] = 'int8'.*netdef.quantize"):
        netdef.trace(port, netdef.Input("x", (1, 3, 8, 8)), dtype_overrides={"fc": "int8"})
