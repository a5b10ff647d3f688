"""safetensors, read through mmap: arrays are views of the file, never copies.

Layout: an 8-byte little-endian header length, a JSON header
`{key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the data, with offsets relative to the data start. The header is validated
fully before any array is made, so a corrupt file fails with the key at fault.
Implemented here (not via the `safetensors` package) so reading needs neither
torch nor that package; it is the test oracle instead.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import reprlib
import sys
import weakref
from typing import Any, BinaryIO, Mapping

import ml_dtypes
import numpy as np

from netdef.errors import WeightsError, shown

# every byte-addressable dtype of the format; F64 stays float64 (Parameter narrows it)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E4M3FNUZ": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "F8_E5M2FNUZ": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu),
    "I64": np.dtype(np.int64), "I32": np.dtype(np.int32), "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_), "C64": np.dtype(np.complex64),
}
# packed sub-byte dtypes: numpy has no packed layout for them, so they are refused by name
_PACKED = ("F4", "F6_E2M3", "F6_E3M2")
_CODES = {dtype: code for code, dtype in DTYPES.items()}
_MAX_HEADER = 100 << 20  # the reference implementation's limit
_MAX_DIMS = 64  # numpy's limit on an array's rank
_MAX_DIM = 2**63 - 1  # numpy's limit on one dimension
_MAPS: "weakref.WeakSet[mmap.mmap]" = weakref.WeakSet()  # the mappings read() made, for release_pages
# Linux's MADV_PAGEOUT (5.4+): reclaim now; clean file pages are dropped, never changed
_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21 if sys.platform.startswith("linux") else None)
_BRIEF = reprlib.Repr()  # a value quoted in an error: bounded however large or deep it is
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlist = _BRIEF.maxdict = 8


def read(path: str) -> dict[str, np.ndarray]:
    """Validate the header, then return copy-on-write views of the mapped file."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise WeightsError(f"{path}: {size} bytes is too short for a safetensors file "
                               "(empty or truncated)")
        n = int.from_bytes(f.read(8), "little")
        if n > min(size - 8, _MAX_HEADER):
            raise WeightsError(f"{path}: the header length field says {n} bytes but the file has "
                               f"{size - 8} after it (not a safetensors file, or truncated)")
        entries = _parse_header(path, f.read(n), size - 8 - n)
        # ACCESS_COPY: arrays are writable like torch's, and a write never reaches the file
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 8 + n else None
    if mm is not None:
        _MAPS.add(mm)
    out = {}
    for key, (dtype, shape, begin, end) in entries.items():
        if end == begin:
            out[key] = np.empty(shape, dtype)
        else:
            out[key] = np.frombuffer(mm, dtype, (end - begin) // dtype.itemsize, 8 + n + begin).reshape(shape)
    return out


def release_pages(array: np.ndarray) -> None:
    """Let the OS drop the resident pages of `array`, a view of a file this module mapped.

    Values never change: an untouched (clean) page is read from the file again if needed, and
    a page someone wrote to is private memory the kernel keeps. So a build that no longer needs
    an original weight (BatchNorm folding made a rescaled copy) does not hold both in RSS.
    Anything else (not a mapped view, an old kernel) is left alone."""
    owner = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    mm = owner.obj if isinstance(owner, memoryview) else owner
    if _PAGEOUT is None or not isinstance(mm, mmap.mmap) or mm not in _MAPS or mm.closed:
        return
    import ctypes

    start = array.ctypes.data - ctypes.addressof(ctypes.c_char.from_buffer(mm))
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the array only
    last = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if 0 <= first < last <= len(mm):
        try:
            mm.madvise(_PAGEOUT, first, last - first)
        except OSError:  # a kernel without MADV_PAGEOUT: the pages simply stay
            pass


def _parse_header(path: str, raw: bytes, data_len: int) -> dict[str, tuple[np.dtype, tuple, int, int]]:
    """key -> (dtype, shape, begin, end), in file order, after checking everything."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = {}
        for k, v in pairs:
            if k in d:
                raise WeightsError(f"{path}: the header lists key {shown(k)} twice")
            d[k] = v
        return d

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)
    except RecursionError:
        raise WeightsError(f"{path}: the header nests JSON too deeply to be a safetensors header; "
                           "the file is corrupt or not safetensors") from None
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"{path}: the header is not valid JSON ({str(exc)[:200]}); the file is corrupt "
                           "or not safetensors") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsError(f"{path}: __metadata__ must map strings to strings")
    entries = {}
    for key, info in header.items():
        at = f"{path}: key {shown(key)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise WeightsError(f"{at}: expected an object with exactly dtype, shape and data_offsets, "
                               f"got {_BRIEF.repr(info)}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str):
            raise WeightsError(f"{at}: dtype {_BRIEF.repr(code)} is not a string")
        if code in _PACKED:
            raise WeightsError(f"{at}: dtype {code} is a packed sub-byte type that netdef cannot "
                               "represent in numpy; store it unpacked (e.g. as U8) instead")
        if code not in DTYPES:
            raise WeightsError(f"{at}: unknown dtype {shown(code, 40)}; known: {', '.join(DTYPES)}")
        if not _ints(shape):
            raise WeightsError(f"{at}: shape {_BRIEF.repr(shape)} is not a list of non-negative integers")
        if len(shape) > _MAX_DIMS or any(d > _MAX_DIM for d in shape):
            raise WeightsError(f"{at}: shape {_BRIEF.repr(shape)} has more than {_MAX_DIMS} dimensions "
                               f"or a dimension above 2**63 - 1, which no array can have")
        if not _ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise WeightsError(f"{at}: data_offsets {_BRIEF.repr(offsets)} is not [begin, end] with begin <= end")
        if offsets[1] > data_len:
            raise WeightsError(f"{at}: data_offsets {_BRIEF.repr(offsets)} run past the {data_len} data bytes "
                               "(truncated file?)")
        dtype = DTYPES[code]
        want = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != want:
            raise WeightsError(f"{at}: shape {_BRIEF.repr(shape)} of {code} needs {want} bytes but data_offsets "
                               f"{offsets} hold {offsets[1] - offsets[0]}")
        if want == 0:  # nothing bounds an empty tensor's other dimensions but numpy's own limits
            try:
                np.empty(shape, dtype)
            except (ValueError, MemoryError):
                raise WeightsError(f"{at}: shape {_BRIEF.repr(shape)} is too large for an array, even an "
                                   "empty one") from None
        entries[key] = (dtype, tuple(shape), offsets[0], offsets[1])
    expected = 0  # the tensors must tile the data exactly: no gaps, no overlaps
    for key, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin != expected:
            raise WeightsError(f"{path}: key {shown(key)}: data starts at byte {begin}, expected {expected} "
                               "(tensors overlap or leave a gap)")
        expected = end
    if expected != data_len:
        raise WeightsError(f"{path}: the tensors cover {expected} data bytes but the file holds "
                           f"{data_len} (trailing bytes or corrupt header)")
    return entries


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def dtype_code(key: str, arr: np.ndarray) -> str:
    try:
        return _CODES[arr.dtype]
    except KeyError:
        raise WeightsError(f"key {shown(key)}: dtype {arr.dtype} has no safetensors equivalent") from None


def write(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Header padded to 8 bytes and data ordered by decreasing itemsize, so every tensor
    is aligned for its dtype; the header lists keys in the caller's order."""
    codes = {key: dtype_code(key, arr) for key, arr in arrays.items()}
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    offsets, offset = {}, 0
    for key in order:
        offsets[key] = [offset, offset + arrays[key].nbytes]
        offset += arrays[key].nbytes
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for key, arr in arrays.items():
        header[key] = {"dtype": codes[key], "shape": list(arr.shape), "data_offsets": offsets[key]}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    f.write(len(raw).to_bytes(8, "little"))
    f.write(raw)
    for key in order:
        f.write(np.ascontiguousarray(arrays[key]).reshape(-1).view(np.uint8).data)
