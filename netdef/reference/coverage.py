"""Layer configurations: which semantics of the reference runner a network relies on.

A *configuration* is a layer type plus the attributes that select different semantics in its
reference builder (netdef/reference/layers/*.py): max or average pooling, uneven padding,
padding excluded from the average, a transposed convolution whose padding crops the output,
a cast from float to int, a matrix multiply with a vector operand, the float16/bfloat16
rounding of a layer's output, ... Values that only parametrize the same formula (kernel
sizes, channel counts, epsilons) are not part of it.

`configurations(network)` reads any INetworkDefinition (or netdef.Network) through TensorRT's
API only, so configurations of networks netdef emits and of networks NVIDIA's ONNX parser
makes are comparable: tests/test_reference_coverage.py checks that every configuration the
shipped models emit also occurs in a parser-made network the runner reproduces against an
oracle netdef did not write (docs/reference.md, "Coverage").
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from netdef import backend, dtypes
from netdef.arrays import weights_array
from netdef.reference.layers.attention import _causal_kind
from netdef.reference.registry import bits, input_or_none

__all__ = ["Config", "configuration", "configurations"]


class Config(NamedTuple):
    """(layer type, ((attribute, value), ...)); str() is the compact form the docs show."""

    kind: str
    attrs: tuple

    def __str__(self) -> str:
        inner = ", ".join(v if k in _BARE else f"{k}={v}" for k, v in self.attrs)
        return f"{self.kind}({inner})" if inner else self.kind


_BARE = ("op", "mode", "kind", "dtype")  # attributes shown by value only


# ---- readers of what TensorRT holds ----------------------------------------------------------------
_SPELLING = {"float8_e4m3fn": "float8"}  # the coverage table's (docs/reference.md) spelling


def _dt(t: Any) -> str:
    if t is None:
        return "-"
    try:
        d = dtypes.name(t.dtype)
    except TypeError:  # a TensorRT type netdef has no name for (INT4, FP4, ...)
        return t.dtype.name.lower()
    return _SPELLING.get(d, d)


def _precision(layer: Any) -> str:
    """The dtype a computing layer rounds its output to (float32, float16, bfloat16), or its
    integer/bool dtype: the float16/bfloat16 rounding policy is a configuration of its own."""
    return _dt(layer.get_output(0))


def _padding(pre: Any, post: Any) -> str:
    pre, post = tuple(pre), tuple(post)
    if not any(pre) and not any(post):
        return "none"
    return "symmetric" if pre == post else "uneven"


def _groups(layer: Any) -> str:
    g = layer.num_groups
    if g == 1:
        return "1"
    c_in = layer.get_input(0).shape[-len(layer.kernel_size_nd) - 1]
    return "depthwise" if g == c_in == layer.num_output_maps else "grouped"


def _operand(layer: Any, i: int, weights: Any) -> str:
    if input_or_none(layer, i) is not None:
        return "input"  # a kernel fed by a tensor (e.g. the DEQUANTIZE of int8 Q/DQ)
    return "weights" if weights is not None and weights.size else "none"


def _conv(layer: Any) -> dict:
    return {
        "nd": f"{len(layer.kernel_size_nd)}d",
        "groups": _groups(layer),
        "stride": "1" if all(s == 1 for s in layer.stride_nd) else ">1",
        "dilation": "1" if all(d == 1 for d in layer.dilation_nd) else ">1",
        "padding": _padding(layer.pre_padding, layer.post_padding),
        "padding_mode": layer.padding_mode.name,
        "kernel": _operand(layer, 1, layer.kernel),
        "bias": _operand(layer, 2, layer.bias),
        "dtype": _precision(layer),
    }


def _deconv(layer: Any) -> dict:
    out = _conv(layer)
    # in a transposed convolution, padding crops the full output (docs/reference.md)
    out["padding"] = {"none": "none", "symmetric": "crops", "uneven": "crops unevenly"}[out["padding"]]
    return out


def _pooling(layer: Any) -> dict:
    op = layer.type.name  # after downcast, `type` is the PoolingType
    padding = _padding(layer.pre_padding, layer.post_padding)
    out = {"op": op, "nd": f"{len(layer.window_size_nd)}d", "padding": padding,
           "padding_mode": layer.padding_mode.name}
    if op != "MAX" and (padding != "none" or layer.padding_mode.name != "EXPLICIT_ROUND_DOWN"):
        out["count"] = "excludes padding" if layer.average_count_excludes_padding else "includes padding"
    out["dtype"] = _precision(layer)
    return out


def _acts(w: Any, neutral: float) -> bool:
    """Whether scale-layer weights do something (empty, or all equal to the neutral value, do not)."""
    arr = weights_array(w)
    return arr is not None and not bool(np.all(arr.astype(np.float32) == neutral))


def _scale(layer: Any) -> dict:
    # (x * scale + shift) ^ power: an all-ones power (netdef's BatchNorm) is the same semantics as none
    parts = "+".join(n for n, neutral in (("scale", 1), ("shift", 0), ("power", 1))
                     if _acts(getattr(layer, n), neutral))
    out = {"mode": layer.mode.name, "weights": parts or "none"}
    if layer.mode.name != "UNIFORM":
        rank = len(layer.get_input(0).shape)
        out["channel_axis"] = str(layer.channel_axis % rank if rank else 0)
    out["dtype"] = _precision(layer)
    return out


def _broadcast(layer: Any, inputs: range) -> str:
    shapes = {tuple(layer.get_input(i).shape) for i in inputs}
    return "broadcast" if len(shapes) > 1 else "same shape"


def _matmul(layer: Any) -> dict:
    a, b = (tuple(layer.get_input(i).shape) for i in (0, 1))
    lead = (a[:-2] if layer.op0.name != "VECTOR" else a[:-1], b[:-2] if layer.op1.name != "VECTOR" else b[:-1])
    return {"op0": layer.op0.name, "op1": layer.op1.name,
            "batch": "broadcast" if lead[0] != lead[1] else "same", "dtype": _precision(layer)}


def _shuffle(layer: Any) -> dict:
    rank_in, rank_out = len(layer.get_input(0).shape), len(layer.get_output(0).shape)
    first = tuple(layer.first_transpose)[:rank_in] != tuple(range(rank_in))
    second = tuple(layer.second_transpose)[:rank_out] != tuple(range(rank_out))
    if input_or_none(layer, 1) is not None:
        reshape = "input"
    elif layer.reshape_dims is None:
        reshape = "none"
    else:
        dims = tuple(layer.reshape_dims)
        reshape = "static, 0 copies" if layer.zero_is_placeholder and 0 in dims else "static"
    return {"first_transpose": str(first).lower(), "reshape": reshape, "second_transpose": str(second).lower()}


def _slice(layer: Any) -> dict:
    dynamic = [n for i, n in ((1, "start"), (2, "size"), (3, "stride"), (5, "axes"))
               if input_or_none(layer, i) is not None]
    out = {"mode": layer.mode.name, "inputs": "+".join(dynamic) or "static"}
    if input_or_none(layer, 3) is None:
        out["stride"] = "1" if all(s == 1 for s in layer.stride) else "other"
    return out


def _resize(layer: Any) -> dict:
    mode = layer.resize_mode.name
    out = {"mode": mode, "transform": layer.coordinate_transformation.name}
    if mode == "NEAREST":
        out["rounding"] = layer.nearest_rounding.name
    if mode == "CUBIC":
        out["cubic_coeff"] = f"{layer.cubic_coeff:g}"
        out["exclude_outside"] = str(bool(layer.exclude_outside)).lower()
    out["selector"] = layer.selector_for_single_pixel.name
    size = input_or_none(layer, 1)
    out["size"] = ("scales input" if dtypes.is_floating(size.dtype) else "shape input") if size is not None else \
        ("scales" if len(layer.scales) else "shape")
    out["dtype"] = _precision(layer)
    return out


def _qdq(layer: Any, value: Any) -> dict:
    scale = layer.get_input(1)
    rank = len(scale.shape)
    if rank == 0 or all(d == 1 for d in scale.shape):
        granularity = "per-tensor"
    else:
        granularity = "per-channel" if rank == 1 else "block"
    return {"granularity": granularity, "zero_point": "yes" if input_or_none(layer, 2) is not None else "no",
            "dtype": f"{_dt(layer.get_input(0))}->{_dt(value)}"}


def _cast(layer: Any) -> dict:
    src, dst = _dt(layer.get_input(0)), _dt(layer.get_output(0))
    return {"dtype": src if src == dst else f"{src}->{dst}"}


def _normalization(layer: Any) -> dict:
    rank = len(layer.get_input(0).shape)
    axes = bits(layer.axes, rank)
    over = "last axis" if axes == [rank - 1] else ("spatial axes" if axes == list(range(2, rank)) else
                                                  ",".join(map(str, axes)))
    return {"over": over, "groups": "1" if layer.num_groups == 1 else ">1", "dtype": _precision(layer)}


def _op(attr: str, dtype: bool = True) -> Callable[[Any], dict]:
    def read(layer: Any) -> dict:
        out = {"op": getattr(layer, attr).name}
        if dtype:
            out["dtype"] = _precision(layer)
        return out
    return read


def _elementwise(layer: Any) -> dict:
    # comparisons give bool: the operands' dtype selects the semantics (integer DIV truncates)
    return {"op": layer.op.name, "shapes": _broadcast(layer, range(2)), "dtype": _dt(layer.get_input(0))}


def _dtype_only(layer: Any) -> dict:
    return {"dtype": _precision(layer)}


def _attention(layer: Any) -> dict:
    """ATTENTION_INPUT computes the attention (reference/layers/attention.py): the causal kind, the
    mask (a bool mask selects keys, a floating one is added to the scores), grouped-query heads
    and key/value lengths select different code."""
    att = layer.attention
    mask = input_or_none(layer, 3)
    heads = [tuple(layer.get_input(i).shape)[1] for i in (0, 1)]
    out = {"norm": att.norm_op.name, "causal": _causal_kind(att),
           "mask": "none" if mask is None else ("bool" if _dt(mask) == "bool" else "added"),
           "heads": "same" if heads[0] == heads[1] else "grouped"}
    if input_or_none(layer, 6) is not None:
        out["kv_lengths"] = "input"
    out["dtype"] = _dt(layer.get_input(0))
    return out


def _rotary(layer: Any) -> dict:
    dim, d = layer.rotary_embedding_dim, tuple(layer.get_input(0).shape)[-1]
    return {"interleaved": str(bool(layer.interleaved)).lower(),
            "rotated": "all" if dim in (0, d) else "part",
            "positions": "input" if input_or_none(layer, 3) is not None else "none", "dtype": _precision(layer)}


def _nms(layer: Any) -> dict:
    """The candidates' dtype (IoU and scores are computed in it), not the indices' int32/int64."""
    boxes = layer.get_input(0)
    return {"box_format": layer.bounding_box_format.name,
            "boxes": "per class" if len(boxes.shape) == 4 else "shared", "dtype": _dt(boxes)}


# layer type -> reader of its key attributes; a type not listed is one configuration per output dtype
_READERS: dict[str, Callable[[Any], dict]] = {
    "ACTIVATION": lambda la: {"op": la.type.name, "dtype": _precision(la)},  # `type`: the ActivationType
    "CONVOLUTION": _conv,
    "DECONVOLUTION": _deconv,
    "POOLING": _pooling,
    "SCALE": _scale,
    "ELEMENTWISE": _elementwise,
    "UNARY": _op("op"),
    "REDUCE": lambda la: {"op": la.op.name, "keep_dims": str(la.keep_dims).lower(), "dtype": _precision(la)},
    "MATRIX_MULTIPLY": _matmul,
    "SHUFFLE": _shuffle,
    "SLICE": _slice,
    "RESIZE": _resize,
    "QUANTIZE": lambda la: _qdq(la, la.get_output(0)),
    "DEQUANTIZE": lambda la: _qdq(la, la.get_output(0)),
    "CAST": _cast,
    "IDENTITY": _cast,
    "NORMALIZATION": _normalization,
    "GATHER": lambda la: {"mode": la.mode.name, "elementwise_dims": str(la.num_elementwise_dims)},
    "SCATTER": lambda la: {"mode": la.mode.name},
    "TOPK": lambda la: {"op": la.op.name, "k": "input" if input_or_none(la, 1) is not None else "static"},
    "CUMULATIVE": lambda la: {"exclusive": str(la.exclusive).lower(), "reverse": str(la.reverse).lower()},
    "FILL": lambda la: {"op": la.operation.name},
    "PADDING": lambda la: {"pads": "crops" if any(p < 0 for p in (*la.pre_padding_nd, *la.post_padding_nd))
                           else "zeros"},
    "CONSTANT": _dtype_only,
    "SOFTMAX": _dtype_only,
    "PARAMETRIC_RELU": _dtype_only,
    "EINSUM": _dtype_only,
    "LRN": _dtype_only,
    "ATTENTION_INPUT": _attention,
    "ROTARY_EMBEDDING": _rotary,
    "KV_CACHE_UPDATE": lambda la: {"mode": la.cache_mode.name, "dtype": _precision(la)},
    "NMS": _nms,
    "TRIP_LIMIT": lambda la: {"kind": la.kind.name},
    "ITERATOR": lambda la: {"reverse": str(bool(la.reverse)).lower(), "dtype": _precision(la)},
    "LOOP_OUTPUT": lambda la: {"kind": la.kind.name, "dtype": _precision(la)},
    "GRID_SAMPLE": lambda la: {"mode": la.interpolation_mode.name, "sample": la.sample_mode.name,
                               "align_corners": str(la.align_corners).lower(), "dtype": _precision(la)},
    # data movement: values are copied, so neither attributes nor dtype change the semantics
    "CONCATENATION": lambda la: {},
    "SHAPE": lambda la: {},
    "SQUEEZE": lambda la: {},
    "UNSQUEEZE": lambda la: {},
    "SELECT": lambda la: {},
    "ASSERTION": lambda la: {},
    "ONE_HOT": lambda la: {},
    "NON_ZERO": lambda la: {},
}


def configuration(layer: Any) -> Config:
    """The configuration of one ILayer (read through TensorRT's API only)."""
    kind = layer.type.name  # read before downcast: activation/pooling shadow `type`
    read = _READERS.get(kind)
    layer = backend.downcast(layer)
    attrs = read(layer) if read is not None else {"dtype": _dt(layer.get_output(0)) if layer.num_outputs else "-"}
    return Config(kind, tuple(attrs.items()))


def configurations(net: Any) -> set[Config]:
    """The set of configurations of a netdef.Network or a TensorRT INetworkDefinition."""
    network = getattr(net, "network", net)
    return {configuration(network.get_layer(i)) for i in range(network.num_layers)}
