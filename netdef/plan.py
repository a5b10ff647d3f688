"""Plan: a serialized engine (bytes) with the metadata needed to check it before loading.

save_engine writes the plan and a JSON sidecar atomically: a reader never
sees a half-written engine, and a crash never leaves one behind.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from netdef.errors import EngineError
from netdef.fileio import atomic_file

SIDECAR_SUFFIX = ".json"


class Plan(bytes):
    """A serialized TensorRT engine; `metadata` says how it was built."""

    metadata: dict[str, Any]

    def __new__(cls, data: Any, metadata: dict[str, Any] | None = None) -> "Plan":
        obj = super().__new__(cls, data)
        obj.metadata = dict(metadata or {})
        return obj

    def __repr__(self) -> str:
        m = self.metadata
        return (f"Plan({len(self)} bytes, backend={m.get('backend')} {m.get('backend_version')}, "
                f"dtype={m.get('dtype')})")

    __str__ = __repr__


def sidecar_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + SIDECAR_SUFFIX


def save_engine(plan: bytes, path: str | os.PathLike) -> str:
    """Write `plan` to `path` and its metadata to `path + '.json'`, each atomically."""
    if not isinstance(plan, (bytes, bytearray, memoryview)) or len(plan) == 0:
        raise EngineError(f"save_engine({os.fspath(path)!r}): expected a non-empty serialized plan, "
                          f"got {type(plan).__name__}")
    path = os.fspath(path)
    meta = dict(getattr(plan, "metadata", {}) or {})
    meta["plan_bytes"] = len(plan)
    # without a GPU TensorRT checks only a plan's header; the digest catches a damaged body
    meta["plan_sha256"] = hashlib.sha256(plan).hexdigest()
    with atomic_file(sidecar_path(path) + ".partial") as f:
        f.write(json.dumps(meta, indent=2).encode())
    try:
        with atomic_file(path) as f:
            f.write(memoryview(plan))
    except BaseException:
        os.unlink(sidecar_path(path) + ".partial")
        raise
    os.replace(sidecar_path(path) + ".partial", sidecar_path(path))
    return path


def load_plan(path: str | os.PathLike) -> Plan:
    """Read a plan and its sidecar (the sidecar may be absent for plans made elsewhere)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise EngineError(f"cannot read engine {path!r}: {exc.strerror}") from None
    if not data:
        raise EngineError(f"engine {path!r} is empty")
    meta: dict[str, Any] = {}
    if os.path.exists(sidecar_path(path)):
        try:
            with open(sidecar_path(path)) as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise EngineError(f"engine sidecar {sidecar_path(path)!r} is unreadable: {exc}") from None
        if meta.get("plan_bytes") not in (None, len(data)):
            raise EngineError(f"engine {path!r} has {len(data)} bytes but its sidecar records "
                              f"{meta['plan_bytes']}: the file is truncated or was replaced")
    return Plan(data, meta)
