"""Engine inputs and outputs (from the sidecar, or from the engine once deserialized), and the
checks every input passes before anything touches the GPU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from netdef import dtypes
from netdef.errors import EngineError
from netdef.network import shape_mismatch


class InputError(EngineError, ValueError):
    """An input's name, dtype or shape does not fit the engine."""


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
    """Inputs and outputs recorded in a sidecar (validated by netdef.sidecar); outputs may be bare
    names (dtype/shape unknown)."""
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
