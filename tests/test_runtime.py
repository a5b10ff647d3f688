"""Engine runtime: every check that needs no GPU runs on real plans built by the real backend;
execution tests are marked gpu and skip where no GPU the backend supports exists."""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest

import netdef
from netdef import backend, nn
from netdef.plan import sidecar_path
from netdef.runtime import (Device, Engine, InputError, TensorSpec, check_device, check_input_shapes,
                            check_plan_bytes, cuda_device, supported_capabilities)
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
    check_device(turing, dict(plan.metadata, compute_capabilities=["CURRENT"]), "p")  # the building GPU
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


# ---- malformed sidecars: one EngineError naming the sidecar file and the field ---------------------
MALFORMED = [
    ([], "'(top level)' must be an object, got []"),
    ({"inputs": 5}, "'inputs' must be an array, got 5"),
    ({"inputs": [{"dtype": "float32"}]}, "'inputs[0].name' is missing"),
    ({"inputs": [{"name": "x", "shape": ["a"]}]}, "'inputs[0].shape[0]' must be an integer, got \"a\""),
    ({"inputs": [{"name": "x", "shape": [2, 3], "min": [1], "opt": [1], "max": [1]}]}, "'inputs[0].min' has rank 1"),
    ({"inputs": [{"name": "x", "shape": [-1], "min": [4], "opt": [2], "max": [8]}]}, "'inputs[0]' needs min <= opt <= max"),
    ({"inputs": [{"name": "x"}, {"name": "x"}]}, "'inputs[1].name' repeats the name \"x\""),
    ({"outputs": [7]}, "'outputs[0]' must be an object, got 7"),
    ({"plan_bytes": "918172"}, "'plan_bytes' must be an integer, got \"918172\" (a JSON string)"),
    ({"plan_bytes": True}, "'plan_bytes' must be an integer, got true"),
    ({"plan_sha256": "abc"}, "'plan_sha256' must be 64 lowercase hex digits"),
    ({"compute_capabilities": ["fast"]}, "'compute_capabilities[0]' must be a compute capability"),
    ({"gpu": {"compute_capability": [8]}}, "'gpu.compute_capability' must be [major, minor]"),
    ({"gpu": {"compute_capability": "CURRENT"}}, "'gpu.compute_capability' must be a compute capability"),
    ({"dtype_overrides": {"a": 1}}, "'dtype_overrides[\"a\"]' must be a string"),
    ({"previous": {"plan_bytes": 1}}, "'previous.plan_sha256' is missing"),
    ({"backend": ["tensorrt_rtx"]}, "'backend' must be a string"),
]


@pytest.mark.parametrize("meta,expected", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_sidecar_names_the_file_and_field(copy, meta, expected):
    open(sidecar_path(copy), "w").write(json.dumps(meta))
    for load in (lambda p: Engine.load(p, deserialize=False), netdef.load_plan):
        with pytest.raises(netdef.EngineError) as info:
            load(copy)
        msg = str(info.value)
        assert f"engine sidecar {str(sidecar_path(copy))!r} is malformed: field {expected}" in msg, msg


@pytest.mark.parametrize("text,expected", [
    (b"[" * 100_000, "is not valid JSON: nested too deeply"),
    (b'{"inputs": [', "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid JSON"),
    (b" " * (17 << 20), "netdef's sidecars are a few KB"),
])
def test_unparseable_sidecar_is_one_clear_error(copy, text, expected):
    open(sidecar_path(copy), "wb").write(text)
    with pytest.raises(netdef.EngineError, match=expected) as info:
        netdef.load_plan(copy)
    assert str(sidecar_path(copy)) in str(info.value) and len(str(info.value)) < 600


def test_a_long_value_is_shortened_in_the_message(copy):
    _edit_sidecar(copy, network=["x" * 100_000])
    with pytest.raises(netdef.EngineError, match=r"field 'network' must be a string") as info:
        netdef.load_plan(copy)
    assert len(str(info.value)) < 600


def test_fields_netdef_does_not_know_are_kept(copy):
    _edit_sidecar(copy, tf32=True, future={"anything": [1, 2]})
    assert netdef.load_plan(copy).metadata["future"] == {"anything": [1, 2]}


# ---- what the plan's own header tells, without a sidecar ------------------------------------------
def _without_sidecar(path) -> None:
    (path.parent / (path.name + ".json")).unlink()


@rtx_only
def test_garbage_without_sidecar_is_not_a_plan(tmp_path):
    from netdef.inspect import describe_plan

    path = tmp_path / "garbage.engine"
    path.write_bytes(b"this is not a TensorRT plan at all, just some bytes" * 3)
    for call in (netdef.load_plan, Engine.load, describe_plan):
        with pytest.raises(netdef.EngineError, match=r"is not a tensorrt_rtx plan .* starts with b'this is ', "
                                                     r"where tensorrt_rtx plans start with b'vtrt'") as info:
            call(str(path))
        assert str(path) in str(info.value)
    path.write_bytes(b"vtr")
    with pytest.raises(netdef.EngineError, match="too short to be a plan"):
        netdef.load_plan(path)


def test_bytes_appended_to_a_plan_are_caught(copy):
    data = open(copy, "rb").read()
    _without_sidecar(copy)
    open(copy, "wb").write(data + b"\0" * 10)
    with pytest.raises(netdef.EngineError, match=r"has 10 bytes after the plan its header describes"):
        Engine.load(copy, deserialize=False)


def test_header_names_the_version_that_built_a_plan_without_sidecar(copy):
    from netdef.inspect import describe_plan

    _without_sidecar(copy)
    header = netdef.load_plan(copy).header
    assert header.backend == "tensorrt_rtx" and header.version == backend.version()
    assert f"its header says tensorrt_rtx {backend.version()}" in describe_plan(str(copy))
    Engine.load(copy, deserialize=False)  # the same version: nothing to refuse
    data = bytearray(open(copy, "rb").read())
    data[27] = (data[27] + 1) % 256  # the build number
    open(copy, "wb").write(bytes(data))
    with pytest.raises(netdef.EngineError, match=r"was built by tensorrt_rtx \d+\.\d+\.\d+\.\d+ \(per its header\) "
                                                 r"but the installed tensorrt_rtx is"):
        Engine.load(copy, deserialize=False)


def test_plan_without_sidecar_loaded_lazily_deserializes_to_learn_its_inputs(copy, rng):
    """Without a sidecar the inputs are unknown until TensorRT reads the plan: the first call
    deserializes (here: the no-GPU error) instead of refusing every input."""
    _without_sidecar(copy)
    engine = Engine.load(copy, deserialize=False)
    assert engine.inputs == []
    if NO_GPU is None:
        assert engine(randn(rng, 2, 3, 8, 8)).shape == (2, 4, 8, 8)
    else:
        with pytest.raises(netdef.EngineError, match="needs an NVIDIA GPU"):
            engine(randn(rng, 2, 3, 8, 8))


# ---- decisions that differ per backend, taken under the classic row -----------------------------------
@pytest.fixture
def as_classic(monkeypatch):
    """The classic TensorRT 10.13 row of the decision table for code that reads only the row and the
    backend's identity (TensorRT's own module stays TensorRT-RTX: nothing here calls into it)."""
    monkeypatch.setattr(backend, "name", lambda: "tensorrt")
    monkeypatch.setattr(backend, "version", lambda: "10.13.3.9")
    assert not backend.capabilities().runtime_cache


def test_classic_row_device_checks(built, as_classic):
    from netdef.runtime.checks import diagnostic

    _, plan, _ = built
    assert supported_capabilities() is None  # classic lists no targets: any GPU may try
    assert diagnostic("MALFORMED_ENGINE") == 0
    h100 = Device(0, "NVIDIA H100", (9, 0), "torch")
    meta = dict(plan.metadata, backend="tensorrt", backend_version="10.13.3.9")
    check_device(h100, meta, "p")  # no building GPU recorded: TensorRT decides
    check_device(h100, dict(meta, gpu={"name": "NVIDIA H100", "compute_capability": "9.0"}), "p")
    with pytest.raises(netdef.EngineError, match=r"built on NVIDIA A100 \(compute capability 8.0\) but this GPU is "
                                                 r"cuda:0 NVIDIA H100 \(compute capability 9.0\); classic TensorRT"):
        check_device(h100, dict(meta, gpu={"name": "NVIDIA A100", "compute_capability": "8.0"}), "'p'")


def test_compute_capabilities_parse_or_are_one_engine_error():
    from netdef.runtime.device import parse_cc

    assert parse_cc("8.6") == parse_cc("SM86") == parse_cc([8, 6]) == (8, 6) and parse_cc("SM120") == (12, 0)
    for bad in ("CURRENT", "SM", [8], "x.y"):
        with pytest.raises(netdef.EngineError, match="is not a compute capability such as"):
            parse_cc(bad)


def test_classic_row_plan_checks(built, as_classic, tmp_path):
    from netdef.plan import check_structure
    from netdef.runtime.checks import check_metadata

    _, plan, _ = built
    assert check_structure(b"classic plans' layout is not read" * 2, "p") is None  # passed on to TensorRT
    with pytest.raises(netdef.EngineError, match="is truncated"):  # an RTX plan is recognised anyway
        check_structure(bytes(plan)[:1000], "p")
    rtx_plan = netdef.Plan(bytes(plan))  # no sidecar: the header says who built it
    with pytest.raises(netdef.EngineError, match=r"built by tensorrt_rtx [\d.]+ \(per its header\) but the active "
                                                 r"backend is tensorrt 10.13.3.9.*NETDEF_BACKEND=tensorrt_rtx"):
        check_metadata(rtx_plan.metadata, "p", rtx_plan)
    assert check_plan_bytes(netdef.Plan(bytes(plan)), "p") == 0  # no get_engine_validity on classic


def test_rtx_row_plan_checks_use_engine_validity(built):
    """TensorRT-RTX's get_engine_validity runs (without a GPU it flags only a broken magic, which
    netdef's own header check reports first, naming what the bytes are instead)."""
    from netdef.runtime.checks import diagnostic

    _, plan, _ = built
    if not backend.capabilities().engine_validity:
        pytest.skip("the active backend has no engine validity check")
    assert diagnostic("MALFORMED_ENGINE") > 0
    assert check_plan_bytes(netdef.Plan(bytes(plan)), "p") & diagnostic("MALFORMED_ENGINE") == 0


# ---- data-dependent output shapes: the allocator's logic on host memory ---------------------------
class HostMemory:
    """Host buffers with the device-memory interface OutputBuffer uses (raw, ptr, nbytes, view):
    the allocation policy is memory-agnostic, and no device exists here."""

    def __init__(self) -> None:
        self.allocations = 0

    def raw(self, nbytes: int) -> np.ndarray:
        self.allocations += 1
        return np.zeros(max(int(nbytes), 1), np.uint8)

    @staticmethod
    def ptr(buf: np.ndarray) -> int:
        return buf.ctypes.data

    @staticmethod
    def nbytes(buf: np.ndarray) -> int:
        return buf.nbytes

    @staticmethod
    def view(raw: np.ndarray, shape, dtype) -> np.ndarray:
        from netdef import dtypes

        n = int(np.prod(shape)) * dtypes.to_numpy(dtype).itemsize
        return raw[:n].view(dtypes.to_numpy(dtype)).reshape(shape)


def test_output_buffer_grows_on_demand_and_reuses_its_memory():
    from netdef.runtime.memory import GROWTH, OutputBuffer, output_allocator

    mem = HostMemory()
    out = OutputBuffer(mem, "indices", "int64")
    allocator = output_allocator(out)
    assert isinstance(allocator, backend.trt().IOutputAllocator)
    # capacity 80, kept for smaller and equal sizes; then at least doubled: 160, then 322
    for size, expect_allocs in ((80, 1), (40, 1), (80, 1), (81, 2), (160, 2), (161, 3), (320, 3), (8, 3)):
        out.begin()
        ptr = allocator.reallocate_output_async("indices", 0, size, 8, 0)
        assert ptr == mem.ptr(out.buffer) and mem.allocations == expect_allocs, (size, mem.allocations)
        n = size // 8
        allocator.notify_shape("indices", (n, 1))
        host = out.output()
        host[:] = np.arange(n).reshape(n, 1)  # TensorRT writes through the pointer it was given
        assert host.shape == (n, 1) and host.dtype == np.int64 and host.ctypes.data == ptr
    assert out.capacity == 160 * GROWTH


def test_output_buffer_reports_what_tensorrt_did_not_do():
    from netdef.runtime.memory import OutputBuffer, output_allocator

    out = OutputBuffer(HostMemory(), "boxes", "float32")
    allocator = output_allocator(out)
    out.begin()
    allocator.reallocate_output("boxes", 0, 16, 4)
    with pytest.raises(netdef.EngineError, match="did not report the shape of data-dependent output 'boxes'"):
        out.output()
    allocator.notify_shape("boxes", (2, 4))  # 32 bytes into a 16-byte buffer
    with pytest.raises(netdef.EngineError, match=r"has shape \(2, 4\) \(32 bytes\) but TensorRT asked for 16"):
        out.output()
    odd = OutputBuffer(HostMemory(), "boxes", "float32")
    assert odd.reallocate(16, 1 << 40) is None  # an alignment no allocation meets
    with pytest.raises(netdef.EngineError, match="needs 1099511627776-byte alignment"):
        odd.output()


# ---- more execution (needs a GPU the backend supports) ------------------------------------------------
class Scale(nn.Module):
    def forward(self, x, s):
        return x * s


@pytest.mark.gpu
@gpu
def test_bfloat16_numpy_and_0d_inputs(rng):
    import ml_dtypes

    plan = netdef.build(Scale(), netdef.Input("x", (2, 3), "bfloat16"), netdef.Input("s", (), "bfloat16"),
                        dtype="bfloat16", progress=False)
    engine = Engine(plan)
    x = randn(rng, 2, 3).astype(ml_dtypes.bfloat16)
    s = np.asarray(1.5, ml_dtypes.bfloat16)  # 0-d stays 0-d on its way to the device
    y = engine(x, s)
    assert y.dtype == ml_dtypes.bfloat16 and y.shape == (2, 3)
    assert_close(y.astype(np.float32), x.astype(np.float32) * 1.5, "bfloat16")


@pytest.mark.gpu
@gpu
def test_output_buffers_are_kept_for_the_latest_signatures_only(built, rng):
    import torch

    from netdef.runtime import OUTPUT_SIGNATURES

    _, _, path = built
    engine = Engine.load(path)
    first = engine(torch.from_numpy(randn(rng, 1, 3, 8, 8)).cuda())
    for batch in (2, 3, 4, 2, 3, 4):
        engine(torch.from_numpy(randn(rng, batch, 3, 8, 8)).cuda())
    assert len(engine._context().outputs) == min(OUTPUT_SIGNATURES, 3)
    again = engine(torch.from_numpy(randn(rng, 4, 3, 8, 8)).cuda())
    assert again.shape[0] == 4 and first.shape[0] == 1  # an evicted signature's output stays valid


@pytest.mark.gpu
@gpu
@rtx_only
def test_rtx_runtime_cache_is_written_every_few_new_shapes_and_on_close(copy, rng):
    from netdef.runtime.cache import SAVE_EVERY

    engine = Engine.load(copy)
    engine(randn(rng, 2, 3, 8, 8))
    cache = copy.parent / (copy.name + ".runtime_cache")
    assert not cache.exists()  # one new shape: not written yet
    engine.close()
    assert cache.exists() and cache.stat().st_size > 0
    with pytest.raises(netdef.EngineError, match="was closed"):
        engine(randn(rng, 2, 3, 8, 8))
    with Engine.load(copy) as engine:
        for i in range(SAVE_EVERY):
            engine(randn(rng, 1 + i % 4, 3, 8, 8))
        assert engine.runtime_cache.writes <= 1



@pytest.mark.gpu
@gpu
@rtx_only
def test_rtx_runtime_cache_counts_only_shapes_never_run_before(copy, rng):
    """More cycling shapes than a context keeps output buffers for are still not new shapes."""
    from netdef.runtime.cache import SAVE_EVERY
    from netdef.runtime.context import OUTPUT_SIGNATURES

    shapes = SAVE_EVERY - 1
    assert shapes > OUTPUT_SIGNATURES
    with Engine.load(copy) as engine:
        for i in range(4 * shapes):
            engine(randn(rng, 1 + i % shapes, 3, 8, 8))
        assert engine.runtime_cache.writes == 0 and engine.runtime_cache.pending == shapes


@pytest.mark.gpu
@gpu
@rtx_only
def test_rtx_runtime_cache_write_that_failed_is_tried_again(copy, rng):
    cache = copy.parent / (copy.name + ".runtime_cache")
    with Engine.load(copy) as engine:
        engine(randn(rng, 2, 3, 8, 8))
        cache.mkdir()  # the rename over it fails
        with pytest.raises(OSError):
            engine.save_runtime_cache()
        cache.rmdir()
        assert engine.save_runtime_cache() and cache.is_file()


def test_an_unreadable_runtime_cache_is_one_engine_error_naming_it(tmp_path):
    from netdef.runtime import cache

    path = tmp_path / "m.engine.runtime_cache"
    assert cache.read(str(path)) is None  # none yet
    path.write_bytes(b"kernels")
    assert cache.read(str(path)) == b"kernels"
    path.unlink()
    path.mkdir()
    with pytest.raises(netdef.EngineError, match=f"runtime cache {str(path)!r} is not a regular file"):
        cache.read(str(path))
    path.rmdir()
    path.write_bytes(b"kernels")
    path.chmod(0)
    if not os.access(path, os.R_OK):  # root reads it anyway
        with pytest.raises(netdef.EngineError, match=f"cannot read the TensorRT-RTX runtime cache {str(path)!r}"):
            cache.read(str(path))


@pytest.mark.gpu
@gpu
def test_first_calls_from_many_threads_deserialize_once(built, rng):
    model, _, path = built
    engine = Engine.load(path, deserialize=False)
    xs = [randn(rng, 2, 3, 8, 8) for _ in range(6)]
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, engine(xs[i]))) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, x in enumerate(xs):
        assert_close(results[i], _expected(model, x), "float32")


@pytest.mark.gpu
@gpu
def test_data_dependent_output_shape_nonzero(rng):
    t = backend.trt()
    with backend.BUILDER_LOCK:
        network = backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("x", t.float32, (4, 5))
    relu = network.add_activation(x, t.ActivationType.RELU)
    nz = network.add_non_zero(relu.get_output(0))
    out = nz.get_output(0)
    out.name = "indices"
    network.mark_output(out)
    engine = Engine(netdef.build(network, netdef.Input("x", (4, 5)), progress=False))
    for _ in range(3):
        xv = randn(rng, 4, 5)
        got = engine(xv)
        assert np.array_equal(got, np.stack(np.nonzero(xv > 0)).astype(got.dtype))
