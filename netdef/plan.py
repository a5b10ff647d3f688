"""Plan: a serialized engine (bytes) with the metadata needed to check it before loading.

On disk a plan is `<path>` (the bytes TensorRT wrote, readable by any TensorRT tool) and
`<path>.json` (its sidecar, netdef.sidecar). save_engine makes the pair one atomic unit:

1. both files are written in full under unique temporary names, and fsynced;
2. the new sidecar replaces the old one; it describes the new plan and, under `previous`,
   the plan still in place (its size and SHA-256, and its old sidecar's fields);
3. the new plan replaces the old one;
4. the sidecar is rewritten without `previous`.

A reader picks the entry whose SHA-256 matches the plan it read, so a writer killed at any
point leaves either the old pair or the new pair, never a plan described by another plan's
sidecar. Saves to one directory are serialized by an advisory lock on the directory (two
processes saving one path cannot interleave), and readers take it shared. Temporary
files carry host and pid in their names; the next save removes those whose writer is gone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from netdef import backend, sidecar
from netdef.errors import EngineError
from netdef.fileio import atomic_file, directory_lock, fsync_directory, remove_stale_temporaries, written_temporary

SIDECAR_SUFFIX = ".json"
_LEGACY_PARTIAL = ".partial"  # netdef 0.1's sidecar temp name, shared by every writer


class Plan(bytes):
    """A serialized TensorRT engine; `metadata` says how it was built."""

    metadata: dict[str, Any]

    def __new__(cls, data: Any, metadata: dict[str, Any] | None = None) -> "Plan":
        obj = super().__new__(cls, data)
        obj.metadata = dict(metadata or {})
        obj._sha256 = None
        return obj

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the plan bytes (computed once)."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self).hexdigest()
        return self._sha256

    @property
    def header(self) -> "PlanHeader | None":
        return read_header(self)

    def __repr__(self) -> str:
        m = self.metadata
        return (f"Plan({len(self)} bytes, backend={m.get('backend')} {m.get('backend_version')}, "
                f"dtype={m.get('dtype')})")

    __str__ = __repr__


# ---- what a plan's own header says (no TensorRT needed) ------------------------------------------
@dataclass(frozen=True)
class PlanHeader:
    """Fields of a plan's header that netdef reads itself, for plans without a sidecar."""

    backend: str
    size: int  # the plan's total length in bytes, as recorded by the builder
    version: str  # the version that built it


_HEADER_BYTES = 28


def read_header(data: bytes) -> PlanHeader | None:
    """The header of a TensorRT-RTX plan; None for any other bytes.

    Layout (little-endian, read from plans built by tensorrt_rtx 1.7): bytes 0-3 are `vtrt`,
    16-23 the plan's total size, 24-27 the building version (major, minor, patch, build).
    Classic TensorRT's layout is not read: it could not be verified here."""
    if len(data) < _HEADER_BYTES or bytes(data[:4]) != b"vtrt":
        return None
    size = int.from_bytes(data[16:24], "little")
    return PlanHeader("tensorrt_rtx", size, ".".join(str(b) for b in bytes(data[24:28])))


def header_version_matches(header: PlanHeader) -> bool:
    """True when `header` was written by the active backend's version (compared in the header's own
    one-byte-per-part encoding, so an unusual version number cannot raise a false alarm)."""
    return header.version == ".".join(str(v % 256) for v in backend.version_tuple())


def check_structure(data: bytes, where: str) -> PlanHeader | None:
    """Catch truncated, extended and foreign bytes from the plan itself, before TensorRT sees them.

    Detectable without deserializing: a TensorRT-RTX plan cut short or with bytes appended (its
    header records its size), bytes that are not a plan at all while TensorRT-RTX is active (no
    `vtrt` magic), and which backend and version built an RTX plan. Not detectable: damage inside
    the body (only the sidecar's SHA-256 catches it), and anything about a classic TensorRT plan."""
    if len(data) == 0:
        raise EngineError(f"engine {where} is empty")
    header = read_header(data)
    if header is not None:
        if len(data) < header.size:
            raise EngineError(f"engine {where} is truncated: it has {len(data):,} bytes but its header "
                              f"records {header.size:,}; rebuild or re-copy it")
        if len(data) > header.size:
            raise EngineError(f"engine {where} has {len(data) - header.size:,} bytes after the plan its "
                              f"header describes ({header.size:,} bytes): it was damaged or another file "
                              f"was appended; rebuild or re-copy it")
        return header
    magic = backend.capabilities().plan_magic
    if magic is not None and bytes(data[:4]) != magic:
        kind = ("too short to be a plan" if len(data) < _HEADER_BYTES
                else f"it starts with {bytes(data[:8])!r}, where {backend.name()} plans start with {magic!r}")
        raise EngineError(f"engine {where} is not a {backend.name()} plan ({len(data):,} bytes; {kind}): "
                          f"corrupted, built by another TensorRT, or not an engine file")
    return None


# ---- saving and loading the pair -------------------------------------------------------------------
def sidecar_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + SIDECAR_SUFFIX


def _read_sidecar(side: str) -> dict[str, Any] | None:
    """The parsed, validated sidecar at `side`, or None when there is none."""
    try:
        with open(side, "rb") as f:
            text = f.read(sidecar.MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EngineError(f"engine sidecar {side!r} is unreadable: {exc.strerror}") from None
    return sidecar.parse(text, repr(side))


def _sha256_file(path: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _entry_in_place(path: str, side: str) -> dict[str, Any] | None:
    """The sidecar entry describing the plan now at `path` (for `previous`), or None if no plan."""
    if not os.path.isfile(path):
        return None
    try:
        meta = _read_sidecar(side)
    except EngineError:
        meta = None  # a damaged sidecar describes nothing: keep only the plan's identity
    size = os.path.getsize(path)
    if meta is not None and "previous" not in meta and meta.get("plan_bytes") == size and meta.get("plan_sha256"):
        return meta  # netdef's own pair; trusted without hashing the old plan again
    size, digest = _sha256_file(path)
    for entry in (meta, (meta or {}).get("previous")):
        if entry and entry.get("plan_sha256") == digest:
            return {k: v for k, v in entry.items() if k != "previous"}
    return {"plan_bytes": size, "plan_sha256": digest, "no_sidecar": True}


def save_engine(plan: bytes, path: str | os.PathLike) -> str:
    """Write `plan` to `path` and its metadata to `path + '.json'` as one atomic pair (see the
    module docstring): afterwards `path` holds the old pair or the new one, even if killed."""
    if not isinstance(plan, (bytes, bytearray, memoryview)) or len(plan) == 0:
        raise EngineError(f"save_engine({os.fspath(path)!r}): expected a non-empty serialized plan, "
                          f"got {type(plan).__name__}")
    given = os.fspath(path)
    path = os.path.abspath(given)
    side = sidecar_path(path)
    for p in (path, side):
        if os.path.isdir(p):
            raise EngineError(f"save_engine: {p!r} is a directory; nothing was written")
    data = memoryview(plan).cast("B")
    check_structure(data, repr(path))
    meta = dict(getattr(plan, "metadata", {}) or {})
    meta.pop("previous", None)
    meta["plan_bytes"] = len(data)
    # without a GPU TensorRT checks only a plan's header; the digest catches a damaged body
    meta["plan_sha256"] = plan.sha256 if isinstance(plan, Plan) else hashlib.sha256(data).hexdigest()
    sidecar.validate(meta, f"for {path!r}")
    text = json.dumps(meta, indent=2).encode()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with directory_lock(path):
        for p in (path, side):
            remove_stale_temporaries(p)
        _remove_legacy_partial(side)
        with contextlib.ExitStack() as cleanup:
            with written_temporary(path) as (f, plan_tmp):
                f.write(data)
            cleanup.callback(_unlink, plan_tmp)
            previous = _entry_in_place(path, side)
            first = text if previous is None else json.dumps({**meta, "previous": previous}, indent=2).encode()
            with atomic_file(side) as f:  # describes the plan in place and the new one
                f.write(first)
            os.replace(plan_tmp, path)
            fsync_directory(os.path.dirname(path))
            if previous is not None:
                with atomic_file(side) as f:
                    f.write(text)
    return given


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_legacy_partial(side: str) -> None:
    """netdef 0.1 wrote `<sidecar>.partial` without a lock; under ours, a leftover one is stale."""
    _unlink(side + _LEGACY_PARTIAL)


def load_plan(path: str | os.PathLike) -> Plan:
    """Read a plan and its sidecar (the sidecar may be absent for plans made elsewhere)."""
    path = os.fspath(path)
    side = sidecar_path(path)
    if os.path.isdir(path):
        raise EngineError(f"cannot read engine {path!r}: it is a directory")
    with directory_lock(path, shared=True):  # not between a save's renames
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise EngineError(f"cannot read engine {path!r}: {exc.strerror}") from None
        meta = _read_sidecar(side)
    plan = Plan(data)
    check_structure(plan, repr(path))
    if meta is not None:
        plan.metadata = _matching_entry(meta, plan, path, side)
    return plan


def _matching_entry(meta: dict[str, Any], plan: Plan, path: str, side: str) -> dict[str, Any]:
    """The sidecar entry that describes `plan` (the top level, or `previous` during a save)."""
    previous = meta.pop("previous", None)
    if previous is not None:
        if plan.sha256 == meta.get("plan_sha256"):
            return meta
        if plan.sha256 == previous["plan_sha256"]:
            return {} if previous.get("no_sidecar") else previous
        raise EngineError(f"engine {path!r} matches neither plan its sidecar {side!r} describes "
                          f"(a save was interrupted and the plan was then replaced by hand?); "
                          f"rebuild it, or delete the sidecar to load the plan without it")
    if meta.get("plan_bytes") not in (None, len(plan)):
        raise EngineError(f"engine {path!r} has {len(plan):,} bytes but its sidecar records "
                          f"{meta['plan_bytes']:,}: the file is truncated or was replaced")
    return meta
