"""Engine runtime: every check that needs no GPU runs on real plans built by the real backend;
execution tests are marked gpu and skip where no GPU the backend supports exists."""
from __future__ import annotations

import json
import shutil
import sys
import threading

import numpy as np
import pytest

import netdef
from netdef import backend, nn
from netdef.plan import sidecar_path
from netdef.runtime import (Device, Engine, InputError, TensorSpec, check_device, check_input_shapes,
                            cuda_device, supported_capabilities)
from netdef.tolerance import assert_close

from helpers import randn


def _supported_gpu() -> str | None:
    """None when a GPU the active backend runs on is present, else why the gpu tests skip."""
    try:
        device = cuda_device()
        check_device(device, {}, "probe")
    except netdef.EngineError as exc:
        return str(exc).split(". ")[0]
    return None


NO_GPU = _supported_gpu()
gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no supported GPU: {NO_GPU}")
rtx_only = pytest.mark.skipif(not backend.is_rtx(), reason="TensorRT-RTX compute capability rules")


class ConvReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


def _model(rng) -> ConvReLU:
    m = ConvReLU()
    m.load_state_dict({"conv.weight": randn(rng, 4, 3, 3, 3), "conv.bias": randn(rng, 4)})
    return m


def _expected(m: ConvReLU, x: np.ndarray) -> np.ndarray:
    import torch

    w = torch.from_numpy(m.conv.weight.data)
    b = torch.from_numpy(m.conv.bias.data)
    return torch.nn.functional.conv2d(torch.from_numpy(x), w, b, padding=1).relu().numpy()


DYNAMIC = netdef.Input("x", (("batch", 1, 2, 4), 3, 8, 8))
STATIC = netdef.Input("x", (2, 3, 8, 8))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real dynamic-batch plan, saved with its sidecar; tests copy it before damaging it."""
    rng = np.random.default_rng(7)
    model = _model(rng)
    plan = netdef.build(model, DYNAMIC, progress=False)
    path = tmp_path_factory.mktemp("plan") / "convrelu.engine"
    netdef.save_engine(plan, path)
    return model, plan, path


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the saved plan and sidecar."""
    _, _, path = built
    dst = tmp_path / "copy.engine"
    shutil.copy(path, dst)
    shutil.copy(sidecar_path(path), sidecar_path(dst))
    return dst


def _edit_sidecar(path, **changes) -> None:
    meta = json.loads(open(sidecar_path(path)).read())
    meta.update(changes)
    open(sidecar_path(path), "w").write(json.dumps(meta))


# ---- specs from the sidecar, without a GPU --------------------------------------------------
def test_inputs_and_outputs_come_from_the_sidecar_without_a_gpu(built):
    _, _, path = built
    engine = Engine.load(path, deserialize=False)
    assert engine.inputs == [TensorSpec("x", "float32", (-1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))]
    assert engine.inputs[0].is_dynamic
    assert [o.name for o in engine.outputs] == ["output"]
    assert "min=(1, 3, 8, 8)" in repr(engine) and "not deserialized" in repr(engine)


# ---- sidecar checks ------------------------------------------------------------------------------
def test_other_backend_names_both_sides(copy):
    other = "tensorrt" if backend.is_rtx() else "tensorrt_rtx"
    _edit_sidecar(copy, backend=other, backend_version="10.13.3.9")
    with pytest.raises(netdef.EngineError) as info:
        Engine.load(copy, deserialize=False)
    msg = str(info.value)
    assert f"built by {other} 10.13.3.9" in msg
    assert f"active backend is {backend.name()} {backend.version()}" in msg
    assert str(copy) in msg and f"NETDEF_BACKEND={other}" in msg


def test_other_backend_version_names_both_versions(copy):
    _edit_sidecar(copy, backend_version="0.9.0.1")
    with pytest.raises(netdef.EngineError) as info:
        Engine.load(copy, deserialize=False)
    msg = str(info.value)
    assert "0.9.0.1" in msg and backend.version() in msg and str(copy) in msg


def test_plan_and_sidecar_size_mismatch(copy):
    data = open(copy, "rb").read()
    open(copy, "wb").write(data[: len(data) // 2])
    with pytest.raises(netdef.EngineError, match="truncated") as info:
        Engine.load(copy)
    assert str(copy) in str(info.value) and f"{len(data):,}" in str(info.value)


# ---- corrupted and missing files ---------------------------------------------------------------
def test_flipped_header_bytes_are_caught_without_a_gpu(copy):
    data = bytearray(open(copy, "rb").read())
    data[0:4] = bytes(b ^ 0xFF for b in data[0:4])
    open(copy, "wb").write(bytes(data))
    with pytest.raises(netdef.EngineError, match="corrupted") as info:
        Engine.load(copy)
    assert str(copy) in str(info.value)


@pytest.mark.parametrize("keep", [40, 0.5, -1])
def test_truncated_plan_without_sidecar_is_caught_from_its_header(copy, keep):
    data = open(copy, "rb").read()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    open(copy, "wb").write(data[:n])
    (copy.parent / (copy.name + ".json")).unlink()
    for load in (Engine.load, netdef.load_plan):
        with pytest.raises(netdef.EngineError, match="is truncated") as info:
            load(copy)
        assert str(copy) in str(info.value) and f"it has {n:,} bytes but its header records {len(data):,}" in str(info.value)


def test_flipped_body_bytes_fail_the_recorded_checksum(copy):
    import hashlib

    data = bytearray(open(copy, "rb").read())
    _edit_sidecar(copy, plan_sha256=hashlib.sha256(data).hexdigest())
    Engine.load(copy, deserialize=False)  # intact: the checksum matches
    data[len(data) // 2] ^= 0x5A
    open(copy, "wb").write(bytes(data))
    with pytest.raises(netdef.EngineError, match="corrupted: its SHA-256") as info:
        Engine.load(copy)
    assert str(copy) in str(info.value)


def test_garbage_bytes_and_empty_plans():
    with pytest.raises(netdef.EngineError, match="corrupted"):
        Engine(b"this is not a TensorRT plan at all" * 4)
    with pytest.raises(netdef.EngineError, match="non-empty"):
        Engine(b"")
    with pytest.raises(netdef.EngineError, match="non-empty"):
        Engine(None)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.engine"
    with pytest.raises(netdef.EngineError) as info:
        Engine.load(path)
    assert str(path) in str(info.value)


# ---- the device ------------------------------------------------------------------------------------
@pytest.mark.skipif(NO_GPU is None, reason="a supported GPU is present")
def test_no_gpu_says_what_to_install(built):
    _, _, path = built
    with pytest.raises(netdef.EngineError) as info:
        Engine.load(path)
    msg = str(info.value)
    assert "pip install" in msg and ("torch" in msg or "cuda-python" in msg)


def test_no_torch_falls_back_to_cuda_python_and_says_so(built, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    try:
        device = cuda_device()
    except netdef.EngineError as exc:
        assert "torch is not installed" in str(exc) and "cuda-python" in str(exc)
    else:
        assert device.via == "cuda-python"


@rtx_only
def test_hopper_gets_an_actionable_message(built):
    _, plan, _ = built
    h100 = Device(0, "NVIDIA H100 80GB HBM3", (9, 0), "torch")
    with pytest.raises(netdef.EngineError) as info:
        check_device(h100, plan.metadata, "'x.engine'")
    msg = str(info.value)
    assert "compute capability 9.0" in msg and "pip install tensorrt" in msg
    assert "NETDEF_BACKEND=tensorrt" in msg
    assert (9, 0) not in supported_capabilities() and (8, 6) in supported_capabilities()


@rtx_only
def test_rtx_plan_targets_against_the_gpu(built):
    _, plan, _ = built
    check_device(Device(0, "NVIDIA GeForce RTX 3090", (8, 6), "torch"), plan.metadata, "p")
    turing = Device(0, "NVIDIA GeForce RTX 2080 Ti", (7, 5), "torch")
    with pytest.raises(netdef.EngineError, match="leave out Turing"):
        check_device(turing, plan.metadata, "p")
    check_device(turing, {}, "p")  # a plan from elsewhere records no targets: TensorRT decides
    meta = dict(plan.metadata, compute_capabilities=["8.9", "12.0"])
    with pytest.raises(netdef.EngineError) as info:
        check_device(Device(0, "NVIDIA GeForce RTX 3090", (8, 6), "torch"), meta, "'p.engine'")
    assert "8.9, 12.0" in str(info.value) and "compute capability 8.6" in str(info.value)


# ---- input validation (no GPU: it runs before deserializing) ---------------------------------------
def test_shape_errors_name_input_dim_and_range(built, rng):
    _, _, path = built
    engine = Engine.load(path, deserialize=False)
    with pytest.raises(InputError, match=r"input 'x' dim 0 is 5, outside .* range \[1, 4\] \(opt 2\)"):
        engine(randn(rng, 5, 3, 8, 8))
    with pytest.raises(InputError, match=r"input 'x' dim 2 is 9 but the engine was built for 8"):
        engine(randn(rng, 2, 3, 9, 8))
    with pytest.raises(InputError, match=r"has rank 3 \(shape \(3, 8, 8\)\) but the engine declares rank 4"):
        engine(randn(rng, 3, 8, 8))
    with pytest.raises(InputError, match=r"missing \['x'\], unexpected \['y'\]"):
        engine(y=randn(rng, 2, 3, 8, 8))
    with pytest.raises(InputError, match="takes 1 inputs"):
        engine(randn(rng, 2, 3, 8, 8), randn(rng, 2, 3, 8, 8))
    with pytest.raises(InputError, match="float64 but the engine expects float32"):
        engine(randn(rng, 2, 3, 8, 8, dtype=np.float64))


def test_check_input_shapes_accepts_the_profile_bounds():
    spec = TensorSpec("x", "float32", (-1, 3), (1, 3), (2, 3), (4, 3))
    for batch in (1, 2, 4):
        check_input_shapes([spec], {"x": (batch, 3)})
    with pytest.raises(InputError, match=r"dim 0 is 0, outside"):
        check_input_shapes([spec], {"x": (0, 3)})


# ---- execution (needs a GPU the backend supports) -------------------------------------------------
@pytest.mark.gpu
@gpu
def test_numpy_in_numpy_out_with_dynamic_batch(built, rng):
    model, _, path = built
    engine = Engine.load(path)
    for batch in (1, 3, 4):
        x = randn(rng, batch, 3, 8, 8)
        y = engine(x)
        assert isinstance(y, np.ndarray)
        assert_close(y, _expected(model, x), "float32")
    assert engine.outputs[0].dtype == "float32"


@pytest.mark.gpu
@gpu
def test_torch_cuda_tensors_zero_copy_and_buffer_reuse(built, rng):
    import torch

    model, _, path = built
    engine = Engine.load(path)
    x = torch.from_numpy(randn(rng, 2, 3, 8, 8)).cuda()
    y1 = engine(x)
    assert y1.is_cuda
    assert_close(y1.cpu().numpy(), _expected(model, x.cpu().numpy()), "float32")
    x2 = torch.from_numpy(randn(rng, 2, 3, 8, 8)).cuda()
    y2 = engine(x=x2)
    assert y2.data_ptr() == y1.data_ptr()  # same shape signature: same output buffer
    assert_close(y2.cpu().numpy(), _expected(model, x2.cpu().numpy()), "float32")


@pytest.mark.gpu
@gpu
def test_cuda_graph_static_engine(rng):
    model = _model(rng)
    engine = Engine(netdef.build(model, STATIC, progress=False), cuda_graph=True)
    for _ in range(3):
        x = randn(rng, 2, 3, 8, 8)
        assert_close(engine(x), _expected(model, x), "float32")


@pytest.mark.gpu
@gpu
def test_cuda_graph_refuses_dynamic_shapes(built):
    _, _, path = built
    with pytest.raises(netdef.EngineError, match="needs static shapes"):
        Engine.load(path, cuda_graph=True)


@pytest.mark.gpu
@gpu
def test_one_context_per_thread(built, rng):
    model, _, path = built
    engine = Engine.load(path)
    xs = [randn(rng, 2, 3, 8, 8) for _ in range(4)]
    results, contexts = {}, set()

    def work(i):
        results[i] = engine(xs[i])
        contexts.add(id(engine._context()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(contexts) == 4
    for i, x in enumerate(xs):
        assert_close(results[i], _expected(model, x), "float32")


@pytest.mark.gpu
@gpu
@rtx_only
def test_rtx_runtime_cache_is_saved_beside_the_engine(copy, rng):
    engine = Engine.load(copy)
    engine(randn(rng, 2, 3, 8, 8))
    cache = copy.parent / (copy.name + ".runtime_cache")
    assert cache.exists() and cache.stat().st_size > 0
