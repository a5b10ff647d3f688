"""Picks the TensorRT flavour once, so every other module is backend-agnostic.

Classic `tensorrt` (>= 10) is tried first, then `tensorrt_rtx`; the environment
variable NETDEF_BACKEND=tensorrt|tensorrt_rtx forces one. Only the strongly typed
API the two share is used anywhere in netdef; `require()` gates the rest, and
`capabilities()` is the one table of what netdef does differently per backend.

TensorRT reports errors through one process-wide ILogger. `logger()` hands each
message to the error sink of the thread and context that made the TensorRT call
(`capture()`; a Network installs its own while it is active), so an error from one
thread's network never surfaces in another's.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import importlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Iterator

from netdef.errors import BackendError

BACKENDS = ("tensorrt", "tensorrt_rtx")


@lru_cache(maxsize=None)
def trt() -> ModuleType:
    """The imported TensorRT module (classic or RTX)."""
    forced = os.environ.get("NETDEF_BACKEND", "").strip()
    if forced and forced not in BACKENDS:
        raise BackendError(f"NETDEF_BACKEND={forced!r} is not one of {', '.join(BACKENDS)}")
    failures = []
    for mod in (forced,) if forced else BACKENDS:
        try:
            module = importlib.import_module(mod)
            _ = module.Builder  # stub wheels import but have no bindings
            return module
        except Exception as exc:  # noqa: BLE001 - report every candidate's reason
            failures.append(f"{mod}: {exc}")
    raise BackendError(
        "no TensorRT backend could be imported (" + "; ".join(failures) + "). "
        "Install TensorRT-RTX with `pip install tensorrt-rtx`, or classic TensorRT >= 10."
    )


def name() -> str:
    return trt().__name__


def version() -> str:
    return trt().__version__


def is_rtx() -> bool:
    return name() == "tensorrt_rtx"


def require(feature: str, backend: str) -> None:
    """Raise a clear error when `feature` exists only in `backend`."""
    if name() != backend:
        raise BackendError(
            f"{feature} is only available with the {backend} backend; the active backend is "
            f"{name()} {version()} (set NETDEF_BACKEND={backend} after installing it)"
        )


def version_tuple(text: str | None = None) -> tuple[int, ...]:
    """'10.13.3.9' -> (10, 13, 3, 9); the active backend's version by default."""
    return tuple(int(p) for p in re.findall(r"\d+", text if text is not None else version())[:4])


# ---- what netdef does differently per backend ---------------------------------------------------
@dataclass(frozen=True)
class Capabilities:
    """How netdef drives one backend, decided from its identity (name and version), never by
    probing for a method: classic TensorRT >= 10.11 has `ICudaEngine.create_runtime_config` too,
    but not the runtime cache or CUDA-graph strategy that TensorRT-RTX hangs off it.

    tests/test_backend_api.py checks every name in `API` against the classic bindings'
    recorded API (10.0, 10.1, 10.13, 11.4) and the installed backend, for both rows."""

    backend: str
    runtime_config: bool  # execution contexts are made from an IRuntimeConfig (RTX)
    runtime_cache: bool  # JIT-compiled kernels persist in an IRuntimeCache (RTX)
    builtin_cuda_graphs: bool  # IRuntimeConfig.cuda_graph_strategy; else capture through torch.cuda.CUDAGraph
    engine_validity: bool  # IRuntime.get_engine_validity checks a plan's header (RTX)
    compute_capabilities: bool  # a plan targets listed compute capabilities (RTX's ComputeCapability)
    set_device_memory: bool  # IExecutionContext.set_device_memory(ptr, size) (classic >= 10.1, RTX)
    plan_magic: bytes | None  # a plan's first 4 bytes, where netdef has verified the header layout
    # the builder implements INMSLayer; TensorRT-RTX 1.7 reports "[NMS] has no runners that implement
    # it", so there NMS defaults to the loop emission (F.emission(nms=...), docs/detection.md)
    nms_layer: bool


# TensorRT names each capability uses when on, and when off (checked by tests/test_backend_api.py)
API: dict[str, dict[bool, tuple[str, ...]]] = {
    "runtime_config": {True: ("ICudaEngine.create_runtime_config", "ICudaEngine.create_execution_context",
                              "IRuntimeConfig.set_execution_context_allocation_strategy",
                              "ExecutionContextAllocationStrategy.USER_MANAGED"),
                       False: ("ICudaEngine.create_execution_context",
                               "ExecutionContextAllocationStrategy.USER_MANAGED")},
    "runtime_cache": {True: ("ICudaEngine.create_runtime_config", "IRuntimeConfig.create_runtime_cache", "IRuntimeConfig.set_runtime_cache",
                             "IRuntimeCache.serialize", "IRuntimeCache.deserialize"), False: ()},
    "builtin_cuda_graphs": {True: ("IRuntimeConfig.cuda_graph_strategy", "CudaGraphStrategy.WHOLE_GRAPH_CAPTURE"),
                            False: ()},
    "engine_validity": {True: ("Runtime.get_engine_validity", "EngineInvalidityDiagnostics.MALFORMED_ENGINE"),
                        False: ()},
    "compute_capabilities": {True: ("IBuilderConfig.num_compute_capabilities",
                                    "IBuilderConfig.get_compute_capability", "ComputeCapability.SM86"),
                             False: ()},
    "set_device_memory": {True: ("IExecutionContext.set_device_memory",),
                          False: ("IExecutionContext.device_memory",)},
    "nms_layer": {True: ("INetworkDefinition.add_nms", "INMSLayer.topk_box_limit", "BoundingBoxFormat.CENTER_SIZES"),
                  False: ("INetworkDefinition.add_loop", "ILoop.add_recurrence", "TripLimit.WHILE",
                          "INetworkDefinition.add_topk", "GatherMode.ELEMENT")},
}


def capabilities_of(backend: str, backend_version: str) -> Capabilities:
    """The decision table: one row per backend (classic rows also depend on the version)."""
    if backend == "tensorrt_rtx":
        return Capabilities(backend, runtime_config=True, runtime_cache=True, builtin_cuda_graphs=True,
                            engine_validity=True, compute_capabilities=True, set_device_memory=True,
                            plan_magic=b"vtrt", nms_layer=False)
    if backend == "tensorrt":
        # classic plans' header layout could not be verified here (no classic library): no magic
        return Capabilities(backend, runtime_config=False, runtime_cache=False, builtin_cuda_graphs=False,
                            engine_validity=False, compute_capabilities=False,
                            set_device_memory=version_tuple(backend_version) >= (10, 1), plan_magic=None,
                            nms_layer=True)
    raise BackendError(f"unknown backend {backend!r}; netdef knows {', '.join(BACKENDS)}")


def capabilities() -> Capabilities:
    """The active backend's row of the decision table."""
    return capabilities_of(name(), version())


# ---- TensorRT's log, routed to the code that made the call ---------------------------------------
class ErrorSink:
    """TensorRT's errors and warnings for one network, build or engine call (see `capture`)."""

    LIMIT = 1000  # messages kept per kind: a sink nobody reads must not grow without bound

    def __init__(self) -> None:
        self.errors: collections.deque[str] = collections.deque(maxlen=self.LIMIT)
        self.warnings: collections.deque[str] = collections.deque(maxlen=self.LIMIT)

    def take(self) -> list[str]:
        """The errors so far (then forgotten). Without a GPU, TensorRT-RTX follows any error with a
        'catchCudaError' echo of the missing driver; it is dropped when a real error precedes it,
        and kept when it is the only message (then it is the real CUDA failure)."""
        errors = list(self.errors)
        self.errors.clear()
        primary = [e for e in errors if "catchCudaError" not in e]
        return primary or errors


_SINK: contextvars.ContextVar[ErrorSink | None] = contextvars.ContextVar("netdef_tensorrt_sink", default=None)
_THREAD = threading.local()
_LOG = logging.getLogger("netdef.tensorrt")


def current_sink() -> ErrorSink:
    """The sink installed by `capture()` in this context, else this thread's own."""
    sink = _SINK.get()
    if sink is None:
        sink = getattr(_THREAD, "sink", None)
        if sink is None:
            sink = _THREAD.sink = ErrorSink()
    return sink


@contextlib.contextmanager
def capture(sink: ErrorSink | None = None) -> Iterator[ErrorSink]:
    """Route TensorRT's messages logged by calls inside the block (in this thread and context)
    to `sink` (a fresh one by default): `with backend.capture() as errors: ...; errors.take()`."""
    sink = ErrorSink() if sink is None else sink
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


class _Logger:
    """The one ILogger TensorRT gets; it files each message in the caller's sink."""

    def __init__(self) -> None:
        t = trt()
        error = (t.ILogger.Severity.ERROR, t.ILogger.Severity.INTERNAL_ERROR)
        warning = t.ILogger.Severity.WARNING
        verbose = os.environ.get("NETDEF_VERBOSE") == "1"

        class Impl(t.ILogger):
            def __init__(inner) -> None:
                t.ILogger.__init__(inner)

            def log(inner, severity, msg) -> None:
                if isinstance(threading.current_thread(), threading._DummyThread):
                    # a thread TensorRT started itself: it works for the build in progress, if any
                    # (builds hold BUILDER_LOCK, so there is at most one); else Python's logging
                    sink = _BUILDING[-1] if _BUILDING else None
                    if sink is None:
                        _LOG.log(logging.ERROR if severity in error else logging.DEBUG, "%s", msg)
                        return
                else:
                    sink = current_sink()
                if severity in error:
                    sink.errors.append(msg)
                elif severity == warning:
                    sink.warnings.append(msg)
                if verbose:
                    print(f"[TensorRT {severity.name}] {msg}")

        self.impl = Impl()

    @staticmethod
    def take_errors() -> list[str]:
        """Errors logged so far in this thread/context's sink (see `capture`)."""
        return current_sink().take()


_ONCE = threading.Lock()


@lru_cache(maxsize=None)
def _logger() -> _Logger:
    return _Logger()


def logger() -> _Logger:
    """One logger per process: TensorRT warns when builders get different loggers."""
    with _ONCE:  # lru_cache alone may run the factory twice when threads race to it
        return _logger()


# IBuilder is not thread-safe (TensorRT's developer guide): networks are created and built under it
BUILDER_LOCK = threading.RLock()
_BUILDING: list[ErrorSink] = []  # the sink of the build in progress


@contextlib.contextmanager
def building() -> Iterator[ErrorSink]:
    """Hold the builder for one build. TensorRT's messages from the calling thread, and from
    worker threads TensorRT starts itself, go to the returned sink."""
    with BUILDER_LOCK, capture() as sink:
        _BUILDING.append(sink)
        try:
            yield sink
        finally:
            _BUILDING.pop()


@lru_cache(maxsize=None)
def _builder():
    return trt().Builder(logger().impl)


def builder():
    """A shared IBuilder; creating one costs ~100 ms, and it holds no per-network state.
    Use it under BUILDER_LOCK."""
    with BUILDER_LOCK:
        return _builder()


_LAYER_CLASS_NAMES = {
    "MATRIX_MULTIPLY": "IMatrixMultiplyLayer",
    "ELEMENTWISE": "IElementWiseLayer",
    "PARAMETRIC_RELU": "IParametricReLULayer",
    "TOPK": "ITopKLayer",
    "NON_ZERO": "INonZeroLayer",
    "ONE_HOT": "IOneHotLayer",
    "RAGGED_SOFTMAX": "IRaggedSoftMaxLayer",
    "SOFTMAX": "ISoftMaxLayer",
    "LRN": "ILRNLayer",
    "NMS": "INMSLayer",
    "PLUGIN_V2": "IPluginV2Layer",
    "PLUGIN_V3": "IPluginV3Layer",
    "KV_CACHE_UPDATE": "IKVCacheUpdateLayer",
    "MOE": "IMoELayer",
    "CONDITIONAL_INPUT": "IIfConditionalInputLayer",
    "CONDITIONAL_OUTPUT": "IIfConditionalOutputLayer",
}


def downcast(layer):
    """Give a generic ILayer (from get_layer) its concrete class, to read its attributes."""
    t = trt()
    key = layer.type.name
    cls_name = _LAYER_CLASS_NAMES.get(key) or "I" + "".join(p.capitalize() for p in key.split("_")) + "Layer"
    cls = getattr(t, cls_name, None)
    if cls is not None:
        layer.__class__ = cls
    return layer
