"""Picks the TensorRT flavour once, so every other module is backend-agnostic.

Classic `tensorrt` (>= 10) is tried first, then `tensorrt_rtx`; the environment
variable NETDEF_BACKEND=tensorrt|tensorrt_rtx forces one. Only the strongly typed
API the two share is used anywhere in netdef; `require()` gates the rest.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import ModuleType

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


class _Logger:
    """Collects TensorRT's messages so errors can be raised as Python exceptions."""

    def __init__(self) -> None:
        t = trt()

        class Impl(t.ILogger):
            def __init__(inner) -> None:
                t.ILogger.__init__(inner)
                inner.errors: list[str] = []
                inner.warnings: list[str] = []
                inner.verbose = os.environ.get("NETDEF_VERBOSE") == "1"

            def log(inner, severity, msg) -> None:
                # with no GPU, RTX also logs a CUDA-driver error after any other error: noise
                if "catchCudaError" in msg:
                    severity = t.ILogger.Severity.WARNING
                if severity in (t.ILogger.Severity.ERROR, t.ILogger.Severity.INTERNAL_ERROR):
                    inner.errors.append(msg)
                elif severity == t.ILogger.Severity.WARNING:
                    inner.warnings.append(msg)
                if inner.verbose:
                    print(f"[TensorRT {severity.name}] {msg}")

        self.impl = Impl()

    def take_errors(self) -> list[str]:
        errs, self.impl.errors = self.impl.errors, []
        return errs


@lru_cache(maxsize=None)
def logger() -> _Logger:
    """One logger per process: TensorRT warns when builders get different loggers."""
    return _Logger()


@lru_cache(maxsize=None)
def builder():
    """A shared IBuilder; creating one costs ~100 ms, and it holds no per-network state."""
    return trt().Builder(logger().impl)


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
