"""Checks on a plan that need no GPU: the sidecar (or the plan's own header) against the active
backend, the recorded SHA-256, and TensorRT-RTX's header validity check."""
from __future__ import annotations

import threading
from typing import Any, Mapping

from netdef import backend
from netdef.errors import EngineError
from netdef.plan import Plan, check_structure, header_version_matches

_DIAGNOSTIC_TEXT = {
    "VERSION_MISMATCH": "it was built by another TensorRT version",
    "UNSUPPORTED_CC": "this GPU's compute capability is not among the plan's targets",
    "OLD_CUDA_DRIVER": "the NVIDIA driver is too old for this plan: update it",
    "OLD_CUDA_RUNTIME": "the CUDA runtime is too old for this plan",
    "INSUFFICIENT_GPU_MEMORY": "the GPU has too little memory for it",
    "MALFORMED_ENGINE": "the plan is malformed (corrupted)",
    "CUDA_ERROR": "CUDA reported an error while checking it",
}

_RUNTIME_LOCK = threading.Lock()
_RUNTIME: list[Any] = []


def runtime() -> Any:
    """One IRuntime per process, shared by validity checks and every engine (TensorRT's runtime
    may be used from several threads)."""
    with _RUNTIME_LOCK:
        if not _RUNTIME:
            with backend.capture():
                _RUNTIME.append(backend.trt().Runtime(backend.logger().impl))
        return _RUNTIME[0]


def identity(plan: Plan) -> tuple[str | None, str | None, str]:
    """(backend, version, source) that built `plan`: from its sidecar, else from its header."""
    meta = plan.metadata
    if meta.get("backend"):
        return meta.get("backend"), meta.get("backend_version"), "sidecar"
    header = plan.header
    if header is not None:
        version = header.version if not (header.backend == backend.name() and header_version_matches(header)) \
            else backend.version()
        return header.backend, version, "header"
    return None, None, "none"


def check_metadata(meta: Mapping[str, Any], where: str, plan: Plan | None = None) -> None:
    """The backend and version that built the plan (sidecar, or the plan's header when there is no
    sidecar) must be the active ones, before TensorRT sees the plan."""
    if plan is not None:
        built_by, built_ver, source = identity(plan)
    else:
        built_by, built_ver, source = meta.get("backend"), meta.get("backend_version"), "sidecar"
    if built_by and built_by != backend.name():
        raise EngineError(f"engine {where} was built by {built_by} {built_ver} (per its {source}) but the "
                          f"active backend is {backend.name()} {backend.version()}: rebuild it with the "
                          f"active backend, or run with NETDEF_BACKEND={built_by} (installing it if needed)")
    if built_ver and built_ver != backend.version():
        raise EngineError(f"engine {where} was built by {built_by} {built_ver} (per its {source}) but the "
                          f"installed {backend.name()} is {backend.version()}: TensorRT plans load only in "
                          f"the version that built them; rebuild it, or install {built_by}=={built_ver}")


def check_plan_bytes(plan: Plan, where: str) -> int:
    """Catch a damaged plan before deserializing: its own header (size, magic), the sidecar's
    SHA-256, then TensorRT-RTX's header check. Returns TensorRT's validity diagnostics bits
    (0 where the backend has no such check), for deserialize() to explain."""
    check_structure(plan, where)
    want = plan.metadata.get("plan_sha256")
    if want and plan.sha256 != want:
        raise EngineError(f"engine {where} is corrupted: its SHA-256 differs from the one recorded in "
                          f"its sidecar when it was saved; rebuild or re-copy it")
    if not backend.capabilities().engine_validity:
        return 0
    with backend.capture():  # without a GPU it logs "cannot read GPU properties": not news
        _, diagnostics = runtime().get_engine_validity(memoryview(plan))  # no copy of the plan
    diagnostics = int(diagnostics)
    if diagnostics & diagnostic("MALFORMED_ENGINE"):
        raise EngineError(f"engine {where} is corrupted or not a {backend.name()} plan "
                          f"(TensorRT: malformed engine header)")
    return diagnostics


def diagnostic(name: str) -> int:
    """The bit of EngineInvalidityDiagnostics `name` (0 where the backend has none)."""
    if not backend.capabilities().engine_validity:
        return 0
    return int(getattr(backend.trt().EngineInvalidityDiagnostics, name).value)


def explain_validity(diagnostics: int) -> list[str]:
    return [text for name, text in _DIAGNOSTIC_TEXT.items() if diagnostics & diagnostic(name)]
