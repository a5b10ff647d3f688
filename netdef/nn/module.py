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
from netdef.errors import NetdefError, WeightsError
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
        elif flat_source and not dtypes.is_floating(dst) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(dtypes.to_numpy(dst))  # .wts writes integer buffers as floats
        else:
            raise ValueError(f"dtype {src} does not fit the model's {dst}")
    return arr


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
        problems, fitted = [], {}
        for key, (m, kind, name) in slots.items():
            if key not in state_dict:
                continue
            try:
                fitted[key] = _fit(state_dict[key], getattr(m, kind)[name], flat)
            except (ValueError, TypeError) as exc:  # TypeError: a dtype TensorRT has no type for
                problems.append(f"  {key}: {exc}")
        if strict and (missing or unexpected or problems):
            lines = [f"cannot load state_dict{f' from {source}' if source else ''} into "
                     f"{type(self).__name__}:"]
            if missing:
                lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
            if unexpected:
                lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
            if problems:
                lines.append("  mismatched entries:")
                lines.extend("  " + p for p in problems)
            raise WeightsError("\n".join(lines))
        if problems:
            raise WeightsError(f"cannot load state_dict{f' from {source}' if source else ''}:\n"
                               + "\n".join(problems))
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
