"""trace(): run a model's forward on symbolic inputs, producing a Network."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Sequence

from netdef import dtypes, quantize
from netdef.errors import TraceError
from netdef.functional._core import cast
from netdef.network import Input, Network, check_shared_dims
from netdef.nn.module import Module, _map_tensors, _tensors
from netdef.tensor import Tensor

_COMPUTE_DTYPES = ("float32", "float16", "bfloat16")


def trace(model: Module | Callable[..., Any], *inputs: Input, dtype: Any = "float32",
          output_names: Sequence[str] | None = None, output_dtype: Any = None,
          name: str | None = None, dtype_overrides: dict[str, Any] | None = None,
          quantization: quantize.QuantConfig | None = None) -> Network:
    """Build the TensorRT network that `model(*inputs)` describes.

    `dtype` is the compute precision: floating inputs are cast to it at the
    boundary and weights are stored in it; outputs are cast back to the
    inputs' dtype (or `output_dtype`). Layers are named after module paths.
    `dtype_overrides` {module path: dtype} computes a subtree in another floating
    dtype (cast in, cast back out); `quantization` (a netdef.quantize.QuantConfig)
    puts Q/DQ layers on the conv/linear ops of the modules it names.
    """
    if not inputs:
        raise TraceError("trace() needs at least one netdef.Input(name, shape)")
    for inp in inputs:
        if not isinstance(inp, Input):
            raise TraceError(f"trace() inputs must be netdef.Input, got {type(inp).__name__}")
    check_shared_dims(inputs)
    if quantization is not None and not isinstance(quantization, quantize.QuantConfig):
        raise TraceError("quantization must be a netdef.quantize.QuantConfig, "
                         f"got {type(quantization).__name__}")
    overrides = {path: dtypes.name(dt) for path, dt in (dtype_overrides or {}).items()}
    for path, dt in overrides.items():
        if dt not in _COMPUTE_DTYPES:
            raise TraceError(f"dtype_overrides[{path!r}] = {dt!r}: a module computes in float32, float16 or "
                             "bfloat16 (8-bit types come from Q/DQ layers: netdef.quantize)")
    if isinstance(model, Module):
        paths = {}
        for path, m in model.named_modules():
            object.__setattr__(m, "_netdef_path", path)
            paths[path] = m
        _check_paths(model, paths, overrides, "dtype_overrides")
        _check_paths(model, paths, quantization.scales if quantization else (), "the quantization config")
    net = Network(name or type(model).__name__, dtype)
    net.dtype_overrides = overrides
    net.quantization = quantization  # read by netdef.quantize.operands in conv/linear ops
    caller_dtype = next((i.dtype for i in inputs if dtypes.is_floating(i.dtype)), "float32")
    out_dtype = dtypes.name(output_dtype) if output_dtype is not None else caller_dtype
    try:
        _trace_into(net, model, inputs, output_names, out_dtype)
    except TraceError as exc:
        exc.network = net  # the partial network, so compare() can still localize the fault
        raise
    quantize.check_applied(net)
    return net


def _check_paths(model: Module, paths: dict[str, Module], keys: Iterable[str], what: str) -> None:
    """Every module path `what` names must exist in `model` (a typo would silently do nothing)."""
    for key in keys:
        if key not in paths:
            near = sorted(p for p in paths if p and (p.endswith(key) or key.endswith(p)))[:3]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise TraceError(f"{what} names module {key!r}, which {type(model).__name__} does not have{hint}")


def _trace_into(net: Network, model: Any, inputs: Sequence[Input], output_names: Sequence[str] | None,
                out_dtype: str) -> None:
    with net:
        args = []
        for inp in inputs:
            x = Tensor(net.add_input(inp))
            if dtypes.is_floating(inp.dtype):
                x = cast(x, net.dtype)
            args.append(x)
        _check_arity(model, inputs)
        result = model(*args)
        outs = list(_tensors(result))
        if not outs:
            raise TraceError(f"{type(model).__name__}.forward returned no netdef Tensor "
                             f"(got {type(result).__name__})")
        if isinstance(result, dict) and output_names is None:
            output_names = list(result)
        if output_names is None:
            output_names = ["output"] if len(outs) == 1 else [f"output{i}" for i in range(len(outs))]
        if len(output_names) != len(outs):
            raise TraceError(f"{len(output_names)} output names given for {len(outs)} outputs")
        taken = {i.name for i in inputs}
        for oname in output_names:  # TensorRT names tensors uniquely: an output cannot share a name
            if not isinstance(oname, str) or not oname:
                raise TraceError(f"output names are non-empty strings, got {oname!r}")
            if oname in taken:
                what = "an input" if oname in {i.name for i in inputs} else "another output"
                raise TraceError(f"output name {oname!r} is also the name of {what}; give it another name")
            taken.add(oname)
        for t, oname in zip(outs, output_names):
            if dtypes.is_floating(t.dtype):
                t = cast(_before_override_cast(net, t, out_dtype), out_dtype)
            net.mark_output(t, oname)
        names = iter(output_names)
        net.output_tree = _map_tensors(result, lambda _t: next(names))  # compare matches outputs by structure


def _check_arity(model: Any, inputs: Sequence[Input]) -> None:
    """More or fewer Inputs than forward takes is the caller's mistake, not a TypeError deep in forward."""
    fn = model.forward if isinstance(model, Module) else model
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    try:
        sig.bind(*inputs)
    except TypeError as exc:
        what = f"{type(model).__name__}.forward" if isinstance(model, Module) else getattr(model, "__name__", "model")
        raise TraceError(f"{what}({', '.join(sig.parameters)}) cannot take the {len(inputs)} input(s) "
                         f"{', '.join(repr(i.name) for i in inputs)}: {exc}") from None


def _before_override_cast(net: Network, t: Tensor, dtype: str) -> Tensor:
    """The tensor a dtype-override module computed, if `t` is its cast back to the outer dtype and
    the network output wants `dtype` anyway: a float32 head in a float16 network must not be
    rounded (or overflow) through float16 on its way to a float32 output."""
    cast, src = net.override_casts.get(id(t), (None, None))
    return src if cast is t and src.dtype == dtype else t
