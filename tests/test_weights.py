"""netdef.weights: bit-exact round trips through every format, and one clear error per bad input.

Oracles are real: torch models and torch.save, the safetensors library, and a line-for-line
reimplementation of tensorrtx's gen_wts.py writer loop.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import netdef
from netdef import nn
from netdef.tolerance import assert_close
from netdef.weights import StateDict, convert, load, save

VARIANTS = ("double", "single", "0x")


# ---- fixtures and oracles ------------------------------------------------------------
class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False),
                                            torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class NetdefNet(nn.Module):
    """TorchNet's netdef twin: same constructor arguments, so the same state_dict names."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 10)


@pytest.fixture
def torch_net() -> TorchNet:
    """A seeded model whose BatchNorm statistics are not the defaults."""
    torch.manual_seed(0)
    net = TorchNet().eval()
    bn = net.features[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(1234)
    return net


def gen_wts(state_dict, path: str, variant: str = "double") -> None:
    """tensorrtx's gen_wts.py writer loop, reimplemented per value (double/single space), and
    the `hex()` writer for the 0x variant."""
    with open(path, "w") as f:
        f.write("{}\n".format(len(state_dict.keys())))
        for k, v in state_dict.items():
            vr = v.reshape(-1).cpu().numpy()
            f.write("{} {} ".format(k, len(vr)) if variant == "double" else "{} {}".format(k, len(vr)))
            for vv in vr:
                f.write(" ")
                if variant == "0x":
                    f.write(hex(struct.unpack(">I", struct.pack(">f", float(vv)))[0]))
                else:
                    f.write(struct.pack(">f", float(vv)).hex())
            f.write("\n")


def f32_bits(value) -> np.ndarray:
    """float32 bit patterns of a torch tensor or numpy array, flattened."""
    arr = value.detach().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)
    return arr.reshape(-1).view(np.uint32)


def raw_bits(value) -> np.ndarray:
    """The stored bytes of a tensor/array in its own dtype, for dtype-preserving formats."""
    if isinstance(value, torch.Tensor):
        return value.contiguous().reshape(-1).view(torch.uint8).numpy()
    return np.ascontiguousarray(value).reshape(-1).view(np.uint8)


def write_safetensors(path, header: dict | bytes, data: bytes = b"") -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def error(src) -> str:
    with pytest.raises(netdef.WeightsError) as info:
        load(src)
    return str(info.value)


# ---- .wts ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_wts_round_trip_bit_exact_from_torch(torch_net, tmp_path, variant):
    sd = torch_net.state_dict()
    path = save(sd, tmp_path / f"net_{variant}.wts", wts_variant=variant)
    loaded = load(path)
    assert isinstance(loaded, StateDict) and loaded.flat and loaded.source == path
    assert list(loaded) == list(sd)  # gen_wts order, buffers included
    for key, value in sd.items():
        assert loaded[key].dtype == np.float32 and loaded[key].shape == (value.numel(),)
        np.testing.assert_array_equal(loaded[key].view(np.uint32), f32_bits(value), err_msg=key)
    assert loaded["features.1.num_batches_tracked"].tolist() == [1234.0]


@pytest.mark.parametrize("variant", ["double", "single"])
def test_wts_writer_matches_gen_wts_byte_for_byte(torch_net, tmp_path, variant):
    sd = torch_net.state_dict()
    gen_wts(sd, tmp_path / "ref.wts", variant)
    save(sd, tmp_path / "ours.wts", wts_variant=variant)
    assert (tmp_path / "ours.wts").read_bytes() == (tmp_path / "ref.wts").read_bytes()


def test_wts_0x_writer_matches_python_hex(tmp_path):
    values = np.array([1.0, 0.0, -0.0, 1e-45, np.inf, -2.5], np.float32)
    save({"w": values}, tmp_path / "h.wts", wts_variant="0x")
    expected = "1\nw 6 " + " ".join(hex(int(b)) for b in values.view(np.uint32)) + "\n"
    assert (tmp_path / "h.wts").read_text() == expected
    assert "0x3f800000 0x0 0x80000000 0x1 0x7f800000" in expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_wts_reads_gen_wts_files(torch_net, tmp_path, variant):
    sd = torch_net.state_dict()
    gen_wts(sd, tmp_path / "gen.wts", variant)
    loaded = load(tmp_path / "gen.wts")
    for key, value in sd.items():
        np.testing.assert_array_equal(loaded[key].view(np.uint32), f32_bits(value), err_msg=key)


@pytest.mark.parametrize("variant", VARIANTS)
def test_wts_every_bit_pattern_round_trips(tmp_path, rng, variant):
    bits = rng.integers(0, 2**32, 100_003, dtype=np.uint32)  # NaN payloads, denormals, +-inf
    bits[:4] = [0, 0x80000000, 0x7FC00001, 1]
    save({"w": bits.view(np.float32)}, tmp_path / "b.wts", wts_variant=variant)
    np.testing.assert_array_equal(load(tmp_path / "b.wts")["w"].view(np.uint32), bits)


def test_wts_tolerates_crlf_blank_lines_empty_tensors_and_uppercase(tmp_path):
    text = ("3\r\n"
            "backbone.0.conv.weight 2  3f800000 BF800000   \r\n"
            "\n"
            "layer1.2.bn.num_batches_tracked 0 \r\n"
            "head.bias\t1\t0x40490FDB\r\n\r\n")
    (tmp_path / "w.wts").write_bytes(text.encode())
    sd = load(tmp_path / "w.wts")
    assert sd["backbone.0.conv.weight"].tolist() == [1.0, -1.0]
    assert sd["layer1.2.bn.num_batches_tracked"].shape == (0,)
    assert sd["head.bias"].view(np.uint32).tolist() == [0x40490FDB]
    (tmp_path / "n.wts").write_bytes(b"1\nw 1 3f800000")  # no final newline
    assert load(tmp_path / "n.wts")["w"].tolist() == [1.0]


@pytest.mark.parametrize("variant", ["double", "0x"])  # the fixed-width and the tokenizing decoder
def test_wts_long_line_spans_decode_chunks(tmp_path, rng, variant):
    values = rng.standard_normal(300_001).astype(np.float32)  # > 2 MB of text in one line
    gen_wts({"w": torch.from_numpy(values)}, tmp_path / "long.wts", variant)
    np.testing.assert_array_equal(load(tmp_path / "long.wts")["w"], values)


def test_wts_keys_and_counts_across_read_blocks(tmp_path, rng):
    """The reader streams 1 MiB blocks: keys, counts and values straddling a block edge, in
    every writer's layout and in a messy one (tabs, runs of blanks, CRLF)."""
    sd = {f"m{i}." + "k" * int(rng.integers(1, 300)): rng.standard_normal(int(rng.integers(0, 200))).astype(np.float32)
          for i in range(2500)}
    for variant in VARIANTS:
        gen_wts({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "b.wts", variant)
        text = (tmp_path / "b.wts").read_bytes()
        assert len(text) > 2 << 20
        if variant == "single":  # the messy layout: every separator a random run of blanks
            parts = text.split(b" ")
            seps = rng.choice([b" ", b"\t", b"  ", b" \t ", b"\x0b"], len(parts) - 1)
            text = b"".join(p + s for p, s in zip(parts, list(seps) + [b""])).replace(b"\n", b"\r\n")
            (tmp_path / "b.wts").write_bytes(text)
        loaded = load(tmp_path / "b.wts")
        assert list(loaded) == list(sd)
        for key, value in sd.items():
            np.testing.assert_array_equal(loaded[key].view(np.uint32), value.view(np.uint32), err_msg=key)


@pytest.mark.parametrize("text, where, what", [
    ("5\na 1 3f800000\nb 1 3f800000\nc 1 3f800000\nd 1 3f800000\n", None,
     "says 5 tensors, but the file has 4"),
    ("1\na 1 3f800000\nb 1 3f800000\n", "line 3 ('b')", "says 1 tensors, but the file has more"),
    ("2\nconv.weight 2 3f800000 3f80zz00\nb 0\n", "line 2 ('conv.weight')", "value 2 is '3f80zz00'"),
    ("1\nconv.weight 2 3f800000 0x\n", "line 2 ('conv.weight')", "value 2 is '0x'"),
    ("1\nconv.weight 2 3f800000 3f8000\n", "line 2 ('conv.weight')", "value 2 is '3f8000'"),
    ("1\nconv.weight 2 3f800000 0x123456789\n", "line 2 ('conv.weight')", "value 2 is '0x123456789'"),
    ("1\nfc.bias 3 3f800000 3f800000\n", "line 2 ('fc.bias')", "declares 3 values but has 2"),
    ("1\nfc.bias 1 3f800000 3f800000\n", "line 2 ('fc.bias')", "declares 1 values but has 2"),
    ("2\nfc.weight 2 3f800000 3f800000\nfc.bias 4 3f80", "line 3 ('fc.bias')", "value 1 is '3f80'"),
    ("2\nfc.weight 2 3f800000 3f800000\nfc.bias 4 3f800000 4", "line 3 ('fc.bias')", "value 2 is '4'"),
    ("2\nfc.weight 2 3f800000 3f800000\nfc.bias", "line 3 ('fc.bias')", "expected the value count"),
    ("1\nfc.bias x 3f800000\n", "line 2 ('fc.bias')", "expected the value count after the key, got 'x'"),
    ("2\nw 1 3f800000\nw 1 3f800000\n", "line 3 ('w')", "duplicate key, first seen on line 2"),
    ("", None, "the file is empty"),
    ("\n \r\n", None, "the file is empty"),
    ("w 1 3f800000\n", "line 1", "expected the tensor count, got 'w 1 3f800000'"),
    # found by fuzzing: int() refuses 4,300+ digits (a ValueError naming no file)
    ("9" * 5000 + "\nw 1 3f800000\n", "line 1", "the tensor count has 5,000 digits"),
    ("1\nw " + "1" * 4400 + " 3f800000\n", "line 2 ('w')", "the value count has 4,400 digits"),
    ("1\nw 99999999999 3f800000\n", "line 2 ('w')", "declares 99999999999 values but has 1"),
    ("2\nw 1 3f800000\n", None, "the header says 2 tensors, but the file has 1"),
])
def test_wts_bad_input_names_file_and_key(tmp_path, text, where, what):
    path = tmp_path / "bad.wts"
    path.write_bytes(text.encode())
    message = error(path)
    assert str(path) in message and what in message
    if where:
        assert where in message


def test_wts_key_that_is_not_utf8(tmp_path):
    (tmp_path / "k.wts").write_bytes(b"1\nconv\xff.weight 1 3f800000\n")  # never read as 'conv\ufffd.weight'
    message = error(tmp_path / "k.wts")
    assert str(tmp_path / "k.wts") in message and "line 2: the key" in message and "is not UTF-8 text" in message


@pytest.mark.parametrize("where", ["inside a value", "after a space", "at a line end"])
def test_wts_truncated_real_file_is_reported(torch_net, tmp_path, where):
    save(torch_net.state_dict(), tmp_path / "full.wts")
    data = (tmp_path / "full.wts").read_bytes()
    line = data.index(b"fc.weight")
    cut = {"inside a value": line + 100, "after a space": data.index(b" ", line + 100) + 1,
           "at a line end": line}[where]
    (tmp_path / "cut.wts").write_bytes(data[:cut])
    message = error(tmp_path / "cut.wts")
    assert str(tmp_path / "cut.wts") in message and "truncated" in message
    assert ("fc.weight" in message) != (where == "at a line end")


# ---- loading into netdef modules ----------------------------------------------------------
@pytest.mark.parametrize("fmt", [".wts", ".safetensors", ".pt"])
def test_netdef_module_loads_torch_weights_from_every_format(torch_net, tmp_path, fmt):
    sd = torch_net.state_dict()
    path = tmp_path / f"net{fmt}"
    torch.save(sd, path) if fmt == ".pt" else save(sd, path)
    model = NetdefNet()
    result = model.load_state_dict(load(path))
    assert result.missing_keys == [] and result.unexpected_keys == []
    ours = model.state_dict()
    for key, value in sd.items():
        assert ours[key].shape == tuple(value.shape), key
        np.testing.assert_array_equal(np.asarray(ours[key]).astype(np.float32),
                                      value.float().numpy(), err_msg=key)
    assert ours["features.1.num_batches_tracked"].dtype == np.int64  # the .wts float became int again


def test_loaded_weights_compute_like_torch(torch_net, tmp_path, rng):
    """Weights that went through .wts drive a netdef network to torch's output."""
    from netdef import reference

    save(torch_net.state_dict(), tmp_path / "net.wts", wts_variant="0x")
    model = NetdefNet()
    model.load_state_dict(load(tmp_path / "net.wts"))

    class Forward(nn.Module):
        def __init__(self, inner: NetdefNet) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.fc(netdef.functional.flatten(self.inner.features(x), 1))

    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    net = netdef.trace(Forward(model), netdef.Input("x", x.shape))
    out = reference.run(net, {"x": torch.from_numpy(x)})
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x))
    assert_close(next(iter(out.values())), expected, "float32")


def test_shape_mismatch_from_file_names_file_and_key(torch_net, tmp_path):
    save(torch_net.state_dict(), tmp_path / "net.safetensors")
    model = NetdefNet()
    model.fc = nn.Linear(8 * 4 * 4, 12)  # torch's has 10 outputs
    with pytest.raises(netdef.WeightsError) as info:
        model.load_state_dict(load(tmp_path / "net.safetensors"))
    message = str(info.value)
    assert str(tmp_path / "net.safetensors") in message
    assert "fc.weight: shape (10, 128) does not match the model's (12, 128)" in message


def test_flat_wts_size_mismatch_names_file_and_key(torch_net, tmp_path):
    save(torch_net.state_dict(), tmp_path / "net.wts")
    model = NetdefNet()
    model.features.add_module("0", nn.Conv2d(3, 8, 5, bias=False))  # 5x5 kernel; torch's is 3x3
    with pytest.raises(netdef.WeightsError) as info:
        model.load_state_dict(load(tmp_path / "net.wts"))
    assert str(tmp_path / "net.wts") in str(info.value) and "features.0.weight" in str(info.value)


def test_dtype_mismatch_from_file_names_key(tmp_path):
    seq = nn.Sequential(nn.BatchNorm2d(4))
    save({"0.weight": np.ones(4, np.float32), "0.bias": np.zeros(4, np.float32),
          "0.running_mean": np.zeros(4, np.float32), "0.running_var": np.ones(4, np.float32),
          "0.num_batches_tracked": np.array(2.5, np.float32)}, tmp_path / "bn.safetensors")
    with pytest.raises(netdef.WeightsError) as info:
        seq.load_state_dict(load(tmp_path / "bn.safetensors"))
    assert "0.num_batches_tracked: dtype float32 does not fit the model's int64" in str(info.value)
    assert str(tmp_path / "bn.safetensors") in str(info.value)


def test_missing_and_unexpected_keys_from_file(torch_net, tmp_path):
    sd = torch_net.state_dict()
    sd["fc.extra"] = torch.ones(3)
    del sd["features.1.running_var"]
    save(sd, tmp_path / "net.wts")
    model = NetdefNet()
    with pytest.raises(netdef.WeightsError) as info:
        model.load_state_dict(load(tmp_path / "net.wts"))
    message = str(info.value)
    assert str(tmp_path / "net.wts") in message
    assert "missing keys (1): features.1.running_var" in message
    assert "unexpected keys (1): fc.extra" in message
    result = NetdefNet().load_state_dict(load(tmp_path / "net.wts"), strict=False)
    assert result.missing_keys == ["features.1.running_var"] and result.unexpected_keys == ["fc.extra"]


@pytest.mark.parametrize("word, what", [
    ("7f7fffff", "1 value(s) such as 3.40282e+38, outside the range of the model's int64"),
    ("5f000000", "1 value(s) such as 9.22337e+18, outside the range of the model's int64"),  # exactly 2**63
    ("3fc00000", "not whole numbers"),
    ("7fc00000", "not whole numbers (or NaN/inf)"),
])
def test_wts_integer_buffer_must_be_whole_and_in_range(torch_net, tmp_path, word, what):
    """An int64 buffer written as float32 once loaded 7f7fffff as -2**63 with only a numpy warning."""
    save(torch_net.state_dict(), tmp_path / "net.wts")
    text = (tmp_path / "net.wts").read_text().splitlines()
    i = next(i for i, line in enumerate(text) if line.startswith("features.1.num_batches_tracked "))
    text[i] = f"features.1.num_batches_tracked 1 {word}"
    (tmp_path / "net.wts").write_text("\n".join(text) + "\n")
    with pytest.raises(netdef.WeightsError) as info:
        NetdefNet().load_state_dict(load(tmp_path / "net.wts"))
    message = str(info.value)
    assert str(tmp_path / "net.wts") in message and "features.1.num_batches_tracked: holds" in message
    assert what in message


def test_largest_exact_integer_buffer_loads(torch_net, tmp_path):
    sd = torch_net.state_dict()
    sd["features.1.num_batches_tracked"] = torch.tensor(2**62)  # float32-exact, in range
    save(sd, tmp_path / "net.wts")
    model = NetdefNet()
    model.load_state_dict(load(tmp_path / "net.wts"))
    assert model.state_dict()["features.1.num_batches_tracked"] == 2**62


def test_a_different_model_is_summarized_not_listed(tmp_path):
    """ResNet-18 weights into ResNet-50: 198 missing keys were one 5,000-character line."""
    import torchvision
    from netdef.models.resnet import resnet50

    from netdef.errors import StateDictError

    save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(StateDictError) as info:
        resnet50().load_state_dict(load(tmp_path / "r18.safetensors"))
    exc, message = info.value, str(info.value)
    assert str(tmp_path / "r18.safetensors") in message and "it looks like a different model" in message
    assert "same architecture and variant" in message
    assert "missing keys (198): layer1.* (36), layer2.* (48), layer3.* (84), layer4.* (30); first: " in message
    assert "mismatched entries (24):" in message and "... and 14 more" in message
    assert max(len(line) for line in message.splitlines()) < 400 and len(message) < 2500
    assert len(exc.missing_keys) == 198 and len(exc.mismatched) == 24 and exc.unexpected_keys == []
    assert exc.missing_keys == [k for k in resnet50().state_dict() if k in exc.missing_keys]  # model order
    assert "layer4.2.bn3.running_var" in exc.missing_keys


@pytest.mark.parametrize("where", ["file", "model"])
def test_a_prefix_that_explains_every_key_is_named(torch_net, where):
    from netdef.errors import StateDictError

    sd = torch_net.state_dict()
    if where == "file":  # e.g. DataParallel's module.
        sd, model, hint = {"module." + k: v for k, v in sd.items()}, NetdefNet(), "start with 'module.'"
        fix = "k.removeprefix('module.')"
    else:  # the model wraps the network the weights were saved from
        model, hint, fix = nn.Sequential(), "The model's keys start with 'net.'", "model.net.load_state_dict"
        model.add_module("net", NetdefNet())
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(load(sd))
    message = str(info.value)
    assert "it looks like a different model" in message and hint in message and fix in message
    assert info.value.missing_keys and info.value.unexpected_keys


# ---- safetensors ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_safetensors_written_by_library_load_bit_exact(torch_net, tmp_path, dtype):
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in torch_net.state_dict().items()}
    safetensors.torch.save_file(sd, tmp_path / "lib.safetensors")
    loaded = load(tmp_path / "lib.safetensors")
    assert not loaded.flat and loaded.source == str(tmp_path / "lib.safetensors")
    assert set(loaded) == set(sd)
    for key, value in sd.items():
        arr = loaded[key]
        assert arr.shape == tuple(value.shape), key
        assert netdef.dtypes.name(arr.dtype) == netdef.dtypes.name(value.dtype), key
        np.testing.assert_array_equal(raw_bits(arr), raw_bits(value), err_msg=key)


def test_safetensors_every_dtype_round_trips_both_ways(tmp_path, rng):
    base = rng.standard_normal((3, 5))
    numpy_side = {
        "f64": base, "f32": base.astype(np.float32), "f16": base.astype(np.float16),
        "i64": rng.integers(-2**40, 2**40, (2, 3)), "i32": rng.integers(-9, 9, 7, dtype=np.int32),
        "i16": rng.integers(-9, 9, 7, dtype=np.int16), "i8": rng.integers(-9, 9, 7, dtype=np.int8),
        "u64": rng.integers(0, 2**60, 3, dtype=np.uint64), "u32": rng.integers(0, 9, 3, dtype=np.uint32),
        "u16": rng.integers(0, 9, 3, dtype=np.uint16), "u8": rng.integers(0, 255, 9, dtype=np.uint8),
        "bool": rng.random(6) > 0.5, "c64": (base + 1j * base).astype(np.complex64),
        "scalar": np.array(3.5, np.float32), "empty": np.zeros((0, 4), np.float32),
    }
    torch_side = {"bf16": torch.randn(4, 3).bfloat16(), "f8e4m3": torch.randn(9).to(torch.float8_e4m3fn),
                  "f8e5m2": torch.randn(9).to(torch.float8_e5m2),
                  "f8e4m3fnuz": torch.randn(9).to(torch.float8_e4m3fnuz),
                  "f8e5m2fnuz": torch.randn(9).to(torch.float8_e5m2fnuz),
                  "f8e8m0": torch.rand(9).add(0.1).to(torch.float8_e8m0fnu)}
    safetensors.numpy.save_file(numpy_side, tmp_path / "np.safetensors")
    safetensors.torch.save_file(torch_side, tmp_path / "pt.safetensors")
    loaded = {**load(tmp_path / "np.safetensors"), **load(tmp_path / "pt.safetensors")}
    expected_dtypes = {"bf16": ml_dtypes.bfloat16, "f8e4m3": ml_dtypes.float8_e4m3fn,
                       "f8e5m2": ml_dtypes.float8_e5m2, "f8e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
                       "f8e5m2fnuz": ml_dtypes.float8_e5m2fnuz, "f8e8m0": ml_dtypes.float8_e8m0fnu,
                       "f64": np.float64, "u16": np.uint16, "c64": np.complex64}
    for key, value in {**numpy_side, **torch_side}.items():
        assert loaded[key].shape == tuple(value.shape), key
        if key in expected_dtypes:
            assert loaded[key].dtype == expected_dtypes[key], key
        np.testing.assert_array_equal(raw_bits(loaded[key]), raw_bits(value), err_msg=key)
    # and back: netdef writes, the library reads, every byte equal
    save(loaded, tmp_path / "ours.safetensors")
    with safetensors.safe_open(tmp_path / "ours.safetensors", "pt") as f:
        back = {k: f.get_tensor(k) for k in f.keys()}
    assert set(back) == set(loaded)
    for key, value in loaded.items():
        assert tuple(back[key].shape) == value.shape, key
        np.testing.assert_array_equal(raw_bits(back[key]), raw_bits(value), err_msg=key)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_netdef_safetensors_read_by_library_bit_exact(torch_net, tmp_path, dtype):
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in torch_net.state_dict().items()}
    save(sd, tmp_path / "ours.safetensors")
    back = safetensors.torch.load_file(tmp_path / "ours.safetensors")
    assert set(back) == set(sd)
    for key, value in sd.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(raw_bits(back[key]), raw_bits(value), err_msg=key)
    with safetensors.safe_open(tmp_path / "ours.safetensors", "np") as f:
        assert f.metadata() == {"format": "pt"}
    assert list(load(tmp_path / "ours.safetensors")) == list(sd)  # header keeps the caller's order


def test_safetensors_arrays_are_views_of_the_mapped_file(tmp_path, rng):
    w = rng.standard_normal((64, 64)).astype(np.float32)
    save({"w": w, "b": w[0].astype(np.float16)}, tmp_path / "m.safetensors")
    sd = load(tmp_path / "m.safetensors")
    assert not sd["w"].flags.owndata and sd["w"].base is not None
    sd["w"][0, 0] = 123.0  # copy-on-write: the file itself never changes
    np.testing.assert_array_equal(load(tmp_path / "m.safetensors")["w"], w)


def _st_header(**over) -> dict:
    info = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    info.update(over)
    return {"layer.weight": info}


@pytest.mark.parametrize("make, what", [
    (lambda p: p.write_bytes(b""), "too short"),
    (lambda p: p.write_bytes(b"\x05\x00\x00"), "too short"),
    (lambda p: p.write_bytes(struct.pack("<Q", 1000) + b"{}"), "header length field says 1000 bytes"),
    (lambda p: write_safetensors(p, b"{nope}"), "header is not valid JSON"),
    (lambda p: write_safetensors(p, b"[]"), "not an object"),
    (lambda p: write_safetensors(p, _st_header(data_offsets=[0, 32]), bytes(16)),
     "key 'layer.weight': data_offsets [0, 32] run past the 16 data bytes"),
    (lambda p: write_safetensors(p, _st_header(dtype="F128"), bytes(16)),
     "key 'layer.weight': unknown dtype 'F128'"),
    (lambda p: write_safetensors(p, _st_header(dtype="F4", shape=[32]), bytes(16)),
     "key 'layer.weight': dtype F4 is a packed sub-byte type"),
    (lambda p: write_safetensors(p, _st_header(shape=[2, 3]), bytes(16)),
     "key 'layer.weight': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 16] hold 16"),
    (lambda p: write_safetensors(p, _st_header(shape=[2, -2]), bytes(16)),
     "key 'layer.weight': shape [2, -2] is not a list of non-negative integers"),
    (lambda p: write_safetensors(p, _st_header(data_offsets=[8, 4]), bytes(16)),
     "key 'layer.weight': data_offsets [8, 4] is not [begin, end]"),
    (lambda p: write_safetensors(p, _st_header(), bytes(24)),
     "the tensors cover 16 data bytes but the file holds 24"),
    (lambda p: write_safetensors(p, {**_st_header(), "layer.bias": {"dtype": "F32", "shape": [2],
                                                                    "data_offsets": [8, 16]}}, bytes(16)),
     "key 'layer.bias': data starts at byte 8, expected 16"),
    (lambda p: write_safetensors(p, {"layer.weight": {"dtype": "F32", "shape": [4]}}, bytes(16)),
     "key 'layer.weight': expected an object with exactly dtype, shape and data_offsets"),
    (lambda p: write_safetensors(p, b'{"a":{"dtype":"U8","shape":[],"dtype":"U8"}}'),
     "lists key 'dtype' twice"),
    # found by fuzzing: each escaped as RecursionError, ValueError or TypeError naming no file
    (lambda p: write_safetensors(p, b"[" * 100_000 + b"]" * 100_000), "nests JSON too deeply"),
    (lambda p: write_safetensors(p, b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 0]}}'),
     "header is not valid JSON"),
    (lambda p: write_safetensors(p, _st_header(dtype=["F32"]), bytes(16)), "key 'layer.weight': dtype ['F32'] is not a string"),
    (lambda p: write_safetensors(p, _st_header(dtype={"F32": 1}), bytes(16)), "key 'layer.weight': dtype {'F32': 1} is not"),
    (lambda p: write_safetensors(p, {**_st_header(), "z": {"dtype": "F32", "shape": [0, 2**64], "data_offsets": [16, 16]}},
                                 bytes(16)), "key 'z': shape [0, 18446744073709551616] has more than 64 dimensions or"),
    (lambda p: write_safetensors(p, {**_st_header(), "z": {"dtype": "F32", "shape": [0] * 65, "data_offsets": [16, 16]}},
                                 bytes(16)), "key 'z': shape [0, 0, 0, 0, 0, 0, 0, 0, ...] has more than 64 dimensions"),
    (lambda p: write_safetensors(p, {**_st_header(), "z": {"dtype": "F32", "shape": [0, 2**62, 2**62],
                                                           "data_offsets": [16, 16]}}, bytes(16)),
     "key 'z': shape [0, 4611686018427387904, 4611686018427387904] is too large for an array"),
])
def test_safetensors_bad_input_names_file_and_key(tmp_path, make, what):
    path = tmp_path / "bad.safetensors"
    make(path)
    message = error(path)
    assert str(path) in message and what in message


@pytest.mark.parametrize("fmt", [".wts", ".safetensors"])
def test_a_huge_key_gives_a_short_message(tmp_path, fmt):
    key = "k" * (1 << 20)
    path = tmp_path / f"big{fmt}"
    if fmt == ".wts":
        path.write_bytes(b"1\n" + key.encode() + b" 2 3f800000\n")  # one value short
    else:
        write_safetensors(path, {key: {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}}, bytes(16))
    message = error(path)
    assert str(path) in message and "kkkkkkkk" in message and "1,048,576 characters" in message
    assert len(message) < 400 + len(str(path))


def test_safetensors_truncated_real_file_is_reported(torch_net, tmp_path):
    safetensors.torch.save_file(torch_net.state_dict(), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    message = error(tmp_path / "cut.safetensors")
    assert str(tmp_path / "cut.safetensors") in message and "truncated" in message


def _resident_pages(array: np.ndarray) -> tuple[int, int]:
    """(resident, total) pages under `array`, from /proc/self/pagemap's present bit."""
    import mmap

    first = array.ctypes.data // mmap.PAGESIZE
    last = (array.ctypes.data + array.nbytes - 1) // mmap.PAGESIZE + 1
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read((last - first) * 8), "<u8")
    return int(np.count_nonzero(entries >> np.uint64(63))), last - first


def test_release_pages_drops_mapped_pages_and_keeps_every_value(tmp_path, rng):
    """What build() does to an original kernel that BatchNorm folding replaced: its file pages
    leave memory, and its values (even ones written since loading) stay exactly as they were."""
    import platform

    from netdef.weights.safetensors import release_pages

    values = rng.standard_normal(1 << 20).astype(np.float32)
    save({"w": values}, tmp_path / "w.safetensors")
    w = load(tmp_path / "w.safetensors")["w"]
    w[5] = 42.0  # a page the program wrote: private memory, which must survive
    expected = values.copy()
    expected[5] = 42.0
    assert float(w.astype(np.float64).sum()) == float(expected.astype(np.float64).sum())  # every page resident
    release_pages(w)
    kernel = tuple(int(x) for x in re.findall(r"\d+", platform.release())[:2])
    if sys.platform.startswith("linux") and kernel >= (5, 4) and os.access("/proc/self/pagemap", os.R_OK):
        resident, total = _resident_pages(w)
        assert resident <= 3 and total > 1000, (resident, total)  # the written page and the edges may stay
    np.testing.assert_array_equal(w, expected)
    release_pages(np.ones(10))  # not a mapped file: nothing to do


# ---- torch files and in-memory state_dicts ---------------------------------------------------
def test_pt_round_trip_and_checkpoint_unwrapping(torch_net, tmp_path):
    sd = torch_net.state_dict()
    torch.save(sd, tmp_path / "plain.pth")
    optimizer = torch.optim.SGD(torch_net.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 7, "state_dict": sd, "optimizer": optimizer.state_dict()}, tmp_path / "ckpt.pt")
    plain, ckpt = load(tmp_path / "plain.pth"), load(tmp_path / "ckpt.pt")
    assert plain.nested_key is None and ckpt.nested_key == "state_dict" and not ckpt.flat
    assert "['state_dict']" in repr(ckpt)
    for loaded in (plain, ckpt):
        assert list(loaded) == list(sd)
        for key, value in sd.items():
            assert loaded[key].dtype == value.numpy().dtype, key
            np.testing.assert_array_equal(loaded[key], value.numpy(), err_msg=key)


def test_pt_bfloat16_keeps_its_dtype(tmp_path):
    w = torch.randn(5, 3).bfloat16()
    torch.save({"w": w}, tmp_path / "bf.pt")
    arr = load(tmp_path / "bf.pt")["w"]
    assert arr.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(raw_bits(arr), raw_bits(w))


def test_pickled_module_asks_for_state_dict(torch_net, tmp_path):
    torch.save(torch_net, tmp_path / "module.pt")
    message = error(tmp_path / "module.pt")
    assert str(tmp_path / "module.pt") in message and "model.state_dict()" in message
    assert "TorchNet" in message


class _Payload:
    """A pickle that would create a file when unpickled: the test checks it never runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("how", ["zip", "legacy pickle"])
def test_malicious_pickle_is_refused_in_netdefs_words(tmp_path, how):
    marker = str(tmp_path / "pwned")
    obj = {"w": torch.ones(2), "x": _Payload(marker)}
    torch.save(obj, tmp_path / "evil.pt", _use_new_zipfile_serialization=how == "zip")
    message = error(tmp_path / "evil.pt")
    assert not os.path.exists(marker)  # nothing ran
    assert str(tmp_path / "evil.pt") in message
    assert "contains code or objects that are not tensors" in message and "will not be loaded" in message
    assert "posix.mkdir" in message or "operand" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_pt_with_a_damaged_record_is_refused(torch_net, tmp_path):
    """torch's zip reader ignores CRC-32s: one flipped byte in a storage loaded changed values."""
    torch.save(torch_net.state_dict(), tmp_path / "net.pt")
    data = bytearray((tmp_path / "net.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "net.pt") as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 2] ^= 0x40  # inside the record's bytes
    (tmp_path / "bad.pt").write_bytes(data)
    message = error(tmp_path / "bad.pt")
    assert str(tmp_path / "bad.pt") in message and "data/0" in message and "fails its CRC-32 check" in message


def test_a_fifo_is_named_for_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "pipe.wts")  # opening it to read would block forever
    message = error(tmp_path / "pipe.wts")
    assert str(tmp_path / "pipe.wts") in message and "is a named pipe (FIFO), not a regular file" in message
    assert "not found" not in message
    (tmp_path / "dir.safetensors").mkdir()
    assert "is a directory, not a regular file" in error(tmp_path / "dir.safetensors")


@pytest.mark.parametrize("obj, what", [
    ([torch.ones(2)], "is not a state_dict: got a value of type list"),
    ({"weight": torch.ones(2), "epoch": 3}, "key 'epoch' holds a value of type int, not a tensor"),
    ({"a": {"w": torch.ones(1)}, "b": {"w": torch.ones(1)}}, "several state_dicts ('a', 'b')"),
])
def test_pt_that_is_not_a_state_dict(tmp_path, obj, what):
    torch.save(obj, tmp_path / "x.pt")
    message = error(tmp_path / "x.pt")
    assert str(tmp_path / "x.pt") in message and what in message


@pytest.mark.parametrize("data", [b"", b"not a zip or pickle"])
def test_corrupt_pt(tmp_path, data):
    (tmp_path / "c.pt").write_bytes(data)
    message = error(tmp_path / "c.pt")
    assert str(tmp_path / "c.pt") in message and "not a readable torch file" in message


def test_mapping_inputs(torch_net, rng):
    sd = load(torch_net.state_dict())
    assert sd.source is None and not sd.flat
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    arrays = {"w": rng.standard_normal(3).astype(np.float32), "p": nn.Parameter(np.ones(2, np.float32))}
    assert load(arrays)["p"].tolist() == [1.0, 1.0]
    assert load({"model": arrays}).nested_key == "model"
    assert load(sd) is sd
    with pytest.raises(netdef.WeightsError, match=r"key 'b' holds a value of type str"):
        load({"a": np.ones(1), "b": "text"})
    with pytest.raises(netdef.WeightsError, match=r"pass model.state_dict\(\)"):
        load(torch_net)


def test_missing_file_and_unknown_extension(tmp_path):
    for name in ("nope.wts", "nope.safetensors", "nope.pt"):
        message = error(tmp_path / name)
        assert str(tmp_path / name) in message and "not found" in message
    (tmp_path / "w.onnx").write_bytes(b"x")
    assert "unknown weights format '.onnx'" in error(tmp_path / "w.onnx")


# ---- save and convert -------------------------------------------------------------------------
def test_convert_between_formats(torch_net, tmp_path):
    sd = torch_net.state_dict()
    torch.save({"model": sd}, tmp_path / "src.pt")
    summary = convert(tmp_path / "src.pt", tmp_path / "a.safetensors")
    assert summary["format"] == "safetensors" and summary["tensors"] == len(sd)
    assert summary["nested_key"] == "model" and summary["dtypes"] == {"float32": 7, "int64": 1}
    assert summary["values"] == sum(v.numel() for v in sd.values())
    assert summary["bytes"] == os.path.getsize(tmp_path / "a.safetensors")
    summary = convert(tmp_path / "a.safetensors", tmp_path / "b.wts", wts_variant="single")
    assert summary["format"] == "wts" and summary["src"] == str(tmp_path / "a.safetensors")
    gen_wts(sd, tmp_path / "ref.wts", "single")
    assert (tmp_path / "b.wts").read_bytes() == (tmp_path / "ref.wts").read_bytes()
    summary = convert(tmp_path / "b.wts", tmp_path / "c.safetensors")
    assert summary["flat"] is True
    back = safetensors.torch.load_file(tmp_path / "c.safetensors")
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key].numpy().view(np.uint32), f32_bits(value), err_msg=key)


def test_save_is_atomic_and_errors_name_file_and_key(tmp_path, rng):
    path = tmp_path / "out.wts"
    save({"ok": rng.standard_normal(4).astype(np.float32)}, path)
    before = path.read_bytes()
    bad = {"ok": np.ones(3, np.float32), "has space": np.ones(2, np.float32)}
    with pytest.raises(netdef.WeightsError, match=r"out.wts: key 'has space' .* whitespace"):
        save(bad, path)
    with pytest.raises(netdef.WeightsError,
                       match=r"x.safetensors: key 'c': dtype complex128 has no safetensors"):
        save({"a": np.ones(2, np.float32), "c": np.ones(2, np.complex128)}, tmp_path / "x.safetensors")
    with pytest.raises(netdef.WeightsError, match=r"cannot write '.onnx'"):
        save({"a": np.ones(2)}, tmp_path / "x.onnx")
    with pytest.raises(netdef.WeightsError, match=r"wts_variant='hex'"):
        save({"a": np.ones(2)}, path, wts_variant="hex")
    assert path.read_bytes() == before  # the old file survives every failed write
    assert sorted(os.listdir(tmp_path)) == ["out.wts"]  # no temp files, no partial outputs
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_reading_wts_and_safetensors_never_imports_torch(tmp_path, rng):
    save({"w": rng.standard_normal((4, 4)).astype(np.float32)}, tmp_path / "a.wts", wts_variant="0x")
    save({"w": rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16)}, tmp_path / "a.safetensors")
    code = (
        "import sys, numpy as np, netdef, netdef.weights as W\n"
        f"a = W.load({str(tmp_path / 'a.wts')!r}); b = W.load({str(tmp_path / 'a.safetensors')!r})\n"
        f"W.convert({str(tmp_path / 'a.wts')!r}, {str(tmp_path / 'c.safetensors')!r})\n"
        "assert a['w'].size == 16 and b['w'].shape == (4, 4)\n"
        "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_to_torch_for_the_torch_original(tmp_path):
    """Shipped-style weights load into a torch original: flat .wts reshaped, bf16 bits kept, bad sizes named."""
    torch.manual_seed(0)
    original = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    like = original.state_dict()
    path = str(tmp_path / "w.wts")
    save(like, path)
    converted = netdef.weights.to_torch(load(path), like=like)
    for k, v in like.items():
        assert converted[k].shape == v.shape and converted[k].dtype == v.dtype
        assert torch.equal(converted[k], v)
    bf = {"0.weight": np.asarray(like["0.weight"].numpy(), ml_dtypes.bfloat16)}
    assert torch.equal(netdef.weights.to_torch(bf, like={})["0.weight"], like["0.weight"].to(torch.bfloat16))
    with pytest.raises(netdef.WeightsError, match=r"'0.weight' has shape \(5,\) but the torch model's is \(4, 3, 3, 3\)"):
        netdef.weights.to_torch({"0.weight": np.ones(5, np.float32)}, like=like)


@pytest.mark.parametrize("text, what", [
    (b'{"weight_map": {"w": "a\xff.safetensors"}}', "not a valid JSON sharded checkpoint index"),  # not UTF-8
    (b"[" * 100_000, "nested too deeply"),
])
def test_a_damaged_sharded_index_is_one_error_naming_it(tmp_path, text, what):
    index = tmp_path / "model.safetensors.index.json"
    index.write_bytes(text)
    message = error(index)
    assert str(index) in message and what in message


def test_a_sharded_index_that_is_a_fifo_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors.index.json")  # opening it to read would block forever
    message = error(tmp_path / "model.safetensors.index.json")
    assert "is a named pipe (FIFO), not a regular file" in message


def test_a_sharded_index_names_a_huge_key_in_a_short_message(tmp_path):
    key = "k" * 1_000_000
    safetensors.numpy.save_file({"other": np.ones(2, np.float32)}, str(tmp_path / "shard.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {key: "shard.safetensors"}}))
    message = error(index)
    assert "does not hold it" in message and "1,000,000 characters" in message and len(message) < 600
