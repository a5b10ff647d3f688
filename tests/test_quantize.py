"""INT8/FP8 by explicit Q/DQ layers: graph structure, numerics against torch's fake quantization,
calibration (max and percentile) through the reference runner, compare(), builds, config files."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import netdef
from helpers import randn
from netdef import backend, dtypes
from netdef import nn as dnn
from netdef.quantize import QuantConfig, QuantizationError, calibrate
from netdef.reference import run
from test_precision import small_cnn, twins


def layer(net, name):
    return backend.downcast(next(la for la in net.layers if la.name == name))


def constant_value(net, name) -> np.ndarray:
    w = layer(net, name).weights
    return np.asarray(w.numpy() if hasattr(w, "numpy") else w)


def conv_fc(in_ch: int = 3) -> dnn.Module:
    return dnn.Sequential(OrderedDict(conv=dnn.Conv2d(in_ch, 8, 3, padding=1), relu=dnn.ReLU(),
                                      flat=dnn.Flatten(), fc=dnn.Linear(8 * 6 * 6, 5)))


def test_qdq_layers_scales_axes_and_names():
    model = conv_fc()
    config = QuantConfig({"conv": 0.05, "fc": 0.02})
    net = netdef.trace(model, netdef.Input("x", (2, 3, 6, 6)), dtype="float16", quantization=config)
    int8, half = dtypes.to_trt("int8"), dtypes.to_trt("float16")
    for path, w in (("conv", model.conv.weight.data), ("fc", model.fc.weight.data)):
        q, dq = layer(net, f"{path}/input_quantize"), layer(net, f"{path}/input_dequantize")
        assert q.type.name == "QUANTIZE" and q.to_type == int8 and q.get_output(0).dtype == int8
        assert dq.type.name == "DEQUANTIZE" and dq.to_type == half and dq.get_input(0).name == q.get_output(0).name
        assert q.get_input(1).name == dq.get_input(1).name == f"{path}/input_scale"
        assert tuple(layer(net, f"{path}/input_scale").get_output(0).shape) == ()  # per-tensor
        assert constant_value(net, f"{path}/input_scale") == np.float32(config.scales[path])
        wq, wdq = layer(net, f"{path}/weight_quantize"), layer(net, f"{path}/weight_dequantize")
        assert wq.get_input(0).name == f"{path}/weight" and wq.axis == 0 and wdq.axis == 0
        assert dtypes.name(wq.get_input(0).dtype) == "float32"  # quantized from the exact weights
        assert tuple(layer(net, f"{path}/weight").shape) == w.shape
        np.testing.assert_array_equal(constant_value(net, f"{path}/weight"), w.reshape(-1))
        scales = constant_value(net, f"{path}/weight_scale")
        np.testing.assert_array_equal(scales, np.abs(w).reshape(w.shape[0], -1).max(1) / np.float32(127))
        assert wdq.to_type == half
    conv = layer(net, "conv")
    assert conv.get_input(0).name == "conv/input_dequantize"
    assert conv.get_input(1).name == "conv/weight_dequantize" and conv.kernel.size == 0
    matmul = layer(net, "fc/matmul")
    assert [matmul.get_input(i).name for i in range(2)] == ["fc/input_dequantize", "fc/weight_dequantize"]
    quantized = [la.name for la in net.layers if la.type.name in ("QUANTIZE", "DEQUANTIZE")]
    assert len(quantized) == 8 and all(n.split("/")[0] in ("conv", "fc") for n in quantized)
    assert net.module_layers["relu"] == ["relu"]  # modules outside the config are untouched


def fake_quant(x: torch.Tensor, scale: torch.Tensor, axis: int | None, dtype: str) -> torch.Tensor:
    """torch's reference for Q then DQ: fake_quantize_* for int8, a float8 round trip for fp8."""
    if dtype == "float8_e4m3fn":
        s = scale if axis is None else scale.reshape([-1 if d == axis else 1 for d in range(x.ndim)])
        return (x / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(x, float(scale), 0, -128, 127)
    zero = torch.zeros(scale.numel(), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(x, scale, zero, axis, -128, 127)


CASES = {
    "conv1d": (lambda: dnn.Conv1d(4, 6, 3, padding=1), (2, 4, 10), TF.conv1d, dict(padding=1)),
    "conv2d": (lambda: dnn.Conv2d(4, 6, 3, stride=2, groups=2), (2, 4, 9, 9), TF.conv2d,
               dict(stride=2, groups=2)),
    "conv3d": (lambda: dnn.Conv3d(2, 4, 2), (1, 2, 4, 4, 4), TF.conv3d, {}),
    "linear": (lambda: dnn.Linear(12, 7), (2, 3, 12), TF.linear, {}),
}


@pytest.mark.parametrize("qtype", ["int8", "float8_e4m3fn"])
@pytest.mark.parametrize("case", list(CASES))
def test_quantized_op_matches_torch_fake_quantization(rng, case, qtype):
    make, shape, torch_op, kwargs = CASES[case]
    model = dnn.Sequential(OrderedDict(op=make()))
    x = torch.from_numpy(randn(rng, *shape))
    qmax = 127.0 if qtype == "int8" else 448.0
    scale = float(x.abs().max()) * 0.8 / qmax  # 0.8: the largest inputs saturate
    net = netdef.trace(model, netdef.Input("x", shape), quantization=QuantConfig({"op": scale}, qtype))
    out = run(net, {"x": x})["output"]
    w, b = (torch.from_numpy(model.op.weight.data), torch.from_numpy(model.op.bias.data))
    wscale = w.abs().reshape(w.shape[0], -1).amax(1) / qmax  # per output channel
    xq, wq = fake_quant(x, torch.tensor(scale), None, qtype), fake_quant(w, wscale, 0, qtype)
    expected = torch_op(xq, wq, b, **kwargs)
    netdef.tolerance.assert_close(out, expected, "float32", what=f"{qtype} {case}")
    unquantized = torch_op(x, w, b, **kwargs)
    assert float((out - unquantized).abs().max()) > 1e-3  # quantization really happened


def test_calibration_reads_each_module_input(rng):
    torch.manual_seed(0)
    original = torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(16, 32), relu=torch.nn.ReLU(),
                                               fc2=torch.nn.Linear(32, 8)))
    port = dnn.Sequential(OrderedDict(fc1=dnn.Linear(16, 32), relu=dnn.ReLU(), fc2=dnn.Linear(32, 8)))
    port.load_state_dict(original.state_dict())
    batches = [randn(rng, 6, 16) for _ in range(3)]
    config = calibrate(port, batches)
    assert list(config.scales) == ["fc1", "fc2"] and config.dtype == "int8"
    xs = torch.from_numpy(np.concatenate(batches))
    hidden = original.relu(original.fc1(xs)).detach()
    assert config.scales["fc1"] * 127 == pytest.approx(float(xs.abs().max()), rel=1e-6)
    assert config.scales["fc2"] * 127 == pytest.approx(float(hidden.abs().max()), rel=1e-6)
    fp8 = calibrate(port, [torch.from_numpy(b) for b in batches], dtype="fp8")
    assert fp8.dtype == "float8_e4m3fn"
    assert fp8.scales["fc1"] * 448 == pytest.approx(config.scales["fc1"] * 127, rel=1e-6)


def test_percentile_ignores_outliers_that_max_keeps(rng):
    model = dnn.Sequential(OrderedDict(fc=dnn.Linear(64, 4)))
    batches = []
    for i in range(4):  # growing ranges make the streaming histogram merge its bins
        b = randn(rng, 32, 64) * (1 + i)
        b.reshape(-1)[rng.integers(b.size)] = 200.0 * (i + 1)  # a rare outlier (1 in 2048)
        batches.append(b)
    everything = np.abs(np.concatenate(batches))
    by_max = calibrate(model, batches, method="max")
    by_pct = calibrate(model, batches, method="percentile", percentile=99.9)
    assert by_max.scales["fc"] * 127 == pytest.approx(everything.max(), rel=1e-6)
    assert by_pct.scales["fc"] < by_max.scales["fc"] / 20
    width = everything.max() / 2048 * 2  # histogram resolution after the merges, with margin
    assert abs(by_pct.scales["fc"] * 127 - np.percentile(everything, 99.9)) <= width
    assert calibrate(model, batches, method="percentile", percentile=100).scales == by_max.scales


def test_dict_batches_and_input_specs(rng):
    model = conv_fc()
    batches = [{"image": randn(rng, 2, 3, 6, 6)} for _ in range(2)]
    config = calibrate(model, batches, inputs=[netdef.Input("image", (("n", 1, 2, 4), 3, 6, 6))])
    assert set(config.scales) == {"conv", "fc"}
    ranged = calibrate(model, batches, modules=lambda path, m: path == "fc")
    assert list(ranged.scales) == ["fc"] and ranged.scales["fc"] == config.scales["fc"]
    assert calibrate(model, batches, modules=dnn.Conv2d).scales == {"conv": config.scales["conv"]}


@pytest.fixture(scope="module")
def cnn():
    """The float32 torch CNN, its netdef port and an int8 calibration on random batches."""
    original, port = twins(small_cnn, seed=4)
    gen = torch.Generator().manual_seed(20)
    config = calibrate(port, (torch.randn(8, 3, 16, 16, generator=gen) for _ in range(8)))
    return original, port, config


def test_quantized_cnn_compare_and_top1(cnn):
    original, port, config = cnn
    assert list(config.scales) == ["conv1", "conv2", "fc"]
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    report = netdef.compare(original, port, (x,), quantization=config)
    assert report.ok, str(report)
    assert report.quantization == "int8" and "float32 + TF32 + int8 Q/DQ" in report.summary()
    assert json.loads(report.to_json())["quantization"] == "int8"
    drift = {r.path: r.drift for r in report.rows if r.drift}
    assert drift["conv1"].err > 1e-3 and drift["conv1"].cosine > 0.999  # real but small error
    strict = netdef.compare(original, port, (x,), quantization=config, drift=netdef.tolerance.Budget(80.0, 1e-4))
    assert not strict.ok and strict.first_failure.path == "conv1" and strict.first_failure.status == "DRIFT"
    held_out = torch.randn(256, 3, 16, 16, generator=gen)
    net = netdef.trace(port, netdef.Input("x", tuple(held_out.shape)), quantization=config)
    quantized = run(net, {"x": held_out})["output"]
    agreement = float((quantized.argmax(1) == original(held_out).argmax(1)).float().mean())
    assert agreement >= 0.9


def test_quantized_cnn_engine_builds_and_serializes(cnn, tmp_path):
    _, port, config = cnn
    plan = netdef.build(port, netdef.Input("x", (("batch", 1, 4, 8), 3, 16, 16)), dtype="float16",
                        quantization=config, progress=False)
    path = netdef.save_engine(plan, tmp_path / "cnn_int8.engine")
    loaded = netdef.load_plan(path)
    assert bytes(loaded) == bytes(plan) and len(plan) > 1000
    assert loaded.metadata["quantization"] == {"dtype": "int8", "modules": ["conv1", "conv2", "fc"]}
    assert loaded.metadata["folded_batchnorms"] == 0  # a Q/DQ kernel is not folded into


def test_float8_engine_builds(cnn):
    _, port, config = cnn
    fp8 = QuantConfig({k: v * 127 / 448 for k, v in config.scales.items()}, "float8_e4m3fn")
    plan = netdef.build(port, netdef.Input("x", (2, 3, 16, 16)), dtype="float16", quantization=fp8,
                        progress=False)
    assert len(plan) > 1000 and plan.metadata["quantization"]["dtype"] == "float8_e4m3fn"


def test_config_json_round_trip(cnn, tmp_path):
    config = cnn[2]
    again = QuantConfig.from_json(config.to_json())
    assert again == config and list(again.scales) == list(config.scales)
    path = config.save(tmp_path / "model.int8.json")
    assert QuantConfig.load(path) == config
    bad = tmp_path / "bad.json"
    bad.write_text('{"dtype": "int8", "scales": {"conv1": -1}}')
    with pytest.raises(QuantizationError, match=r"bad\.json.*'conv1'.*> 0"):
        QuantConfig.load(bad)
    bad.write_text("{not json")
    with pytest.raises(QuantizationError, match=r"bad\.json is not valid JSON"):
        QuantConfig.load(bad)
    with pytest.raises(QuantizationError, match="quantization dtype must be one of"):
        QuantConfig({"fc": 0.1}, "float16")


def test_config_naming_a_missing_module_is_an_error(cnn):
    _, port, config = cnn
    bad = QuantConfig({**config.scales, "conv3": 0.1})
    with pytest.raises(netdef.TraceError, match="quantization config names module 'conv3'"):
        netdef.trace(port, netdef.Input("x", (1, 3, 16, 16)), quantization=bad)
    with pytest.raises(netdef.TraceError, match="'bn1' is in the quantization config but ran no convolution"):
        netdef.trace(port, netdef.Input("x", (1, 3, 16, 16)), quantization=QuantConfig({"bn1": 0.1}))


def test_calibration_errors(rng):
    model = conv_fc()
    with pytest.raises(QuantizationError, match="no calibration batches"):
        calibrate(model, [])
    with pytest.raises(QuantizationError, match="calibration batch 1 has 2 arrays but the model has 1 inputs"):
        calibrate(model, [randn(rng, 1, 3, 6, 6), (randn(rng, 1, 3, 6, 6), randn(rng, 1, 3, 6, 6))])
    with pytest.raises(QuantizationError, match="method must be 'max' or 'percentile'"):
        calibrate(model, [randn(rng, 1, 3, 6, 6)], method="entropy")
    with pytest.raises(QuantizationError, match="no module of Sequential matches"):
        calibrate(model, [randn(rng, 1, 3, 6, 6)], modules=(dnn.Conv3d,))
