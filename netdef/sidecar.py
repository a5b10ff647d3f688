"""The JSON sidecar saved beside an engine (`<engine>.json`): its schema, checked once on read.

Every field netdef reads is checked for type and range here, so a damaged or hand-edited
sidecar is one EngineError naming the file and the field (`inputs[0].shape[1]`), never an
AttributeError deep in the runtime. Fields netdef does not know are kept and not checked,
so a sidecar from a newer netdef still loads.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Mapping

from netdef.errors import EngineError

MAX_BYTES = 16 << 20  # netdef's sidecars are a few KB; a larger file is not one
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CC = re.compile(r"SM\d{2,3}|\d+\.\d+")  # what runtime.device.parse_cc reads
_TARGET = re.compile(_CC.pattern + "|CURRENT")  # a TensorRT-RTX target; CURRENT: the building GPU

Check = Callable[[Any, str], None]


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" (a JSON {_kind(value)})"


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _int(lo: int | None = None) -> Check:
    def check(v: Any, field: str) -> None:
        if type(v) is not int:
            raise _Bad(field, f"must be an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise _Bad(field, f"must be >= {lo}, got {v}")
    return check


def _number(v: Any, field: str) -> None:
    if type(v) not in (int, float) or math.isnan(v) or v < 0:
        raise _Bad(field, f"must be a number >= 0, got {_show(v)}")


def _str(pattern: re.Pattern | None = None, what: str = "") -> Check:
    def check(v: Any, field: str) -> None:
        if not isinstance(v, str):
            raise _Bad(field, f"must be a string, got {_show(v)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise _Bad(field, f"must be {what}, got {_show(v)}")
    return check


def _bool(v: Any, field: str) -> None:
    if not isinstance(v, bool):
        raise _Bad(field, f"must be true or false, got {_show(v)}")


def _opt(check: Check) -> Check:
    def opt(v: Any, field: str) -> None:
        if v is not None:
            check(v, field)
    return opt


def _list(item: Check) -> Check:
    def check(v: Any, field: str) -> None:
        if not isinstance(v, list):
            raise _Bad(field, f"must be an array, got {_show(v)}")
        for i, x in enumerate(v):
            item(x, f"{field}[{i}]")
    return check


def _map(value: Check) -> Check:
    def check(v: Any, field: str) -> None:
        if not isinstance(v, dict):
            raise _Bad(field, f"must be an object, got {_show(v)}")
        for k, x in v.items():
            value(x, f"{field}[{json.dumps(k)[:40]}]")
    return check


def _obj(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(v: Any, field: str) -> None:
        if not isinstance(v, dict):
            raise _Bad(field or "(top level)", f"must be an object, got {_show(v)}")
        for name in required:
            if name not in v:
                raise _Bad(_join(field, name), "is missing")
        for name, sub in fields.items():
            if name in v:
                sub(v[name], _join(field, name))
    return check


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _dims(lo: int) -> Check:
    return _list(_int(lo))


def _input(v: Any, field: str) -> None:
    _obj({"name": _str(), "dtype": _opt(_str()), "shape": _opt(_dims(-1)), "min": _opt(_dims(0)),
          "opt": _opt(_dims(0)), "max": _opt(_dims(0)), "dim_names": _opt(_list(_opt(_str())))},
         required=("name",))(v, field)
    shape = v.get("shape")
    ranges = {k: v[k] for k in ("min", "opt", "max") if v.get(k) is not None}
    for k, dims in ranges.items():
        if shape is not None and len(dims) != len(shape):
            raise _Bad(f"{field}.{k}", f"has rank {len(dims)} but {field}.shape has rank {len(shape)}")
    if len(ranges) == 3:
        lo, opt, hi = ranges["min"], ranges["opt"], ranges["max"]
        if len({len(lo), len(opt), len(hi)}) != 1 or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise _Bad(field, f"needs min <= opt <= max in every dimension, got {lo}, {opt}, {hi}")


def _output(v: Any, field: str) -> None:
    if isinstance(v, str):
        return
    _obj({"name": _str(), "dtype": _opt(_str()), "shape": _opt(_dims(-1))}, required=("name",))(v, field)


def _capability(pattern: re.Pattern) -> Check:
    """'8.6', 'SM86' or [8, 6] (and what else `pattern` allows)."""
    def check(v: Any, field: str) -> None:
        if isinstance(v, list):
            _list(_int(0))(v, field)
            if len(v) != 2:
                raise _Bad(field, f"must be [major, minor], got {_show(v)}")
        else:
            _str(pattern, "a compute capability such as '8.6'")(v, field)
    return check


def _unique_names(items: list, field: str) -> None:
    seen = set()
    for i, x in enumerate(items):
        n = x if isinstance(x, str) else x["name"]
        if n in seen:
            raise _Bad(f"{field}[{i}].name", f"repeats the name {json.dumps(n)[:60]}")
        seen.add(n)


def _io(item: Check) -> Check:
    def check(v: Any, field: str) -> None:
        _list(item)(v, field)
        _unique_names(v, field)
    return check


_FIELDS: dict[str, Check] = {
    "netdef_version": _str(),
    "backend": _str(),
    "backend_version": _str(),
    "network": _str(),
    "dtype": _str(),
    "dtype_overrides": _map(_str()),
    "quantization": _opt(_obj({"dtype": _str(), "modules": _list(_str())})),
    "inputs": _io(_input),
    "outputs": _io(_output),
    "weights_sha256": _str(),
    "weight_bytes": _int(0),
    "layers": _int(0),
    "folded_batchnorms": _int(0),
    "build_seconds": _number,
    "compute_capabilities": _list(_capability(_TARGET)),  # TensorRT-RTX: CURRENT is handled before parsing
    "gpu": _obj({"name": _str(), "compute_capability": _capability(_CC)}),  # a real GPU's, never CURRENT
    "plan_bytes": _int(1),
    "plan_sha256": _str(_SHA256, "64 lowercase hex digits (a SHA-256)"),
}
_ENTRY = _obj(_FIELDS)
# a save in progress keeps the replaced engine's entry (see netdef.plan.save_engine)
_PREVIOUS = _obj({**_FIELDS, "no_sidecar": _bool}, required=("plan_bytes", "plan_sha256"))


def validate(meta: Any, where: str) -> dict[str, Any]:
    """`meta` (parsed JSON) if it fits the sidecar schema, else an EngineError naming `where`
    (the sidecar file) and the first offending field."""
    try:
        _ENTRY(meta, "")
        if "previous" in meta:
            _PREVIOUS(meta["previous"], "previous")
    except _Bad as bad:
        raise EngineError(f"engine sidecar {where} is malformed: field {bad.field!r} {bad.problem}; "
                          f"rebuild the engine, or delete the sidecar to load the plan without it") from None
    return meta


def parse(text: bytes, where: str) -> dict[str, Any]:
    """Parse and validate a sidecar's bytes."""
    if len(text) > MAX_BYTES:
        raise EngineError(f"engine sidecar {where} is {len(text):,} bytes; netdef's sidecars are a few KB, "
                          f"so this is not one")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise EngineError(f"engine sidecar {where} is not valid JSON: {detail[:200]}") from None
    return validate(meta, where)
