"""Human-readable views of a network (read back through TensorRT's API) and of a saved plan."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from netdef import backend, dtypes
from netdef.plan import load_plan

# ILayer's own properties; everything else a concrete layer class exposes is its configuration
_BASE = {"name", "type", "num_inputs", "num_outputs", "precision", "precision_is_set", "metadata",
         "reset_precision", "get_input", "get_output", "set_input", "get_output_type",
         "set_output_type", "output_type_is_set", "reset_output_type", "set_precision", "num_ranks"}


def layer_attributes(layer: Any) -> dict[str, Any]:
    """Every readable configuration property of a layer's concrete class."""
    layer = backend.downcast(layer)
    attrs = {}
    if type(layer).type is not backend.trt().ILayer.type:  # activation/pooling type, e.g. RELU
        attrs["type"] = layer.type
    for name in dir(type(layer)):
        if name.startswith("_") or name in _BASE:
            continue
        if not isinstance(getattr(type(layer), name, None), property):
            continue
        try:
            attrs[name] = getattr(layer, name)
        except Exception:  # noqa: BLE001 - some properties only apply in some modes
            continue
    return attrs


def _weights_info(value: Any) -> tuple[str, int] | None:
    """(dtype name, bytes) of a layer's weights, which the bindings return as Weights or numpy."""
    t = backend.trt()
    if isinstance(value, t.Weights):
        return dtypes.name(value.dtype), value.size * dtypes.to_numpy(value.dtype).itemsize
    if isinstance(value, np.ndarray):
        return str(value.dtype), value.nbytes
    return None


def _fmt(value: Any) -> str:
    t = backend.trt()
    info = _weights_info(value)
    if info is not None:
        n = value.size
        return f"<weights {info[0]} x{n} ({info[1]:,} B)>"
    if isinstance(value, t.Dims) or isinstance(value, tuple):
        return str(tuple(value))
    if isinstance(value, (t.ILoop, t.IIfConditional)):  # a boundary layer's loop or conditional, by name
        return f"<{type(value).__name__} {value.name!r}>"
    return str(value).replace("\n", " ")


def weight_bytes(attrs: dict[str, Any]) -> int:
    """Bytes of the weights among a layer's attributes (from layer_attributes)."""
    return sum(info[1] for info in map(_weights_info, attrs.values()) if info)


def describe_network(net: Any, calls: bool = False) -> str:
    """One line per layer: index, name, type, inputs -> output shapes/dtypes, weight bytes."""
    network = getattr(net, "network", net)
    lines = [f"network {network.name!r}: {network.num_layers} layers"]
    for i in range(network.num_inputs):
        x = network.get_input(i)
        lines.append(f"  input  {x.name}: {dtypes.name(x.dtype)} {tuple(x.shape)}")
    total = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = layer.type.name  # before downcast: activation/pooling layers shadow `type`
        ins = [layer.get_input(j).name for j in range(layer.num_inputs) if layer.get_input(j) is not None]
        outs = [f"{dtypes.name(layer.get_output(j).dtype)}{tuple(layer.get_output(j).shape)}"
                for j in range(layer.num_outputs)]
        attrs = layer_attributes(layer)
        wb = weight_bytes(attrs)
        total += wb
        lines.append(f"  [{i:3d}] {layer.name:<32} {kind:<16} ({', '.join(ins)}) -> "
                     f"{', '.join(outs)}" + (f"  weights {wb:,} B" if wb else ""))
        if calls:
            for k, v in attrs.items():
                lines.append(f"          .{k} = {_fmt(v)}")
    for i in range(network.num_outputs):
        x = network.get_output(i)
        lines.append(f"  output {x.name}: {dtypes.name(x.dtype)} {tuple(x.shape)}")
    lines.append(f"weights: {total:,} bytes")
    return "\n".join(lines)


def describe_plan(path: str) -> str:
    """A saved plan's size and sidecar metadata (reading layers back needs a GPU to deserialize)."""
    plan = load_plan(path)  # a malformed plan or sidecar is an EngineError naming the file
    lines = [f"{path}: {len(plan):,} bytes"]
    if not plan.metadata:
        header = plan.header
        built = (f"; its header says {header.backend} {header.version}" if header is not None
                 else "; its header is not one netdef reads (classic TensorRT?)")
        lines.append(f"  no sidecar ({os.path.basename(path)}.json): built outside netdef{built}")
    else:
        lines.append(json.dumps(plan.metadata, indent=2))
    return "\n".join(lines)
