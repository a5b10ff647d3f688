"""netdef: write TensorRT networks like torch.nn modules; no parser in the path.

Data path: weights -> nn modules -> trace -> Network -> build -> Plan ->
runtime / reference -> compare. Importing netdef never imports torch; only the
reference runner, compare and .pt loading do, when called.
"""
from typing import Any

__version__ = "0.1.0"

from netdef import codegen, dtypes, functional, nn, ops, quantize, reference, weights  # noqa: E402
from netdef.build import build  # noqa: E402
from netdef.compare import Report, compare  # noqa: E402
from netdef.generation import generate  # noqa: E402
from netdef.errors import (BackendError, BuildError, EngineError, NetdefError,  # noqa: E402
                           QuantizationError, RunnerError, TraceError, WeightsError)
from netdef.network import Input, Network  # noqa: E402
from netdef.plan import Plan, load_plan, save_engine  # noqa: E402
from netdef.tensor import Tensor  # noqa: E402
from netdef.trace import trace  # noqa: E402

__all__ = [
    "BackendError", "BuildError", "Engine", "EngineError", "Input", "NetdefError", "Network", "Plan",
    "QuantizationError", "RunnerError",
    "Report", "Tensor", "TraceError", "WeightsError", "build", "codegen", "compare", "dtypes", "functional", "generate",
    "load_plan", "nn", "ops", "quantize", "reference", "save_engine", "trace", "weights",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":  # the runtime pulls in CUDA bindings; load it only when asked for
        from netdef.runtime import Engine

        return Engine
    raise AttributeError(f"module 'netdef' has no attribute {name!r}")
