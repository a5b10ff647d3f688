"""netdef: write TensorRT networks like torch.nn modules; no parser in the path.

Data path: weights -> nn modules -> trace -> Network -> build -> Plan ->
runtime / reference -> compare.
"""
__version__ = "0.1.0"

from netdef import dtypes, functional, nn  # noqa: E402
from netdef.build import build  # noqa: E402
from netdef.errors import (BackendError, BuildError, EngineError, NetdefError,  # noqa: E402
                           TraceError, WeightsError)
from netdef.network import Input, Network  # noqa: E402
from netdef.plan import Plan, load_plan, save_engine  # noqa: E402
from netdef.tensor import Tensor  # noqa: E402
from netdef.trace import trace  # noqa: E402

__all__ = [
    "BackendError", "BuildError", "EngineError", "Input", "NetdefError", "Network", "Plan",
    "Tensor", "TraceError", "WeightsError", "build", "dtypes", "functional", "load_plan", "nn",
    "save_engine", "trace",
]
