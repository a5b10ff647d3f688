"""PyTorch-named weights from `.wts`, safetensors, `.pt`/`.pth` or an in-memory state_dict.

`load` gives every source the same shape: a `StateDict` of numpy arrays (ml_dtypes
for bfloat16/float8) keyed by torch names, ready for `Module.load_state_dict`.
`save` writes `.wts` or safetensors atomically; `convert` is `netdef export`.
Only `.pt`/`.pth` need torch, and it is imported only when such a file is read.
"""
from __future__ import annotations

import os
import stat
from collections import Counter
from typing import Any, Mapping

import numpy as np

from netdef.errors import WeightsError, shown
from netdef.fileio import atomic_file
from netdef.arrays import numpy_to_torch, to_numpy
from netdef.nn.module import Parameter
from netdef.weights import safetensors as _safetensors
from netdef.weights import sharded as _sharded
from netdef.weights import torchfile as _torchfile
from netdef.weights import wts as _wts

__all__ = ["StateDict", "convert", "load", "save", "to_torch"]

READ_FORMATS = (".wts", ".safetensors", ".pt", ".pth")  # and .safetensors.index.json (sharded)
WRITE_FORMATS = (".wts", ".safetensors")


class StateDict(dict):
    """name -> numpy array, remembering where it came from.

    `flat` is True for .wts, which stores no shapes or dtypes: `Module.load_state_dict`
    then reshapes flat arrays and accepts whole floats for integer buffers.
    `nested_key` is the checkpoint entry the state_dict was taken from (e.g. "state_dict").
    """

    def __init__(self, data: Mapping[str, np.ndarray] | None = None, source: str | None = None,
                 flat: bool = False, nested_key: str | None = None) -> None:
        super().__init__(data or {})
        self.source = source
        self.flat = flat
        self.nested_key = nested_key

    def __repr__(self) -> str:
        where = f" from {self.source!r}" if self.source else ""
        nested = f"[{self.nested_key!r}]" if self.nested_key else ""
        return f"StateDict({len(self)} tensors{where}{nested}{', flat' if self.flat else ''})"


def load(src: str | os.PathLike | Mapping[str, Any]) -> StateDict:
    """Read a weights file (by extension) or take a state_dict mapping as is."""
    if isinstance(src, StateDict):
        return src
    if isinstance(src, Mapping):
        state, key = _state_dict_of(src, "the given state_dict")
        return StateDict(_arrays(state, "state_dict"), nested_key=key)
    if not isinstance(src, (str, os.PathLike)):
        hint = "; pass model.state_dict()" if hasattr(src, "state_dict") else ""
        raise WeightsError(f"load() takes a weights file path or a state_dict, "
                           f"got {type(src).__name__}{hint}")
    path = os.fspath(src)
    sharded = path.lower().endswith(_sharded.INDEX_SUFFIX)  # Hugging Face's sharded safetensors
    ext = os.path.splitext(path)[1].lower()
    if ext not in READ_FORMATS and not sharded:
        raise WeightsError(f"{path}: unknown weights format {ext or '(no extension)'!r}; "
                           f"netdef reads {', '.join(READ_FORMATS)}")
    _check_regular(path)
    if sharded:
        return StateDict(_sharded.read_index(path), source=path)
    if ext == ".wts":
        return StateDict(_wts.read(path), source=path, flat=True)
    if ext == ".safetensors":
        return StateDict(_safetensors.read(path), source=path)
    state, key = _state_dict_of(_torchfile.read(path), path)
    return StateDict(_arrays(state, path), source=path, nested_key=key)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _check_regular(path: str) -> None:
    """A weights path must name a regular file: reading a FIFO would block, a device never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightsError(f"weights file {path!r} not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise WeightsError(f"cannot read weights file {path!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise WeightsError(f"weights file {path!r} is {what}, not a regular file")


def save(state_dict: Mapping[str, Any], path: str | os.PathLike, *, wts_variant: str = "double") -> str:
    """Write `.wts` or `.safetensors` (by extension) atomically: the file is complete or absent.

    wts_variant: "double" (gen_wts.py's `name N  hex`), "single" (`name N hex`) or
    "0x" (python hex(): `0x`-prefixed, unpadded); every variant stores float32.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITE_FORMATS:
        raise WeightsError(f"{path}: cannot write {ext or '(no extension)'!r}; "
                           f"netdef writes {' and '.join(WRITE_FORMATS)}")
    if wts_variant not in _wts.VARIANTS:
        raise WeightsError(f"wts_variant={wts_variant!r} is not one of {', '.join(_wts.VARIANTS)}")
    arrays = load(state_dict) if isinstance(state_dict, Mapping) else None
    if arrays is None:
        hint = "; pass model.state_dict()" if hasattr(state_dict, "state_dict") else ""
        raise WeightsError(f"save() takes a state_dict mapping, got {type(state_dict).__name__}{hint}")
    try:
        with atomic_file(path) as f:
            if ext == ".wts":
                _wts.write(f, arrays, wts_variant)
            else:
                _safetensors.write(f, arrays)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except OSError as exc:
        raise WeightsError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    return path


def convert(src: str | os.PathLike | Mapping[str, Any], dst: str | os.PathLike, *,
            wts_variant: str = "double") -> dict[str, Any]:
    """Load `src` and write it as `dst`'s format (`netdef export`); returns what was written."""
    state = load(src)
    path = save(state, dst, wts_variant=wts_variant)
    return {
        "src": state.source,
        "dst": path,
        "format": os.path.splitext(path)[1][1:].lower(),
        "tensors": len(state),
        "values": int(sum(a.size for a in state.values())),
        "bytes": os.path.getsize(path),
        "dtypes": dict(Counter(a.dtype.name for a in state.values())),
        "nested_key": state.nested_key,
        "flat": state.flat,
    }


def to_torch(state: Mapping[str, Any], like: Mapping[str, Any]) -> dict:
    """`state` as torch tensors shaped and typed like the torch state_dict `like`, to load
    the same weights into a torch original. Flat .wts arrays take their entry's shape;
    a size that does not fit is a WeightsError naming the key. Keys `like` lacks are kept
    as they are, so torch's own load_state_dict reports them."""
    source = getattr(state, "source", None)
    out = {}
    for key, value in state.items():
        tensor = numpy_to_torch(to_numpy(value))
        ref = like.get(key)
        if ref is not None:
            if tuple(tensor.shape) != tuple(ref.shape):
                if tensor.numel() != ref.numel():
                    raise WeightsError(f"{source or 'state_dict'}: {shown(key)} has shape {tuple(tensor.shape)} but "
                                       f"the torch model's is {tuple(ref.shape)}")
                tensor = tensor.reshape(ref.shape)
            tensor = tensor.to(ref.dtype)
        out[key] = tensor
    return out

def _is_array(value: Any) -> bool:
    return (isinstance(value, (np.ndarray, Parameter))
            or (type(value).__module__.startswith("torch") and hasattr(value, "detach")))


def _state_dict_of(obj: Any, where: str) -> tuple[Mapping[str, Any], str | None]:
    """The state_dict in `obj`: obj itself, or its single entry that is one (a checkpoint)."""
    if not isinstance(obj, Mapping):
        hint = "; save model.state_dict() instead" if hasattr(obj, "state_dict") else ""
        raise WeightsError(f"{where} is not a state_dict: got a value of type {type(obj).__name__}{hint}")
    if all(_is_array(v) for v in obj.values()):
        return obj, None
    nested = [k for k, v in obj.items()
              if isinstance(v, Mapping) and v and all(_is_array(x) for x in v.values())]
    if len(nested) == 1:
        return obj[nested[0]], str(nested[0])
    if nested:
        raise WeightsError(f"{where} is a checkpoint holding several state_dicts "
                           f"({', '.join(map(shown, nested[:8]))}{', ...' if len(nested) > 8 else ''}); pick one "
                           f"and load it, e.g. netdef.weights.load(checkpoint[{shown(nested[0])}])")
    bad = next(k for k, v in obj.items() if not _is_array(v))
    raise WeightsError(f"{where} is not a state_dict: key {shown(bad)} holds a value of type "
                       f"{type(obj[bad]).__name__}, not a tensor, and no entry of it is a state_dict")


def _arrays(state: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"{where}: key {shown(key)} is a {type(key).__name__}, not a string")
        try:
            arr = to_numpy(value)
        except Exception as exc:  # noqa: BLE001 - e.g. a torch dtype numpy cannot hold
            raise WeightsError(f"{where}: key {shown(key)}: cannot convert {type(value).__name__} "
                               f"to a numpy array ({str(exc)[:200]})") from None
        if arr.dtype.kind not in "biufcV":
            raise WeightsError(f"{where}: key {shown(key)} holds {arr.dtype} data, not numbers")
        out[key] = arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    return out
