"""Fuzzing netdef.weights: mutated .wts (all three tensorrtx writers), safetensors and .pt files.

Each case takes a valid seed file, mutates it (byte flips, truncation, header edits, huge
counts, bad hex, CRC corruption of zip records, rewritten pickles, nested JSON, wrong dtypes,
absurd shapes, huge keys, ...) and loads it with `netdef.weights.load`, then, when that loads
and the seed came from a model, with `Module.load_state_dict`. Independent reference readers
written here from the formats' descriptions (struct, json, zipfile and Python's pure-Python
unpickler; no netdef code) judge the result. A case passes when it ends in

  - a `netdef.WeightsError` whose message names the file and stays short, or
  - a load equal to the reference reader's (same keys in the same order, dtypes, shapes, bits),
    and then a model holding exactly the reference's values or a WeightsError naming the file.

Anything else fails: another exception type, a load the reference calls invalid or whose data
differ ("silently wrong"), a hang, a crash or a memory blow-up. Cases run in a child process
with a memory limit and a per-case alarm; the parent notices a crash or a hang.

    python tests/weights_fuzz.py --seconds 300            # by hand: a long run, random seed
    python tests/weights_fuzz.py --cases 1000 --seed 20261129  # what CI runs (test_weights_fuzz.py)
    python tests/weights_fuzz.py --seed 1 --replay 17 --out /tmp/case   # keep case 17's file

NETDEF_FUZZ_SECONDS makes the pytest test run that long instead (with a random seed it prints, or
NETDEF_FUZZ_SEED).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import math
import os
import pickle
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Any, Callable

import numpy as np

CASE_SECONDS = 20  # a case slower than this is a hang (cases take milliseconds)
MEMORY_MB = 300  # peak RSS growth of one case above this is a memory blow-up (seeds are KBs)
MESSAGE_CHARS = 1500  # an error message longer than this (plus the path) is not one readable error


class Invalid(Exception):
    """The reference reader's verdict: the file is not a valid file of its format."""


# ---- reference readers (independent of netdef) ----------------------------------------------------
_WTS_TOKEN = re.compile(rb"0[xX][0-9a-fA-F]{1,8}|[0-9a-fA-F]{8}")


def ref_wts(data: bytes) -> dict[str, np.ndarray]:
    """tensorrtx .wts: line 1 the tensor count; then `key N hex*N`, any ASCII whitespace between
    fields, blank lines ignored; a value is 8 hex digits or 0x and 1-8 digits (big-endian float32)."""
    lines = [line.split() for line in data.split(b"\n")]
    lines = [fields for fields in lines if fields]
    if not lines or len(lines[0]) != 1 or not lines[0][0].isdigit() or len(lines[0][0]) > 4000:
        raise Invalid("no tensor count")
    count = int(lines[0][0])
    out: dict[str, np.ndarray] = {}
    for fields in lines[1:]:
        try:
            key = fields[0].decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("key is not UTF-8") from None
        if key in out or len(fields) < 2 or not fields[1].isdigit() or len(fields[1]) > 4000:
            raise Invalid("duplicate key or bad value count")
        values = fields[2:]
        if int(fields[1]) != len(values) or not all(_WTS_TOKEN.fullmatch(v) for v in values):
            raise Invalid("value count or a value")
        words = b"".join(struct.pack(">I", int(v, 16)) for v in values)
        out[key] = np.frombuffer(words, ">f4").astype(np.float32)
    if len(out) != count:
        raise Invalid("tensor count")
    return out


def _st_dtypes() -> dict[str, np.dtype]:
    import ml_dtypes

    return {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
            "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
            "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz, "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
            "F8_E8M0": ml_dtypes.float8_e8m0fnu, "I64": np.int64, "I32": np.int32, "I16": np.int16,
            "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
            "BOOL": np.bool_, "C64": np.complex64}


def ref_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """safetensors: u64 LE header size, a JSON object {key: {dtype, shape, data_offsets}} with an
    optional __metadata__ of strings, then the data, which the tensors must tile exactly."""
    if len(data) < 8:
        raise Invalid("short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise Invalid("header size")

    def no_duplicates(pairs: list) -> dict:
        if len({k for k, _ in pairs}) != len(pairs):
            raise Invalid("duplicate key")
        return dict(pairs)

    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError):
        raise Invalid("header JSON") from None
    if not isinstance(header, dict):
        raise Invalid("header is not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise Invalid("metadata")
    body = data[8 + n:]
    table = _st_dtypes()
    spans, out = [], {}
    for key, info in header.items():
        if not isinstance(info, dict) or sorted(info) != ["data_offsets", "dtype", "shape"]:
            raise Invalid("entry fields")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in table or not _naturals(shape) or not _naturals(offsets):
            raise Invalid("dtype, shape or offsets")
        if len(offsets) != 2 or not offsets[0] <= offsets[1] <= len(body):
            raise Invalid("offsets")
        dtype = np.dtype(table[code])
        if math.prod(shape) * dtype.itemsize != offsets[1] - offsets[0]:
            raise Invalid("size")
        try:
            arr = np.frombuffer(body, dtype, math.prod(shape), offsets[0]).reshape(shape)
        except (ValueError, OverflowError, MemoryError):
            raise Invalid("no numpy array has this shape") from None
        spans.append(tuple(offsets))
        out[key] = arr.copy()
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise Invalid("gap or overlap")
        end = stop
    if end != len(body):
        raise Invalid("trailing data")
    return out


def _naturals(value: Any) -> bool:
    return isinstance(value, list) and all(type(x) is int and x >= 0 for x in value)


_TORCH_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Storage(collections.namedtuple("_Storage", "data")):
    pass


def ref_pt(data: bytes) -> dict[str, np.ndarray]:
    """torch.save's zip format: <name>/data.pkl (a protocol-2 pickle whose tensors are
    torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)), storages in
    <name>/data/<key> (raw, in <name>/byteorder's order), every record's CRC-32 intact. The
    state_dict is the pickled mapping if all its values are tensors, else its one entry that is."""
    import ml_dtypes

    if not data.startswith(b"PK\x03\x04"):
        raise Invalid("not a zip archive")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        if archive.testzip() is not None:
            raise Invalid("CRC")
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0]
        if len(set(names)) != len(names) or f"{prefix}/data.pkl" not in names:
            raise Invalid("records")
        records = {name: archive.read(name) for name in names}
    except Invalid:
        raise
    except Exception:  # noqa: BLE001 - zipfile's verdict on a damaged archive, whatever its type
        raise Invalid("zip") from None
    order = records.get(f"{prefix}/byteorder", b"little")
    if order not in (b"little", b"big"):
        raise Invalid("byteorder")
    storages: dict[str, np.ndarray] = {}
    dtypes = dict(_TORCH_STORAGES, BFloat16Storage=ml_dtypes.bfloat16)

    def storage_class(name: str) -> Any:
        if name not in dtypes:
            raise Invalid(f"global torch.{name}")
        return ("storage-class", name)

    def rebuild(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                hooks: Any = None, *extra: Any) -> np.ndarray:
        if not isinstance(storage, _Storage) or type(offset) is not int or not isinstance(size, tuple) \
                or not isinstance(stride, tuple) or len(size) != len(stride) \
                or not all(type(v) is int for v in size + stride):
            raise Invalid("tensor arguments")
        base = storage.data
        if offset < 0 or any(v < 0 for v in size + stride):
            raise Invalid("negative size or stride")
        if math.prod(size) and offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 > base.size:
            raise Invalid("tensor runs past its storage")
        if not math.prod(size):
            return np.zeros(size, base.dtype)
        view = np.lib.stride_tricks.as_strided(base[offset:], size, tuple(st * base.itemsize for st in stride))
        return np.array(view)

    class Unpickler(pickle._Unpickler):  # the pure-Python unpickler: no C-level surprises
        dispatch = dict(pickle._Unpickler.dispatch)
        # PROTO only announces a version and changes no value; torch accepts any number (with a
        # warning), Python's unpickler refuses numbers above its own highest protocol
        dispatch[pickle.PROTO[0]] = lambda self: self.read(1)

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch":
                return storage_class(name)
            raise Invalid(f"global {module}.{name}")

        def persistent_load(self, pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[2], str) and type(pid[4]) is int):
                raise Invalid("persistent id")
            # the storage type stands for its dtype: torch reads `.dtype` of whatever object is
            # there, so a tensor in that place (a damaged memo reference) gives the tensor's dtype
            if isinstance(pid[1], tuple) and pid[1][:1] == ("storage-class",):
                dtype = np.dtype(dtypes[pid[1][1]])
            elif isinstance(pid[1], np.ndarray) and pid[1].dtype in [np.dtype(d) for d in dtypes.values()]:
                dtype = pid[1].dtype
            else:
                raise Invalid("persistent id")
            key = pid[2]
            if key not in storages:
                raw = records.get(f"{prefix}/data/{key}")
                if raw is None or len(raw) != pid[4] * dtype.itemsize:
                    raise Invalid("storage record")
                arr = np.frombuffer(raw, dtype.newbyteorder(">" if order == b"big" else "<"))
                storages[key] = arr.astype(dtype)
            if storages[key].dtype != dtype:
                raise Invalid("one storage, two dtypes")
            return _Storage(storages[key])

    try:
        obj = Unpickler(io.BytesIO(records[f"{prefix}/data.pkl"])).load()
    except Invalid:
        raise
    except Exception:  # noqa: BLE001 - the unpickler's verdict on a damaged pickle
        raise Invalid("pickle") from None
    if not isinstance(obj, dict):
        raise Invalid("not a mapping")
    if not _tensors_only(obj):
        nested = [v for v in obj.values() if _tensors_only(v) and v]
        if len(nested) != 1:
            raise Invalid("not a state_dict")
        obj = nested[0]
    if not all(isinstance(k, str) for k in obj):
        raise Invalid("key type")
    return dict(obj)


def _tensors_only(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(x, np.ndarray) for x in value.values())


REFERENCE = {".wts": ref_wts, ".safetensors": ref_safetensors, ".pt": ref_pt}


def ref_fit(expected: dict[str, np.ndarray], slots: dict[str, np.ndarray], flat: bool) -> dict[str, np.ndarray]:
    """What strict Module.load_state_dict must store, by netdef's documented rules: same keys;
    same shape, or (flat .wts) the same number of values; same dtype, or float to float, or
    (flat .wts) whole floats inside an integer buffer's range. Invalid when it must refuse."""
    if list(expected) != list(slots) and set(expected) != set(slots):
        raise Invalid("keys")
    out = {}
    for key, target in slots.items():
        arr = expected[key]
        if arr.shape != target.shape:
            if not (flat and arr.ndim == 1 and arr.size == target.size):
                raise Invalid("shape")
            arr = arr.reshape(target.shape)
        if arr.dtype != target.dtype:
            if _floating(arr.dtype) and _floating(target.dtype):
                arr = arr.astype(target.dtype)
            elif flat and _floating(arr.dtype):
                wide = arr.astype(np.float64)
                info = np.iinfo(target.dtype) if target.dtype.kind in "iu" else None
                lo, hi = (0, 1) if info is None else (info.min, info.max)
                if not np.all(np.isfinite(wide)) or np.any(wide != np.floor(wide)) \
                        or any(int(v) < lo or int(v) > hi for v in wide.reshape(-1)):
                    raise Invalid("not a whole number in range")
                arr = np.array([int(v) for v in wide.reshape(-1)], target.dtype).reshape(arr.shape)
            else:
                raise Invalid("dtype")
        out[key] = arr
    return out


def _floating(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16" or "float8" in dtype.name


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Same keys in the same order, dtypes, shapes and bits."""
    if list(a) != list(b):
        return False
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if x.tobytes() != y.tobytes():
            return False
    return True


# ---- seeds --------------------------------------------------------------------------------------------
def _torch_model(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    model[1].num_batches_tracked.fill_(7)
    return model


def netdef_model() -> Any:
    from netdef import nn

    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def _gen_wts(state_dict: dict, variant: str) -> bytes:
    """tensorrtx's writers, one value at a time: gen_wts.py's double/single space, and hex()."""
    out = [f"{len(state_dict)}\n"]
    for key, value in state_dict.items():
        flat = value.reshape(-1).float().numpy() if hasattr(value, "numpy") else value.reshape(-1)
        out.append(f"{key} {len(flat)} " if variant == "double" else f"{key} {len(flat)}")
        for v in flat:
            word = struct.unpack(">I", struct.pack(">f", float(v)))[0]
            out.append(" " + (hex(word) if variant == "0x" else f"{word:08x}"))
        out.append("\n")
    return "".join(out).encode()


def make_seeds(workdir: str) -> list[tuple[str, str, bytes, bool]]:
    """(name, extension, bytes, from_model) of every seed file."""
    import ml_dtypes
    import safetensors.numpy
    import safetensors.torch
    import torch

    sd = _torch_model(0).state_dict()
    seeds = [(f"wts-{v}", ".wts", _gen_wts(sd, v), True) for v in ("double", "single", "0x")]
    rng = np.random.default_rng(0)
    long_line = {"big.weight": rng.standard_normal(31_000).astype(np.float32),  # > one 256 KiB chunk
                 "small.bias": rng.standard_normal(3).astype(np.float32)}
    seeds.append(("wts-long", ".wts", _gen_wts(long_line, "single"), False))
    seeds.append(("st-model", ".safetensors", safetensors.torch.save({k: v.contiguous() for k, v in sd.items()}),
                  True))
    arrays = {"f64": rng.standard_normal((2, 3)), "f32": rng.standard_normal(5).astype(np.float32),
              "f16": rng.standard_normal((3, 1)).astype(np.float16),
              "bf16": rng.standard_normal(4).astype(ml_dtypes.bfloat16),
              "i64": rng.integers(-9, 9, 3), "i32": rng.integers(-9, 9, (2, 2)).astype(np.int32),
              "u8": rng.integers(0, 255, 6).astype(np.uint8), "b": rng.integers(0, 2, 3).astype(bool),
              "empty": np.zeros((0, 3), np.float32), "scalar": np.array(2.5, np.float32)}
    seeds.append(("st-dtypes", ".safetensors", safetensors.numpy.save(arrays, metadata={"format": "np"}), False))
    for name, obj in (("pt-model", sd),
                      ("pt-checkpoint", {"epoch": 3, "state_dict": sd, "best": 0.5}),
                      ("pt-views", {"a": (t := torch.randn(4, 3)), "b": t[1:, 1], "c": t.t(),
                                    "h": torch.randn(3).half(), "bf": torch.randn(2).bfloat16(),
                                    "n": torch.tensor(7), "m": torch.ones(2, dtype=torch.bool)})):
        path = os.path.join(workdir, "seed.pt")
        torch.save(obj, path)
        with open(path, "rb") as f:
            seeds.append((name, ".pt", f.read(), name == "pt-model"))
    for name, ext, data, _ in seeds:  # every seed must be valid to its reference reader
        REFERENCE[ext](data)
    return seeds


# ---- mutations ---------------------------------------------------------------------------------------
Mutation = Callable[[random.Random, bytes], bytes]
_INTERESTING = [b" ", b"\n", b"\r", b"\t", b"0", b"9", b"x", b"X", b"f", b"g", b"-", b"+", b".", b"\x00",
                b"\xff", b"\x80", b"{", b"}", b"[", b"]", b"\"", b",", b":", b"\\", b"e", b"\xc3"]


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_byte(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return rng.choice(_INTERESTING)
    i = rng.randrange(len(data))
    return data[:i] + rng.choice(_INTERESTING) + data[i + 1:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = rng.choice([rng.choice(_INTERESTING), bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9))),
                       b"  ", b"\r\n", b"\n\n", b"0x", b"3f800000 "])
    return data[:i] + junk + data[i:]


def delete(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.randrange(1, 12):]


def duplicate(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    j = min(len(data), i + rng.randrange(1, 64))
    return data[:j] + data[i:j] + data[j:]


GENERIC: list[Mutation] = [flip_bits, set_byte, set_byte, truncate, insert, delete, duplicate]


def _huge_number(rng: random.Random) -> bytes:
    return rng.choice([b"9" * 5000, b"1" + b"0" * 4400, b"99999999999999999999", b"18446744073709551616",
                       b"-1", b"+3", b"1e3", b"0x10", b"\xd9\xa3", b"00000000000000000000000001", b""])


def wts_count(rng: random.Random, data: bytes) -> bytes:
    first, _, rest = data.partition(b"\n")
    new = rng.choice([_huge_number(rng), str(int(first) + rng.choice([-1, 1, 10**6])).encode(), b"0"])
    return new + b"\n" + rest


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def wts_value_count(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(1, max(2, len(lines) - 1))
    parts = lines[i].split(b" ", 2)
    if len(parts) >= 2 and parts[1].isdigit():
        parts[1] = rng.choice([_huge_number(rng), str(int(parts[1]) + rng.choice([-1, 1, 2**31])).encode()])
        lines[i] = b" ".join(parts)
    return b"\n".join(lines)


def wts_token(rng: random.Random, data: bytes) -> bytes:
    """One value replaced by a bad or edge-case hex token (or an integer buffer out of range)."""
    lines = _lines(data)
    i = rng.randrange(1, max(2, len(lines) - 1))
    fields = lines[i].split(b" ")
    spots = [j for j, f in enumerate(fields) if j >= 2 and f]
    if spots:
        fields[rng.choice(spots)] = rng.choice(
            [b"zzzzzzzz", b"0x", b"0x123456789", b"3f80", b"3f8000000", b"0X3F800000", b"3F800000", b"0x0",
             b"7f7fffff", b"ff800000", b"7fc00000", b"5f000000", b"df000000", b"4f000000", b"3fc00000",
             b"80000000", b"0x7f800000", b"-3f80000", b"3f80\x000", b"3f8000\xc3\xa9"])
    lines[i] = b" ".join(fields)
    return b"\n".join(lines)


def wts_key(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(1, max(2, len(lines) - 1))
    fields = lines[i].split(b" ", 1)
    fields[0] = rng.choice([b"k" * rng.choice([1000, 1 << 20]), b"conv\xff.weight", b"\xc3", fields[0] + b"\x00",
                            lines[1].split(b" ", 1)[0], b"0.weight", b"1.num_batches_tracked"])
    lines[i] = b" ".join(fields)
    return b"\n".join(lines)


def wts_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(1, max(2, len(lines))), rng.randrange(1, max(2, len(lines)))
    op = rng.randrange(4)
    if op == 0:
        lines.insert(j, lines[i] if i < len(lines) else b"")
    elif op == 1 and i < len(lines):
        del lines[i]
    elif op == 2 and i < len(lines) and j < len(lines):
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, rng.choice([b"", b"   ", b"\r", b"\t\t"]))
    return b"\n".join(lines)


def wts_spacing(rng: random.Random, data: bytes) -> bytes:
    sep = rng.choice([b"\t", b"  ", b" \r ", b"\x0b", b"\x0c", b"\x1c", b"\xa0", b"\r\n"])
    return data.replace(b" ", sep, rng.randrange(1, 40))


WTS: list[Mutation] = [wts_count, wts_value_count, wts_token, wts_token, wts_key, wts_lines, wts_spacing]


def _st_split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _st_join(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def st_length(rng: random.Random, data: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    new = rng.choice([0, 1, n - 1, n + 1, n + 8, len(data), 2**63, 2**64 - 1, 100_000_001, n - 8])
    return struct.pack("<Q", max(0, min(new, 2**64 - 1))) + data[8:]


_ABSURD_SHAPES = [[0, 2**64], [0, 2**63], [0, 2**63 - 1], [0] * 65, [1] * 65, [0, 2**62, 2**62], [-1], [1.5],
                  [True], [2**70], "3", [], [None], [[2]], [0, 10**400 // 10**390]]


def st_entry(rng: random.Random, data: bytes) -> bytes:
    """Edit one entry's dtype, shape or data_offsets (the header is re-serialized, lengths fixed)."""
    header, body = _st_split(data)
    keys = [k for k in header if k != "__metadata__"]
    if not keys:
        return data
    info = header[rng.choice(keys)]
    field = rng.choice(["dtype", "shape", "data_offsets", "extra", "missing"])
    if field == "dtype":
        info["dtype"] = rng.choice([["F32"], {"F32": 1}, 5, None, "", "f32", "F99", "F4", "F6_E2M3", "BF16", "F16",
                                    "F64", "I64", "U8", "BOOL", "C64", "F8_E8M0", "I32", "F32"])
    elif field == "shape":
        shape = info["shape"]
        info["shape"] = rng.choice(_ABSURD_SHAPES + [shape[::-1], shape + [1], [1] + shape, shape[:-1],
                                                     [math.prod(shape)], [x * 2 for x in shape]])
    elif field == "data_offsets":
        b, e = info["data_offsets"]
        info["data_offsets"] = rng.choice([[e, b], [b + 1, e + 1], [b, e + 4], [b], [b, e, e], [-1, e], [b, 2**64],
                                           [b, 2**100], [0, 0], [e, e], "x", [b + 0.0, e]])
    elif field == "extra":
        info[rng.choice(["offsets", "dtype ", "__x"])] = 1
    else:
        del info[rng.choice(list(info))]
    return _st_join(header, body)


def st_header(rng: random.Random, data: bytes) -> bytes:
    """Whole-header edits: metadata, new entries, huge keys, nesting, duplicates, encoding."""
    header, body = _st_split(data)
    op = rng.randrange(9)
    if op == 0:
        header["__metadata__"] = rng.choice([5, [], {"a": 1}, {"a": None}, "x", {"a": "b" * 1000}, {}])
    elif op == 1:
        header[rng.choice(["z", "", "k" * (1 << 20), "\ud800", "a.b"])] = {
            "dtype": "F32", "shape": rng.choice(_ABSURD_SHAPES[:7] + [[0], [0, 3]]),
            "data_offsets": [len(body), len(body)]}
    elif op == 2:
        depth = rng.choice([1000, 100_000, 1_000_000])
        return _st_join(b"[" * depth + b"]" * depth, body)
    elif op == 3:
        key = rng.choice([k for k in header if k != "__metadata__"] or ["x"])
        header[key] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4],
                       "nested": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}
    elif op == 4:
        raw = json.dumps(header).encode()
        first = raw.index(b"{", 1)
        key_end = raw.rindex(b":", 0, first)
        key_start = raw.rindex(b"{", 0, key_end)
        dup = raw[key_start + 1:raw.index(b"}", first) + 1]
        return _st_join(raw[:-1] + b", " + dup + b"}", body)  # the same key twice
    elif op == 5:
        raw = json.dumps(header).encode()
        i = rng.randrange(len(raw))
        return _st_join(raw[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + raw[i:], body)
    elif op == 6:
        return _st_join(json.dumps(header).encode() + b" " * rng.choice([1, 7, 8]), body)
    elif op == 7:
        return _st_join(rng.choice([b"[]", b"null", b"5", b"\"x\"", b"{}", b"NaN", b"{\"a\": NaN}"]), body)
    else:
        keys = list(header)
        rng.shuffle(keys)
        return _st_join(json.dumps({k: header[k] for k in keys}).encode(), body)
    return _st_join(header, body)


def st_body(rng: random.Random, data: bytes) -> bytes:
    """Data changes that keep the header: the reference must see the same values netdef loads."""
    header, body = _st_split(data)
    head = data[:len(data) - len(body)]
    op = rng.randrange(3)
    if op == 0 and body:
        return head + flip_bits(rng, body)
    if op == 1:
        return head + body + rng.choice([b"\x00", b"junk", b"\x00" * 8])
    return head + body[:rng.randrange(len(body) + 1)]


SAFETENSORS: list[Mutation] = [st_length, st_entry, st_entry, st_entry, st_header, st_header, st_body]


def _zip_records(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _zip(records: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, payload in records:
            z.writestr(name, payload)
    return buf.getvalue()


def pt_crc(rng: random.Random, data: bytes) -> bytes:
    """Corrupt a CRC-32 field (local header or central directory), or a record's bytes (whose
    stored CRC then no longer matches)."""
    out = bytearray(data)
    op = rng.randrange(3)
    marks = [m.start() for m in re.finditer(rb"PK\x03\x04" if op == 0 else rb"PK\x01\x02", data)]
    if op < 2 and marks:
        at = rng.choice(marks) + (14 if op == 0 else 16)
        out[at + rng.randrange(4)] ^= 1 << rng.randrange(8)
        return bytes(out)
    records = _zip_records(data)
    name, payload = rng.choice(records)
    start = data.find(payload) if payload else -1
    if start > 0:
        out[start + rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
    return bytes(out)


_PKL_EDITS = [(b"FloatStorage", b"HalfStorage"), (b"FloatStorage", b"LongStorage"),
              (b"FloatStorage", b"BFloat16Storage"), (b"FloatStorage", b"DoubleStorage"),
              (b"_rebuild_tensor_v2", b"_rebuild_tensor_v3"), (b"collections\nOrderedDict", b"builtins\neval\n"),
              (b"torch._utils", b"os\nsystem\n"), (b"cpu", b"cud"), (b"LongStorage", b"FloatStorage")]


def pt_rezip(rng: random.Random, data: bytes) -> bytes:
    """Change a record and write a fresh, CRC-correct archive: damage only the pickle or the
    storages can reveal (sizes, strides, offsets, storage keys and types, byteorder, renames)."""
    records = _zip_records(data)
    names = [n for n, _ in records]
    prefix = names[0].split("/", 1)[0]
    op = rng.randrange(8)
    i = names.index(f"{prefix}/data.pkl")
    pkl = records[i][1]
    if op <= 2:  # byte-level damage to the pickle
        records[i] = (records[i][0], rng.choice(GENERIC)(rng, pkl))
    elif op == 3:  # small integers (sizes, strides, offsets, numels) changed
        spots = [m.start() + 1 for m in re.finditer(rb"K", pkl)]
        if spots:
            at = rng.choice(spots)
            pkl = pkl[:at] + bytes([rng.choice([0, 1, 2, 3, 7, 100, 255])]) + pkl[at + 1:]
        records[i] = (records[i][0], pkl)
    elif op == 4:
        old, new = rng.choice(_PKL_EDITS)
        records[i] = (records[i][0], pkl.replace(old, new, 1))
    elif op == 5:  # a storage record resized or changed
        data_records = [j for j, n in enumerate(names) if "/data/" in n]
        j = rng.choice(data_records)
        payload = records[j][1]
        records[j] = (names[j], rng.choice([payload[:-1], payload + b"\x00" * 4, payload[::-1], b"", payload * 2]))
    elif op == 6:
        j = names.index(f"{prefix}/byteorder") if f"{prefix}/byteorder" in names else i
        records[j] = (names[j], rng.choice([b"big", b"BIG", b"", b"little\n"]))
    else:  # rename or drop a record
        j = rng.randrange(len(records))
        if rng.random() < 0.5:
            del records[j]
        else:
            records[j] = (rng.choice([f"{prefix}/data/9", f"{prefix}/data/0", f"other/{names[j]}", names[j] + "x"]),
                          records[j][1])
    return _zip(records)


PT: list[Mutation] = [pt_crc, pt_crc, pt_rezip, pt_rezip, pt_rezip]
FORMAT_MUTATIONS = {".wts": WTS, ".safetensors": SAFETENSORS, ".pt": PT}


# ---- running cases ----------------------------------------------------------------------------------
def outcome(path: str, ext: str, data: bytes, from_model: bool) -> tuple[str, str]:
    """(kind, detail) for one mutated file already written at `path`. Kinds ending in '!' fail."""
    import netdef
    from netdef.weights import load

    try:
        expected = REFERENCE[ext](data)
    except Invalid:
        expected = None
    try:
        got = load(path)
    except netdef.WeightsError as exc:
        return _judge_error(path, exc, "error", expected is not None)
    except BaseException as exc:  # noqa: BLE001 - any other type is what the fuzzer looks for
        if isinstance(exc, (KeyboardInterrupt, _Alarm)):
            raise
        return f"{type(exc).__name__}!", str(exc)[:300]
    if expected is None:
        return "loaded-invalid!", f"the reference rejects this file, netdef loaded {len(got)} tensors"
    if not same(dict(got), expected):
        return "silently-wrong!", _difference(dict(got), expected)
    if not from_model:
        return "loaded", ""
    model = netdef_model()
    slots = {k: np.asarray(v) for k, v in model.state_dict().items()}
    try:
        fit = ref_fit(expected, slots, flat=ext == ".wts")
    except Invalid:
        fit = None
    try:
        model.load_state_dict(got)
    except netdef.WeightsError as exc:
        return _judge_error(path, exc, "fit-error", fit is not None)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (KeyboardInterrupt, _Alarm)):
            raise
        return f"fit-{type(exc).__name__}!", str(exc)[:300]
    if fit is None:
        return "fit-invalid!", "the reference refuses these weights for the model, netdef stored them"
    stored = {k: np.asarray(v) for k, v in model.state_dict().items()}
    if not same(stored, fit):
        return "fit-silently-wrong!", _difference(stored, fit)
    return "loaded+fit", ""


def _judge_error(path: str, exc: Exception, kind: str, reference_accepts: bool) -> tuple[str, str]:
    message = str(exc)
    if path not in message:
        return f"{kind}-names-no-file!", message[:300]
    if len(message) > MESSAGE_CHARS + len(path):
        return f"{kind}-too-long!", f"{len(message)} characters: {message[:200]}"
    return (f"{kind} (reference accepts)" if reference_accepts else kind), message[:300]


def _difference(got: dict, want: dict) -> str:
    if list(got) != list(want):
        return f"keys {list(got)[:5]} vs the reference's {list(want)[:5]}"
    for key in got:
        a, b = np.asarray(got[key]), np.asarray(want[key])
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            return (f"{key!r}: {a.dtype}{a.shape} {a.reshape(-1)[:4]} vs the reference's "
                    f"{b.dtype}{b.shape} {b.reshape(-1)[:4]}")
    return "?"


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm()


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_case(rng: random.Random, seeds: list) -> tuple[str, str, bytes, bool, str]:
    name, ext, data, from_model = rng.choice(seeds)
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutation = rng.choice(GENERIC + FORMAT_MUTATIONS[ext] * 2)
        try:
            data = mutation(rng, data)
        except Exception:  # noqa: BLE001 - e.g. a header an earlier mutation nested too deeply to parse
            break  # an earlier mutation left nothing this one can parse: keep what we have
        names.append(mutation.__name__)
    return name, ext, data, from_model, "+".join(names)


def run(seed: int, cases: int | None, seconds: float | None, workdir: str, replay: int | None = None,
        report: Callable[[dict], None] = print) -> dict:
    """Run cases (in this process) and return the outcome counts; failures are reported as they occur."""
    import netdef  # noqa: F401 - imported before the memory limit, like torch

    seeds = make_seeds(workdir)
    signal.signal(signal.SIGALRM, _on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _status("VmSize") + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    can_measure = _reset_peak()
    counts: collections.Counter = collections.Counter()
    by_format: collections.Counter = collections.Counter()
    start, index = time.monotonic(), 0
    try:
        while (cases is None or index < cases) and (seconds is None or time.monotonic() - start < seconds):
            rng = random.Random(f"{seed}:{index}")
            case = make_case(rng, seeds)
            if replay is None or replay == index:
                name, ext, data, from_model, what = case
                path = os.path.join(workdir, f"case{ext}")
                with open(path, "wb") as f:
                    f.write(data)
                can_measure and _reset_peak()
                base = _status("VmRSS")
                signal.alarm(CASE_SECONDS)
                try:
                    kind, detail = outcome(path, ext, data, from_model)
                except _Alarm:
                    kind, detail = "hang!", f"over {CASE_SECONDS} s"
                finally:
                    signal.alarm(0)
                grown = (_status("VmHWM") - base) >> 20 if can_measure else 0
                if grown > MEMORY_MB and not kind.endswith("!"):
                    kind, detail = "memory!", f"peak RSS grew {grown} MiB for a {len(data):,}-byte file"
                counts[kind] += 1
                by_format[f"{ext} {'loaded' if kind.startswith('loaded') else kind.split(' ')[0]}"] += 1
                if kind.endswith("!") or "reference accepts" in kind or replay is not None:
                    report({"case": index, "seed": seed, "file": name, "mutation": what, "kind": kind,
                            "detail": detail, "bytes": len(data)})
            index += 1
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"seed": seed, "cases": sum(counts.values()), "seconds": round(time.monotonic() - start, 1),
            "outcomes": dict(sorted(counts.items())), "by_format": dict(sorted(by_format.items()))}


def run_child(seed: int, cases: int | None = None, seconds: float | None = None,
              timeout: float = 600) -> tuple[dict, list[dict]]:
    """Run the fuzzer in a fresh interpreter (a crash or hang there cannot take the caller down)."""
    args = [sys.executable, os.path.abspath(__file__), "--seed", str(seed), "--json"]
    args += ["--cases", str(cases)] if cases is not None else ["--seconds", str(seconds)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failures = [x for x in lines if x.get("kind", "").endswith("!")]
    summary = next((x for x in lines if "outcomes" in x), None)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"the fuzzer process died (exit {proc.returncode}) after "
                           f"{failures[-1] if failures else 'no failure'}:\n{proc.stderr[-3000:]}")
    return summary, failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--cases", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="default: 60 unless --cases is given")
    ap.add_argument("--replay", type=int, default=None, help="run only this case index and keep its file")
    ap.add_argument("--out", default=None, help="directory for the case file (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="one JSON line per failure and a summary line")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    seconds = args.seconds if args.seconds is not None or args.cases is not None else 60
    cases = args.cases if args.replay is None else args.replay + 1
    with (contextlib.nullcontext(args.out) if args.out else tempfile.TemporaryDirectory()) as workdir:
        os.makedirs(workdir, exist_ok=True)
        summary = run(seed, cases, seconds, workdir, args.replay,
                      report=lambda x: print(json.dumps(x) if args.json else x, flush=True))
    print(json.dumps(summary) if args.json else summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
