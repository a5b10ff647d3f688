"""`Module` and `Parameter`: torch.nn's module tree, state_dict naming and loading.

Parameters hold numpy arrays (no torch needed). Calling a module while a
Network is active pushes its qualified name, so every layer its forward adds is
named after the module path, and records its outputs for layer-by-layer compare.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from netdef import dtypes, network
from netdef.arrays import to_numpy
from netdef.errors import NetdefError, StateDictError, shown
from netdef.nn.init import Lazy


class Parameter:
    """A named weight: a numpy array that becomes TensorRT Weights when traced."""

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        self._lazy: Lazy | None = data if isinstance(data, Lazy) else None
        self._data: np.ndarray | None = None
        if self._lazy is None:
            self.data = np.empty(0, np.float32) if data is None else to_numpy(data)
        self.requires_grad = requires_grad

    @property
    def data(self) -> np.ndarray:
        if self._data is None:  # a default value, made on first read (see nn.init.Lazy)
            self._data, self._lazy = self._lazy.materialize(), None
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        arr = np.asarray(value)
        self._data, self._lazy = (arr.astype(np.float32) if arr.dtype == np.float64 else arr), None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._lazy.shape if self._data is None else tuple(self._data.shape)

    @property
    def dtype(self) -> str:
        return dtypes.name(self._lazy.dtype if self._data is None else self._data.dtype)

    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _fit(value: Any, target: Any, flat_source: bool) -> np.ndarray:
    """Shape/dtype check of one loaded value against the model's Parameter or buffer array;
    returns the array to store."""
    arr = to_numpy(value)
    want = tuple(target.shape)
    if tuple(arr.shape) != want:
        if flat_source and arr.ndim == 1 and arr.size == int(np.prod(want, dtype=np.int64)):
            arr = arr.reshape(want)  # .wts stores no shapes
        else:
            raise ValueError(f"shape {tuple(arr.shape)} does not match the model's {want}")
    src, dst = dtypes.name(arr.dtype), dtypes.name(target.dtype)
    if src != dst:
        if dtypes.is_floating(src) and dtypes.is_floating(dst):
            arr = arr.astype(dtypes.to_numpy(dst))
        elif flat_source and dtypes.is_floating(src) and not dtypes.is_floating(dst):
            arr = _whole(arr, dtypes.to_numpy(dst))  # .wts writes integer buffers as floats
        else:
            raise ValueError(f"dtype {src} does not fit the model's {dst}")
    return arr


def _whole(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Floats that must be whole numbers in `dtype`'s range, as `dtype` (never a wrapped value)."""
    if dtype.kind == "b":
        lo, hi = 0.0, 2.0
    else:
        info = np.iinfo(dtype)
        lo, hi = float(info.min), 2.0 ** (info.bits - (info.min < 0))  # exact in float64; hi excluded
    wide = arr.astype(np.float64)
    with np.errstate(invalid="ignore"):
        whole = np.all(np.mod(wide, 1) == 0)
    if not whole:
        raise ValueError(f"holds values that are not whole numbers (or NaN/inf), but the model's is {dtype.name}")
    if wide.size and not (wide.min() >= lo and wide.max() < hi):
        raise ValueError(f"holds {_extreme(wide, lo, hi)}, outside the range of the model's {dtype.name}")
    return wide.astype(dtype)


def _extreme(wide: np.ndarray, lo: float, hi: float) -> str:
    bad = wide[(wide < lo) | (wide >= hi)]
    return f"{bad.size} value(s) such as {bad.flat[0]:.6g}"


_LIST_ALL = 8  # key lists up to this long are printed whole; longer ones are grouped by prefix
_GROUPS = 6
_MISMATCHES = 10


def _load_error(model: "Module", source: str | None, missing: list[str], unexpected: list[str],
                problems: dict[str, str], n_model: int, n_file: int) -> StateDictError:
    """One readable message (grouped keys, a verdict, a hint) on an error that keeps every key."""
    head = f"cannot load state_dict{f' from {source}' if source else ''} into {type(model).__name__}"
    fitting = n_model - len(missing) - len(problems)
    if missing and fitting < n_model / 2:
        extra = f", and it has {len(unexpected)} keys the model lacks" if unexpected else ""
        head += (f": it looks like a different model (only {fitting} of the model's {n_model} keys are in "
                 f"the state_dict with a fitting shape{extra}). " + _mismatch_hint(model, missing, unexpected))
    lines = [head + ("" if head.endswith(".") else ":")]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_key_summary(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_key_summary(unexpected)}")
    if problems:
        lines.append(f"  mismatched entries ({len(problems)}):")
        lines.extend(f"    {_cap(k)}: {why}" for k, why in list(problems.items())[:_MISMATCHES])
        if len(problems) > _MISMATCHES:
            lines.append(f"    ... and {len(problems) - _MISMATCHES} more")
    if len(missing) > _LIST_ALL or len(unexpected) > _LIST_ALL or len(problems) > _MISMATCHES:
        lines.append("  (every key: the error's missing_keys, unexpected_keys and mismatched attributes)")
    return StateDictError("\n".join(lines), missing, unexpected, problems, source)


def _cap(key: str) -> str:
    return key if len(key) <= 80 else shown(key)


def _key_summary(keys: list[str]) -> str:
    """All keys when few; otherwise the prefixes they share (with counts) and the first few keys."""
    if len(keys) <= _LIST_ALL:
        return ", ".join(_cap(k) for k in keys)
    depth = 1
    while True:  # the shallowest prefix depth that splits the keys into several groups
        groups: dict[str, list[str]] = {}
        for k in keys:
            parts = k.split(".", depth)
            groups.setdefault(".".join(parts[:depth]) + (".*" if len(parts) > depth else ""), []).append(k)
        if len(groups) > 1 or not next(iter(groups)).endswith(".*"):
            break
        depth += 1
    shown_groups = [f"{_cap(g)} ({len(ks)})" if len(ks) > 1 else _cap(ks[0])
                    for g, ks in list(groups.items())[:_GROUPS]]
    more = f", ... ({len(groups) - _GROUPS} more groups)" if len(groups) > _GROUPS else ""
    return f"{', '.join(shown_groups)}{more}; first: {', '.join(_cap(k) for k in keys[:3])}, ..."


def _mismatch_hint(model: "Module", missing: list[str], unexpected: list[str]) -> str:
    """Why most keys differ, when a prefix explains it; otherwise which check to make."""
    prefix = _shared_prefix(unexpected, missing)
    if prefix:
        return (f"The state_dict's keys start with {shown(prefix)} (a wrapper such as DataParallel "
                f"or a checkpoint's model attribute): load "
                f"{{k.removeprefix({shown(prefix)}): v for k, v in state_dict.items()}} instead.")
    prefix = _shared_prefix(missing, unexpected)
    if prefix:
        return (f"The model's keys start with {shown(prefix)} but the state_dict's do not: load it into "
                f"that submodule (model.{prefix[:-1]}.load_state_dict(...)) instead.")
    return (f"Check that the weights were saved from the same architecture and variant as "
            f"{type(model).__name__} (e.g. resnet50 weights for resnet50, the same number of classes).")


def _shared_prefix(longer: list[str], shorter: list[str]) -> str | None:
    """A prefix p such that p + k is in `longer` for most keys k of `shorter`, if there is one."""
    want = set(shorter)
    for key in shorter[:3]:
        for candidate in longer:
            if candidate.endswith("." + key):
                p = candidate[:len(candidate) - len(key)]
                if sum(k.startswith(p) and k[len(p):] in want for k in longer) > len(want) / 2:
                    return p
                break
    return None


class Module:
    """Base class of netdef modules, mirroring torch.nn.Module's tree API."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", False)
        object.__setattr__(self, "_netdef_path", None)

    # ---- attribute routing -------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ "
                                 f"before assigning {name!r}")
        if isinstance(value, Parameter):
            self._buffers.pop(name, None)
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters and value is None:
            self._parameters[name] = None
        elif name in self._buffers:
            self._buffers[name] = None if value is None else to_numpy(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        for key in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(key)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters[name] = None
        else:
            self.__setattr__(name, param)

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        self._buffers[name] = None if tensor is None else to_numpy(tensor)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    register_module = add_module

    # ---- traversal ------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if remove_duplicate and id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _named_members(self, attr: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, attr).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{mprefix}.{name}" if mprefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- state dict -------------------------------------------------------------
    def _state_slots(self) -> Iterator[tuple[str, Module, str, str]]:
        """(full key, owner module, kind, local name) for every persistent entry, in torch's order."""
        for mprefix, m in self.named_modules(remove_duplicate=False):
            for name, p in m._parameters.items():
                if p is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), m, "_parameters", name
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    yield (f"{mprefix}.{name}" if mprefix else name), m, "_buffers", name

    def state_dict(self, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Any]":
        out = OrderedDict() if destination is None else destination
        for key, m, kind, name in self._state_slots():
            v = getattr(m, kind)[name]
            out[prefix + key] = v if keep_vars or kind == "_buffers" else v.data
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Load by torch name; all problems are reported at once (strict) or returned."""
        flat = bool(getattr(state_dict, "flat", False))
        source = getattr(state_dict, "source", None)
        slots = {key: (m, kind, name) for key, m, kind, name in self._state_slots()}
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        problems: dict[str, str] = {}
        fitted = {}
        for key, (m, kind, name) in slots.items():
            if key not in state_dict:
                continue
            try:
                fitted[key] = _fit(state_dict[key], getattr(m, kind)[name], flat)
            except (ValueError, TypeError) as exc:  # TypeError: a dtype TensorRT has no type for
                problems[key] = str(exc)
        if (strict and (missing or unexpected)) or problems:
            raise _load_error(self, source, missing if strict else [], unexpected if strict else [],
                              problems, len(slots), len(state_dict))
        for key, arr in fitted.items():
            m, kind, name = slots[key]
            if kind == "_parameters":
                m._parameters[name].data = arr
            else:
                m._buffers[name] = arr
        return IncompatibleKeys(missing, unexpected)

    # ---- torch compatibility -------------------------------------------------
    def eval(self) -> "Module":
        return self

    def train(self, mode: bool = True) -> "Module":
        if mode:
            raise NotImplementedError("netdef modules describe inference networks; train() is not supported")
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        return self

    # ---- tracing ------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        net = network.current()
        path = self._netdef_path
        if path is None:  # a module created outside the traced tree, e.g. inside forward()
            base = type(self).__name__.lower()
            path = f"{net.scope}.{base}" if net.scope else base
        if path:
            net.module_inputs.setdefault(path, []).append([t.trt.name for t in _tensors(args)])
        override = net.dtype_overrides.get(path)
        with net.module_scope(path), net.compute_dtype(override):
            if override is not None:  # per-module precision: cast in, compute, cast back out
                args = tuple(_cast_floating(a, override) for a in args)
            try:
                result = self.forward(*args, **kwargs)
            except NetdefError:
                raise
            except Exception as exc:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"while tracing module '{path}' ({type(self).__name__})")
                raise
            if override is not None:
                outer = net.dtype_stack_outer()

                def cast_back(t: Any) -> Any:
                    back = _cast_floating(t, outer)
                    if back is not t:  # remembered, so a float32 head can feed the output directly
                        net.override_casts[id(back)] = (back, t)
                    return back
                result = _map_tensors(result, cast_back)
        if path:
            net.finish_module(path, list(_tensors(result)))
        return result

    # ---- printing -----------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _tensors(obj: Any) -> Iterator[Any]:
    from netdef.tensor import Tensor

    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _map_tensors(obj: Any, fn: Any) -> Any:
    from netdef.tensor import Tensor

    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _cast_floating(obj: Any, dtype: str) -> Any:
    from netdef.functional._core import cast
    from netdef.tensor import Tensor

    if isinstance(obj, Tensor) and dtypes.is_floating(obj.dtype):
        return cast(obj, dtype)
    return obj
