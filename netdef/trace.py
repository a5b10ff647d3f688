"""trace(): run a model's forward on symbolic inputs, producing a Network."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from netdef import dtypes
from netdef.errors import TraceError
from netdef.functional._core import cast
from netdef.network import Input, Network, check_shared_dims
from netdef.nn.module import Module, _tensors
from netdef.tensor import Tensor


def trace(model: Module | Callable[..., Any], *inputs: Input, dtype: Any = "float32",
          output_names: Sequence[str] | None = None, output_dtype: Any = None,
          name: str | None = None, dtype_overrides: dict[str, Any] | None = None) -> Network:
    """Build the TensorRT network that `model(*inputs)` describes.

    `dtype` is the compute precision: floating inputs are cast to it at the
    boundary and weights are stored in it; outputs are cast back to the
    inputs' dtype (or `output_dtype`). Layers are named after module paths.
    """
    if not inputs:
        raise TraceError("trace() needs at least one netdef.Input(name, shape)")
    for inp in inputs:
        if not isinstance(inp, Input):
            raise TraceError(f"trace() inputs must be netdef.Input, got {type(inp).__name__}")
    check_shared_dims(inputs)
    if isinstance(model, Module):
        for path, m in model.named_modules():
            object.__setattr__(m, "_netdef_path", path)
    net = Network(name or type(model).__name__, dtype)
    if dtype_overrides:
        net.dtype_overrides = {k: dtypes.name(v) for k, v in dtype_overrides.items()}
    caller_dtype = next((i.dtype for i in inputs if dtypes.is_floating(i.dtype)), "float32")
    out_dtype = dtypes.name(output_dtype) if output_dtype is not None else caller_dtype
    try:
        _trace_into(net, model, inputs, output_names, out_dtype)
    except TraceError as exc:
        exc.network = net  # the partial network, so compare() can still localize the fault
        raise
    return net


def _trace_into(net: Network, model: Any, inputs: Sequence[Input], output_names: Sequence[str] | None,
                out_dtype: str) -> None:
    with net:
        args = []
        for inp in inputs:
            itensor = net.network.add_input(inp.name, dtypes.to_trt(inp.dtype), inp.trt_shape)
            net.inputs.append(inp)
            x = Tensor(itensor)
            if dtypes.is_floating(inp.dtype):
                x = cast(x, net.dtype)
            args.append(x)
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
        for t, oname in zip(outs, output_names):
            if dtypes.is_floating(t.dtype):
                t = cast(t, out_dtype)
            net.mark_output(t, oname)
