"""Engine: check a plan fits this machine, deserialize it, and run it on torch or numpy data.

Checks run cheapest first and each names both sides of a mismatch, so a user
reads "built by tensorrt_rtx 1.7 but the active backend is tensorrt 10.13"
instead of TensorRT's deserialization error:

1. the file and its JSON sidecar (`netdef.plan.load_plan`: missing, empty, truncated);
2. the sidecar against the active backend (name, version) and the plan's checksum;
3. the plan header (`IRuntime.get_engine_validity`: a malformed plan is caught without a GPU);
4. the CUDA device: present, supported by the backend, targeted by the plan;
5. deserialization itself (TensorRT returns None on failure; that becomes an EngineError).

Device memory comes from torch (cuda-python when torch is absent), never pycuda:
pycuda makes its own CUDA context, which clashes with torch's primary context.
One IExecutionContext per thread (kept in a threading.local): contexts are not
thread-safe, and each owns its stream, buffers and device memory.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from netdef import backend, dtypes
from netdef.errors import EngineError
from netdef.fileio import atomic_file
from netdef.network import shape_mismatch
from netdef.plan import Plan, load_plan

RUNTIME_CACHE_SUFFIX = ".runtime_cache"
# TensorRT-RTX engines built with the default targets skip Turing (documented in its support matrix)
_RTX_DEFAULT_EXCLUDES = ((7, 5),)


class InputError(EngineError, ValueError):
    """An input's name, dtype or shape does not fit the engine."""


# ---- tensor specs (from the sidecar, or from the engine once deserialized) --------------------
@dataclass(frozen=True)
class TensorSpec:
    """An engine input or output. shape has -1 for dynamic dims; min/opt/max are the profile range."""

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None
    min: tuple[int, ...] | None = None
    opt: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None

    @property
    def is_dynamic(self) -> bool:
        return self.shape is not None and any(d < 0 for d in self.shape)

    def __str__(self) -> str:
        shape = "?" if self.shape is None else "(" + ", ".join(str(d) for d in self.shape) + ")"
        text = f"{self.name}: {self.dtype or '?'} {shape}"
        if self.is_dynamic and self.min is not None:
            text += f" min={self.min} opt={self.opt} max={self.max}"
        return text


def _tuple(v: Any) -> tuple[int, ...] | None:
    return None if v is None else tuple(int(d) for d in v)


def specs_from_metadata(meta: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs recorded in a sidecar; outputs may be bare names (dtype/shape unknown)."""
    inputs = [TensorSpec(i["name"], i.get("dtype"), _tuple(i.get("shape")), _tuple(i.get("min")),
                         _tuple(i.get("opt")), _tuple(i.get("max"))) for i in meta.get("inputs", [])]
    outputs = []
    for o in meta.get("outputs", []):
        if isinstance(o, str):
            outputs.append(TensorSpec(o, None, None))
        else:
            outputs.append(TensorSpec(o["name"], o.get("dtype"), _tuple(o.get("shape"))))
    return inputs, outputs


def check_input_shapes(specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]]) -> None:
    """Raise InputError unless `shapes` names exactly the engine's inputs, each within its profile."""
    names = [s.name for s in specs]
    missing = [n for n in names if n not in shapes]
    extra = [n for n in shapes if n not in names]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise InputError(f"engine inputs are {names}; got {list(shapes)} ({', '.join(parts)})")
    for spec in specs:
        if spec.shape is None:
            continue
        problem = shape_mismatch(spec.name, shapes[spec.name], spec.shape, spec.min, spec.max, spec.opt,
                                 what="the engine")
        if problem:
            raise InputError(problem)


def check_input_dtype(spec: TensorSpec, dtype: Any) -> None:
    """Exact match: float64 is not narrowed here, since the engine would read its bytes as float32."""
    text = str(dtype).removeprefix("torch.")
    try:
        got = text if text == "float64" else dtypes.name(dtype)
    except TypeError:
        got = text
    if spec.dtype is not None and got != spec.dtype:
        raise InputError(f"input {spec.name!r} is {got} but the engine expects {spec.dtype}; "
                         f"convert it first (netdef does not cast silently)")


# ---- plan and sidecar checks (no GPU needed) ---------------------------------------------------
def check_metadata(meta: Mapping[str, Any], where: str) -> None:
    """The sidecar's backend, version and checksum must match before TensorRT sees the plan."""
    if not meta:
        return
    built_by, built_ver = meta.get("backend"), meta.get("backend_version")
    if built_by and built_by != backend.name():
        raise EngineError(f"engine {where} was built by {built_by} {built_ver} but the active backend "
                          f"is {backend.name()} {backend.version()}: rebuild it with the active backend, "
                          f"or run with NETDEF_BACKEND={built_by} (installing it if needed)")
    if built_ver and built_ver != backend.version():
        raise EngineError(f"engine {where} was built by {built_by} {built_ver} but the installed "
                          f"{backend.name()} is {backend.version()}: TensorRT plans load only in the "
                          f"version that built them; rebuild it, or install {built_by}=={built_ver}")


def check_plan_bytes(plan: Plan, where: str) -> int:
    """Catch a corrupted plan before deserializing: sidecar checksum, then TensorRT's header check.
    Returns TensorRT's validity diagnostics bits, for deserialize() to explain."""
    want = plan.metadata.get("plan_sha256")
    if want and hashlib.sha256(plan).hexdigest() != want:
        raise EngineError(f"engine {where} is corrupted: its SHA-256 differs from the one recorded in "
                          f"its sidecar when it was saved; rebuild or re-copy it")
    _, diagnostics = _validity(plan)
    if diagnostics & _diag("MALFORMED_ENGINE"):
        raise EngineError(f"engine {where} is corrupted or not a {backend.name()} plan "
                          f"(TensorRT: malformed engine header)")
    return diagnostics


def _diag(name: str) -> int:
    flags = getattr(backend.trt(), "EngineInvalidityDiagnostics", None)
    member = getattr(flags, name, None) if flags is not None else None
    return int(member.value) if member is not None else 0


@functools.lru_cache(maxsize=None)
def _runtime() -> Any:
    """One IRuntime per process, shared by validity checks and every engine."""
    t = backend.trt()
    return t.Runtime(backend.logger().impl)


def _validity(plan: bytes) -> tuple[Any, int]:
    """(EngineValidity, diagnostics bits) where the backend has the check, else (None, 0)."""
    rt = _runtime()
    if not hasattr(rt, "get_engine_validity"):
        return None, 0
    validity, diagnostics = rt.get_engine_validity(memoryview(plan))  # no copy of the plan
    backend.logger().take_errors()  # without a GPU it logs "cannot read GPU properties": not news
    return validity, int(diagnostics)


# ---- the CUDA device -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    index: int
    name: str
    capability: tuple[int, int]
    via: str  # "torch" or "cuda-python"

    def __str__(self) -> str:
        return f"cuda:{self.index} {self.name} (compute capability {self.capability[0]}.{self.capability[1]})"


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
    return cudart


def _cuda_check(result: Any, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        cudart = _cudart()
        msg = cudart.cudaGetErrorString(err)[1]
        raise EngineError(f"{what} failed: {msg.decode() if isinstance(msg, bytes) else msg}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def cuda_device(index: int | None = None) -> Device:
    """The CUDA device engines run on, found through torch or else cuda-python."""
    reasons = []
    try:
        import torch
    except ImportError:
        reasons.append("torch is not installed")
    else:
        if torch.cuda.is_available():
            i = torch.cuda.current_device() if index is None else index
            return Device(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)), "torch")
        reasons.append(f"torch {torch.__version__} sees no CUDA device"
                       + ("" if torch.version.cuda else " (it is a CPU-only build)"))
    try:
        cudart = _cudart()
    except ImportError:
        reasons.append("cuda-python is not installed")
    else:
        try:
            count = _cuda_check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
            if count:
                i = index or 0
                prop = _cuda_check(cudart.cudaGetDeviceProperties(i), "cudaGetDeviceProperties")
                name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
                return Device(i, name, (prop.major, prop.minor), "cuda-python")
            reasons.append("cuda-python sees no CUDA device")
        except EngineError as exc:
            reasons.append(f"cuda-python: {exc}")
    raise EngineError("running an engine needs an NVIDIA GPU with a working driver, seen through torch "
                      "or cuda-python; here " + "; ".join(reasons) + ". Install an NVIDIA driver and a "
                      "CUDA build of torch (`pip install torch`) or `pip install cuda-python`. Building "
                      "engines and the reference runner need no GPU.")


def supported_capabilities() -> tuple[tuple[int, int], ...] | None:
    """Compute capabilities the active backend runs on, when it says (TensorRT-RTX lists them)."""
    if not backend.is_rtx():
        return None
    cc = getattr(backend.trt(), "ComputeCapability", None)
    members = getattr(cc, "__members__", {})
    found = [(int(m.group(1)[:-1]), int(m.group(1)[-1])) for n in members if (m := re.fullmatch(r"SM(\d+)", n))]
    return tuple(sorted(found)) or None


def _fmt_ccs(ccs: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}.{b}" for a, b in ccs)


def _parse_cc(value: Any) -> tuple[int, int]:
    """'8.6', 'SM86', [8, 6] -> (8, 6)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    text = str(value).upper().removeprefix("SM")
    if "." in text:
        a, b = text.split(".", 1)
        return int(a), int(b)
    return int(text[:-1]), int(text[-1])


def check_device(device: Device, meta: Mapping[str, Any], where: str) -> None:
    """The device must be one the backend runs on, and one the plan was built for."""
    supported = supported_capabilities()
    if supported is not None and device.capability not in supported:
        raise EngineError(
            f"{device} cannot run {backend.name()} {backend.version()} engines: it supports compute "
            f"capability {_fmt_ccs(supported)} only (its RTX/GeForce/workstation targets; data-center "
            f"GPUs such as H100/H200 are 9.0). Install classic TensorRT (`pip install tensorrt`) and "
            f"rebuild the engine with NETDEF_BACKEND=tensorrt, or run on a supported GPU")
    if not meta or meta.get("backend") != backend.name():
        return  # a plan made outside netdef records no targets; another backend's was refused already
    if backend.is_rtx():
        targets = [_parse_cc(c) for c in meta.get("compute_capabilities") or []]
        default = not targets
        if default and supported is not None:
            targets = [c for c in supported if c not in _RTX_DEFAULT_EXCLUDES]
        if targets and device.capability not in targets:
            hint = (" (the default targets leave out Turing; rebuild targeting compute capability "
                    f"{device.capability[0]}.{device.capability[1]})" if default else "; rebuild it for this GPU")
            raise EngineError(f"engine {where} targets compute capability {_fmt_ccs(targets)} but this "
                              f"GPU is {device}{hint}")
    else:
        gpu = meta.get("gpu") or {}
        if gpu.get("compute_capability") and _parse_cc(gpu["compute_capability"]) != device.capability:
            raise EngineError(f"engine {where} was built on {gpu.get('name', 'a GPU')} (compute capability "
                              f"{gpu['compute_capability']}) but this GPU is {device}; classic TensorRT "
                              f"engines run only on the GPU architecture that built them: rebuild it here")


_DIAGNOSTIC_TEXT = {
    "VERSION_MISMATCH": "it was built by another TensorRT version",
    "UNSUPPORTED_CC": "this GPU's compute capability is not among the plan's targets",
    "OLD_CUDA_DRIVER": "the NVIDIA driver is too old for this plan: update it",
    "OLD_CUDA_RUNTIME": "the CUDA runtime is too old for this plan",
    "INSUFFICIENT_GPU_MEMORY": "the GPU has too little memory for it",
    "MALFORMED_ENGINE": "the plan is malformed (corrupted)",
    "CUDA_ERROR": "CUDA reported an error while checking it",
}


def _explain_validity(diagnostics: int) -> list[str]:
    return [text for name, text in _DIAGNOSTIC_TEXT.items() if diagnostics & _diag(name)]


# ---- device memory: torch, or cuda-python where torch is absent -----------------------------------
class _TorchMemory:
    """Buffers are torch tensors; torch's caching allocator owns the memory."""

    def __init__(self, device: Device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device.index)
        self.stream = torch.cuda.Stream(self.device)  # non-default: never serializes with other work
        self.handle = self.stream.cuda_stream

    def empty(self, shape: Sequence[int], dtype: str) -> Any:
        # allocated on the engine's stream, so torch reuses the memory only after that stream's work
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(tuple(shape), dtype=dtypes.to_torch(dtype), device=self.device)

    def raw(self, nbytes: int) -> Any:
        return self.empty((max(int(nbytes), 1),), "uint8")

    @staticmethod
    def ptr(buf: Any) -> int:
        return buf.data_ptr()

    def to_device(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            x = self.torch.from_numpy(np.ascontiguousarray(x))
        if x.device != self.device:
            x = x.to(self.device)
        return x.contiguous()

    def to_host(self, buf: Any) -> np.ndarray:
        return buf.cpu().numpy()

    def copy(self, dst: Any, src: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            dst.copy_(src)

    def begin(self, inputs: Sequence[Any]) -> None:
        """The engine's stream waits for the caller's, which produced the inputs."""
        self.stream.wait_stream(self.torch.cuda.current_stream(self.device))
        for x in inputs:
            x.record_stream(self.stream)  # not freed for reuse while the engine still reads it

    def end(self) -> None:
        self.torch.cuda.current_stream(self.device).wait_stream(self.stream)


class _CudartMemory:
    """Raw cudaMalloc buffers for numpy callers when torch is not installed."""

    class Buffer:
        def __init__(self, ptr: int, shape: tuple[int, ...], dtype: str, nbytes: int) -> None:
            self.ptr, self.shape, self.dtype, self.nbytes = ptr, shape, dtype, nbytes

        def __del__(self) -> None:
            _cudart().cudaFree(self.ptr)

    def __init__(self, device: Device) -> None:
        self.cudart = _cudart()
        _cuda_check(self.cudart.cudaSetDevice(device.index), "cudaSetDevice")
        self.stream_obj = _cuda_check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream_obj)

    def empty(self, shape: Sequence[int], dtype: str) -> "_CudartMemory.Buffer":
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtypes.to_numpy(dtype).itemsize
        ptr = _cuda_check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
        return self.Buffer(int(ptr), tuple(shape), dtype, nbytes)

    def raw(self, nbytes: int) -> "_CudartMemory.Buffer":
        return self.empty((int(nbytes),), "uint8")

    @staticmethod
    def ptr(buf: Any) -> int:
        return buf.ptr

    def to_device(self, x: np.ndarray) -> "_CudartMemory.Buffer":
        if not isinstance(x, np.ndarray):
            raise InputError(f"without torch the engine takes numpy arrays, got {type(x).__name__}")
        x = np.ascontiguousarray(x)
        buf = self.empty(x.shape, dtypes.name(x.dtype))
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _cuda_check(self.cudart.cudaMemcpyAsync(buf.ptr, x.ctypes.data, x.nbytes, kind, self.handle),
                    "cudaMemcpyAsync")
        return buf

    def to_host(self, buf: "_CudartMemory.Buffer") -> np.ndarray:
        out = np.empty(buf.shape, dtypes.to_numpy(buf.dtype))
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda_check(self.cudart.cudaMemcpyAsync(out.ctypes.data, buf.ptr, buf.nbytes, kind, self.handle),
                    "cudaMemcpyAsync")
        _cuda_check(self.cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")
        return out

    def copy(self, dst: Any, src: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        _cuda_check(self.cudart.cudaMemcpyAsync(dst.ptr, src.ptr, dst.nbytes, kind, self.handle),
                    "cudaMemcpyAsync")

    def begin(self, inputs: Sequence[Any]) -> None:
        pass  # inputs were copied on this same stream

    def end(self) -> None:
        pass


def _memory(device: Device) -> Any:
    if device.via == "torch":
        return _TorchMemory(device)
    return _CudartMemory(device)


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


# ---- per-thread execution state --------------------------------------------------------------------
class _Context:
    """One thread's IExecutionContext with its stream, device memory and buffers."""

    def __init__(self, engine: "Engine") -> None:
        t = backend.trt()
        self.engine = engine
        self.mem = _memory(engine.device)
        strategy = t.ExecutionContextAllocationStrategy.USER_MANAGED  # device memory comes from us
        if hasattr(engine._trt, "create_runtime_config"):  # TensorRT-RTX: cache and graphs live here
            config = engine._trt.create_runtime_config()
            config.set_execution_context_allocation_strategy(strategy)
            if engine._runtime_cache is not None:
                config.set_runtime_cache(engine._runtime_cache)
            if engine.cuda_graph:
                config.cuda_graph_strategy = t.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            self.config = config  # must outlive the context
            self.ctx = engine._trt.create_execution_context(config)
        else:
            self.ctx = engine._trt.create_execution_context(strategy)
        if self.ctx is None:
            raise EngineError(f"engine {engine.where}: TensorRT could not create an execution context:\n  "
                              + "\n  ".join(backend.logger().take_errors() or ["(no message)"]))
        self.workspace: Any = None
        self.signature: tuple | None = None
        self.outputs: dict[tuple, dict[str, Any]] = {}  # input-shape signature -> output buffers
        self.static_inputs: dict[str, Any] | None = None  # cuda_graph: inputs copied to fixed addresses
        self.graph: Any = None  # classic TensorRT with cuda_graph: a torch.cuda.CUDAGraph

    def _set_shapes(self, signature: tuple) -> dict[str, Any]:
        """Set input shapes, size the device memory and get this signature's output buffers."""
        eng = self.engine
        for spec, shape in zip(eng.inputs, signature):
            if not self.ctx.set_input_shape(spec.name, shape):
                raise InputError(f"engine {eng.where}: TensorRT rejected shape {shape} for input "
                                 f"{spec.name!r}: " + "; ".join(backend.logger().take_errors()))
        size = (self.ctx.update_device_memory_size_for_shapes()
                if hasattr(self.ctx, "update_device_memory_size_for_shapes") else eng._trt.device_memory_size_v2)
        if self.workspace is None or _nbytes(self.workspace) < size:
            self.workspace = self.mem.raw(size)
        self.ctx.set_device_memory(self.mem.ptr(self.workspace), _nbytes(self.workspace))
        if signature not in self.outputs:
            bufs = {}
            for spec in eng.outputs:
                shape = tuple(self.ctx.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise EngineError(f"engine {eng.where}: output {spec.name!r} has a data-dependent "
                                      f"shape {shape}, which netdef's runtime does not support")
                bufs[spec.name] = self.mem.empty(shape, spec.dtype)
            self.outputs[signature] = bufs
        for name, buf in self.outputs[signature].items():
            self.ctx.set_tensor_address(name, self.mem.ptr(buf))
        self.signature = signature
        return self.outputs[signature]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        eng = self.engine
        signature = tuple(_shape_of(feeds[s.name]) for s in eng.inputs)
        new = signature != self.signature
        outputs = self._set_shapes(signature) if new else self.outputs[signature]
        if eng.cuda_graph:
            if self.static_inputs is None:
                self.static_inputs = {s.name: self.mem.empty(signature[i], s.dtype)
                                      for i, s in enumerate(eng.inputs)}
                for name, buf in self.static_inputs.items():
                    self.ctx.set_tensor_address(name, self.mem.ptr(buf))
            self.mem.begin(list(feeds.values()))
            for name, x in feeds.items():
                self.mem.copy(self.static_inputs[name], x)
        else:
            for name, x in feeds.items():
                self.ctx.set_tensor_address(name, self.mem.ptr(x))
            self.mem.begin(list(feeds.values()))
        if self.graph is not None:
            with self.mem.torch.cuda.stream(self.mem.stream):
                self.graph.replay()
        else:
            self._execute()
            if eng.cuda_graph and not hasattr(eng._trt, "create_runtime_config"):
                self._capture()
        self.mem.end()
        if new:
            eng.save_runtime_cache()
        return outputs

    def _execute(self) -> None:
        if not self.ctx.execute_async_v3(self.mem.handle):
            raise EngineError(f"engine {self.engine.where}: execution failed:\n  "
                              + "\n  ".join(backend.logger().take_errors() or ["(no message)"]))

    def _capture(self) -> None:
        """Classic TensorRT: capture the (already warmed-up) enqueue into a torch CUDA graph."""
        torch = self.mem.torch
        if hasattr(self.ctx, "is_stream_capturable") and not self.ctx.is_stream_capturable(self.mem.handle):
            raise EngineError(f"engine {self.engine.where} cannot be captured in a CUDA graph "
                              f"(TensorRT: stream not capturable); load it with cuda_graph=False")
        self.mem.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.mem.stream):
            self._execute()
        self.graph = graph


def _nbytes(buf: Any) -> int:
    return buf.numel() if hasattr(buf, "numel") else buf.nbytes


# ---- the engine ----------------------------------------------------------------------------------------
class Engine:
    """A deserialized TensorRT engine, callable like a module.

    `engine(x)` / `engine(**named)` returns the output itself when the engine has
    one output, else a dict name -> output (`engine.run` always returns the dict).
    torch CUDA tensors are bound zero-copy and results are torch CUDA tensors;
    numpy arrays in give numpy arrays out. Torch outputs are the engine's
    reused buffers for that input shape: `.clone()` one to keep it past the next call.
    """

    def __init__(self, plan: Plan | bytes, *, path: str | None = None, cuda_graph: bool = False,
                 deserialize: bool = True) -> None:
        if not isinstance(plan, (bytes, bytearray, memoryview)) or len(plan) == 0:
            raise EngineError(f"Engine() takes a non-empty netdef Plan or bytes, got {type(plan).__name__}")
        self.plan = plan if isinstance(plan, Plan) else Plan(bytes(plan))
        self.path = path
        self.where = repr(path) if path else f"<{self.plan.metadata.get('network', 'plan')}: {len(plan)} bytes>"
        self.cuda_graph = bool(cuda_graph)
        self.inputs, self.outputs = specs_from_metadata(self.plan.metadata)
        self.device: Device | None = None
        self._trt: Any = None
        self._runtime_cache: Any = None
        self._local = threading.local()
        self._lock = threading.Lock()
        check_metadata(self.plan.metadata, self.where)
        self._diagnostics = check_plan_bytes(self.plan, self.where)
        if deserialize:
            self.deserialize()

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> "Engine":
        """Load a saved plan; `deserialize=False` gives inputs/outputs from the sidecar without a GPU."""
        path = os.fspath(path)
        return cls(load_plan(path), path=path, **kwargs)

    @property
    def runtime_cache_path(self) -> str | None:
        return self.path + RUNTIME_CACHE_SUFFIX if self.path and backend.is_rtx() else None

    def deserialize(self) -> None:
        """Check the GPU, then deserialize; every failure is an EngineError naming the plan."""
        if self._trt is not None:
            return
        device = cuda_device()
        check_device(device, self.plan.metadata, self.where)
        problems = _explain_validity(self._diagnostics)
        if problems:
            raise EngineError(f"engine {self.where} cannot run on {device}: " + "; ".join(problems))
        if device.via == "torch":
            import torch

            torch.cuda.set_device(device.index)  # TensorRT uses the current (primary) context
        runtime = _runtime()
        backend.logger().take_errors()
        engine = runtime.deserialize_cuda_engine(self.plan)  # a bytes subclass: no copy
        errors = backend.logger().take_errors()
        if engine is None:
            raise EngineError(f"engine {self.where} could not be deserialized by {backend.name()} "
                              f"{backend.version()} (corrupted, or built for another version or GPU):\n  "
                              + "\n  ".join(errors or ["(no message)"]))
        self._runtime, self._trt, self.device = runtime, engine, device
        self.inputs, self.outputs = self._specs_from_engine()
        if self.cuda_graph and any(s.is_dynamic for s in self.inputs):
            dyn = [s.name for s in self.inputs if s.is_dynamic]
            raise EngineError(f"engine {self.where}: cuda_graph=True needs static shapes, but inputs "
                              f"{dyn} are dynamic; rebuild with static shapes or load with cuda_graph=False")
        if self.cuda_graph and not backend.is_rtx() and device.via != "torch":
            raise EngineError("cuda_graph=True with classic TensorRT captures through torch.cuda.CUDAGraph: "
                              "install a CUDA build of torch, or load with cuda_graph=False")
        self._load_runtime_cache()

    def _specs_from_engine(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        t = backend.trt()
        eng = self._trt
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            dtype = dtypes.name(eng.get_tensor_dtype(name))
            shape = tuple(eng.get_tensor_shape(name))
            if eng.get_tensor_mode(name) == t.TensorIOMode.INPUT:
                lo, opt, hi = (tuple(s) for s in eng.get_tensor_profile_shape(name, 0)) if -1 in shape \
                    else (shape, shape, shape)
                inputs.append(TensorSpec(name, dtype, shape, lo, opt, hi))
            else:
                outputs.append(TensorSpec(name, dtype, shape))
        return inputs, outputs

    # ---- TensorRT-RTX runtime cache (JIT-compiled kernels) ----
    def _load_runtime_cache(self) -> None:
        if not hasattr(self._trt, "create_runtime_config"):
            return
        self._cache_config = self._trt.create_runtime_config()  # owns the cache: keep it alive
        self._runtime_cache = self._cache_config.create_runtime_cache()
        path = self.runtime_cache_path
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                blob = f.read()
            # False means it was made for another GPU, driver or version: start empty, overwrite later
            self._runtime_cache.deserialize(blob)

    def save_runtime_cache(self) -> None:
        """Write the RTX kernel cache beside the engine (done after each new input shape)."""
        path = self.runtime_cache_path
        if path is None or self._runtime_cache is None:
            return
        with self._lock:
            with atomic_file(path) as f:
                f.write(bytes(self._runtime_cache.serialize()))

    # ---- execution ----
    def _context(self) -> _Context:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = _Context(self)
        return ctx

    def run(self, *args: Any, **named: Any) -> dict[str, Any]:
        """Run the engine; returns dict output name -> output (numpy for numpy inputs)."""
        if args and named:
            raise InputError("pass inputs either positionally or by name, not both")
        if args:
            if len(args) != len(self.inputs):
                raise InputError(f"engine takes {len(self.inputs)} inputs {[s.name for s in self.inputs]}, "
                                 f"got {len(args)} positional")
            named = {s.name: a for s, a in zip(self.inputs, args)}
        for name, v in named.items():
            if not (isinstance(v, np.ndarray) or _is_torch(v)):
                raise InputError(f"input {name!r} must be a torch tensor or numpy array, got {type(v).__name__}")
        check_input_shapes(self.inputs, {k: _shape_of(v) for k, v in named.items()})
        for spec in self.inputs:
            check_input_dtype(spec, named[spec.name].dtype)
        self.deserialize()
        as_numpy = not any(_is_torch(v) for v in named.values())
        ctx = self._context()
        feeds = {s.name: ctx.mem.to_device(named[s.name]) for s in self.inputs}
        outputs = ctx.run(feeds)
        if as_numpy:
            return {k: ctx.mem.to_host(v) for k, v in outputs.items()}
        return dict(outputs)

    def __call__(self, *args: Any, **named: Any) -> Any:
        out = self.run(*args, **named)
        return next(iter(out.values())) if len(out) == 1 else out

    def __repr__(self) -> str:
        ins = "; ".join(str(s) for s in self.inputs)
        outs = "; ".join(str(s) for s in self.outputs)
        state = f"on {self.device}" if self.device else "not deserialized"
        return f"Engine({self.where}, inputs=[{ins}], outputs=[{outs}], {state})"
