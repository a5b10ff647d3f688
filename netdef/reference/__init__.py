"""Reference runner: executes a TensorRT INetworkDefinition with torch ops, layer by layer.

It reads the network only through TensorRT's API, so it checks what TensorRT was
told, not what netdef meant. `run(net, {"x": x})` returns the network outputs;
`all_tensors=True` returns every tensor by name. torch is imported on first use.
Semantics, dtype policy and speed: docs/reference.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Program", "RunnerError", "compile", "run"]


def __getattr__(name: str) -> Any:
    # torch loads only when the runner is used: `import netdef.reference` stays light
    if name in __all__:
        from netdef.errors import RunnerError
        from netdef.optional import require

        require("torch", "the reference runner (netdef.reference)")
        from netdef.reference import program

        return RunnerError if name == "RunnerError" else getattr(program, name)
    raise AttributeError(f"module 'netdef.reference' has no attribute {name!r}")
