"""Running engines: `netdef.runtime.Engine` (also `netdef.Engine`).

Checks run cheapest first and each names both sides of a mismatch, so a user reads
"built by tensorrt_rtx 1.7 but the active backend is tensorrt 10.13" instead of
TensorRT's deserialization error:

1. the file and its JSON sidecar (`netdef.load_plan`: missing, empty, malformed sidecar,
   truncated or foreign plan from its own header, a pair mismatched by an interrupted save);
2. the sidecar (or the plan's header) against the active backend, and the plan's SHA-256;
3. the plan header (`IRuntime.get_engine_validity`, TensorRT-RTX: caught without a GPU);
4. the CUDA device: present, supported by the backend, targeted by the plan;
5. deserialization itself (TensorRT returns None on failure; that becomes an EngineError).

Modules: `specs` (inputs/outputs and their checks), `checks` (plan checks without a GPU),
`device` (finding the GPU), `memory` (device buffers, data-dependent outputs), `context`
(one thread's execution state, CUDA graphs), `cache` (TensorRT-RTX's runtime cache),
`engine` (the Engine). What differs between classic TensorRT and TensorRT-RTX is decided in
`netdef.backend.capabilities()`, never by probing for a method.
"""
from netdef.runtime.cache import SUFFIX as RUNTIME_CACHE_SUFFIX
from netdef.runtime.checks import check_metadata, check_plan_bytes
from netdef.runtime.context import OUTPUT_SIGNATURES
from netdef.runtime.device import Device, check_device, cuda_device, supported_capabilities
from netdef.runtime.engine import Engine
from netdef.runtime.specs import InputError, TensorSpec, check_input_dtype, check_input_shapes, specs_from_metadata

__all__ = ["OUTPUT_SIGNATURES", "RUNTIME_CACHE_SUFFIX", "Device", "Engine", "InputError", "TensorSpec",
           "check_device", "check_input_dtype", "check_input_shapes", "check_metadata", "check_plan_bytes",
           "cuda_device", "specs_from_metadata", "supported_capabilities"]
