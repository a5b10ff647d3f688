"""Raw TensorRT code for a network: a standalone script that rebuilds the same INetworkDefinition.

`python(net)` reads a network back through TensorRT's API only (layers, attributes, weights,
tensor names, loops, conditionals and attention objects), so it works for any
INetworkDefinition, not just the ones netdef makes, and writes the `network.add_*` calls that
rebuild it: one commented block per module (the module path is read from the layer names
netdef gives, or from `Network.module_layers`), every layer and tensor named as in the
original, and the weights in a safetensors file beside the script. The script imports only
TensorRT and numpy: it is the raw-API twin of a netdef model, for learning the API and for
leaving netdef.

The script follows Polygraphy's network-script convention (`load_network()` returns
`(builder, network)`: `polygraphy run net.py --model-type=trt-network-script` on classic
TensorRT) and runs on its own (`python net.py --engine net.engine`). It picks its backend when
it runs, the way netdef.backend does (classic `tensorrt` first, then `tensorrt_rtx`;
`NETDEF_BACKEND` forces one), so one script serves both; calls exist in both backends except
where the network needs a layer one lacks (IAttention: TensorRT-RTX and classic >= 11).
"""
from __future__ import annotations

import hashlib
import json
import keyword
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from netdef import __version__, backend, dtypes
from netdef.arrays import weights_array
from netdef.errors import NetdefError
from netdef.fileio import atomic_file

__all__ = ["CodegenError", "Script", "python"]


class CodegenError(NetdefError):
    """A network holds something the generator cannot write as raw API calls; names the layer."""


@dataclass
class Script:
    """A generated network script: `source` (Python) and `weights` {key: array} it reads from
    `weights_file`, a path relative to the script's folder."""

    source: str
    weights: dict[str, np.ndarray]
    weights_file: str
    layers: int = 0
    modules: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.source

    def save(self, path: str | os.PathLike) -> tuple[str, str]:
        """Write the script to `path` and its weights beside it (`weights_file`), each atomically;
        returns both paths."""
        from netdef import weights as nd_weights

        path = os.path.abspath(os.fspath(path))
        weights_path = os.path.join(os.path.dirname(path), self.weights_file)
        if os.path.abspath(weights_path) == path:
            raise CodegenError(f"the script {path} and its weights file would be the same file")
        nd_weights.save(self.weights, weights_path)
        with atomic_file(path) as f:
            f.write(self.source.encode())
        os.chmod(path, 0o755)
        return path, weights_path


def python(net: Any, weights_file: str = "weights.safetensors", profiles: dict | None = None) -> Script:
    """The raw-API script that rebuilds `net` (a netdef.Network or an INetworkDefinition).

    weights_file: where the script reads its weights, relative to its own folder (Script.save
    writes it there). profiles: {input name: (min, opt, max) shapes} for dynamic inputs, which an
    INetworkDefinition does not hold; taken from a netdef.Network's Inputs by default.
    """
    network = getattr(net, "network", net)
    if not isinstance(network, backend.trt().INetworkDefinition):
        raise CodegenError(f"codegen.python takes a netdef.Network or an INetworkDefinition, "
                           f"got {type(net).__name__}")
    if profiles is None:
        profiles = {i.name: (i.min_shape, i.opt_shape, i.max_shape) for i in getattr(net, "inputs", ())}
    owner = {}
    for path, names in getattr(net, "module_layers", {}).items():
        for name in names:
            owner[name] = path
    return _Generator(network, owner, profiles, weights_file).script()


# ---- rendering values as Python source ----------------------------------------------------------
_DATATYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
              "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "fp8", "INT4": "int4", "FP4": "fp4",
              "E8M0": "e8m0"}


def _float(v: float) -> str:
    """A float literal: the shortest one that gives the same float32 where the value is a float32
    (most TensorRT attributes are), else Python's exact repr."""
    v = float(v)
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    if float(np.float32(v)) == v:
        short = str(np.float32(v))
        if np.float32(float(short)) == np.float32(v):
            return short
    return repr(v)


def _render(v: Any) -> str:
    t = backend.trt()
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, t.DataType):
        return f"trt.{_DATATYPES[v.name]}"
    if hasattr(v, "name") and type(v).__module__.startswith("tensorrt") and hasattr(type(v), "__members__"):
        return f"trt.{type(v).__name__}.{v.name}"
    if isinstance(v, (int, np.integer)):
        return repr(int(v))
    if isinstance(v, (float, np.floating)):
        return _float(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON's escapes are Python's too
    if isinstance(v, (t.Dims, tuple, list)) or (hasattr(v, "__len__") and hasattr(v, "__getitem__")):
        items = [_render(x) for x in v]
        if isinstance(v, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    raise CodegenError(f"cannot write the value {v!r} ({type(v).__name__}) as Python")


_INLINE = 8  # constants of at most this many values are written in the script, not the weights file
_LITERALS = {"float32": np.float32, "float16": np.float16, "int32": int, "int64": int, "int8": int, "uint8": int,
             "bool": bool}


def _literal(arr: np.ndarray) -> str:
    """A flat list literal that gives back exactly `arr`'s values in its dtype."""
    def one(v: Any) -> str:
        if arr.dtype.kind == "f":
            if not np.isfinite(v):
                return _float(float(v))
            short = str(v)  # numpy's shortest repr that reads back as the same value of this dtype
            return short if arr.dtype.type(float(short)) == v else repr(float(v))
        return repr(_LITERALS[arr.dtype.name](v))
    return f"[{', '.join(one(v) for v in arr.reshape(-1))}]"


def _mask(mask: int) -> str:
    """An axes bitmask as the bits it sets: `1 << 3`, `1 << 2 | 1 << 3`."""
    bits = [b for b in range(64) if mask >> b & 1]
    return " | ".join(f"1 << {b}" for b in bits) if bits else "0"


def _dims(v: Any) -> tuple:
    return tuple(int(d) for d in v)


_RESERVED = {"trt", "np", "network", "layer", "weights", "array", "named", "define", "builder", "float", "os", "sys",
             "json", "struct", "mmap", "argparse", "importlib", "attention", "main", "load_network",
             "build_engine", "read_safetensors", "print", "tuple", "int", "range", "len", "None"}


def _module_of(name: str) -> str:
    """The module path a netdef layer name starts with: 'layer1.0.conv1/weight' -> 'layer1.0.conv1',
    'layer1.0.relu#1' -> 'layer1.0.relu'."""
    return re.sub(r"#\d+$", "", name.split("/", 1)[0])


# ---- the generator -------------------------------------------------------------------------------
@dataclass
class _Call:
    """How one layer is made: the constructing expression, which of its inputs the constructor
    takes (the others are `set_input` calls), and the attribute lines that follow."""

    expr: str
    consumed: tuple[int, ...]
    attrs: list[str] = field(default_factory=list)


class _Generator:
    def __init__(self, network: Any, owner: dict[str, str], profiles: dict, weights_file: str) -> None:
        self.network = network
        self.owner = owner
        self.profiles = profiles
        self.weights_file = weights_file
        self.lines: list[str] = []
        self.vars: dict[str, str] = {}  # tensor name -> Python variable
        self.used: set[str] = set(_RESERVED)
        self.weights: dict[str, np.ndarray] = {}
        self._digests: dict[tuple, str] = {}
        self.pending: dict[str, list[str]] = {}  # tensor name -> set_input lines waiting for it
        self.owners: list[tuple[Any, str]] = []  # (ILoop or IIfConditional, its variable)
        self.modules: list[str] = []
        self.index = 0  # of the layer being written

    # ---- names ---------------------------------------------------------------------------------
    def new_var(self, name: str, suffix: str = "") -> str:
        base = re.sub(r"\W", "_", name).strip("_") or "t"
        base = re.sub(r"_+", "_", base) + suffix
        if base[0].isdigit():
            base = "t_" + base
        if keyword.iskeyword(base) or base in self.used:
            i = 1
            while f"{base}_{i}" in self.used:
                i += 1
            base = f"{base}_{i}"
        self.used.add(base)
        return base

    def ref(self, tensor: Any, layer: Any) -> str:
        var = self.vars.get(tensor.name)
        if var is None:
            raise CodegenError(f"layer {layer.name!r} reads tensor {tensor.name!r} in its constructor before any "
                               "layer makes it (the network was rewired with set_input); codegen cannot order it")
        return var

    def weight(self, layer: Any, what: str, value: Any, shape: tuple | None = None, inline: bool = False) -> str:
        """`weights("key")` for a layer's weights (stored once however many layers use them), an
        empty `trt.Weights(dtype)`, or with `inline`, `array([...], "dtype")` for a few values."""
        try:
            arr = weights_array(value)
        except NetdefError as exc:
            raise CodegenError(f"layer {layer.name!r}: {exc}") from None
        if arr is None:
            dtype = getattr(value, "dtype", None)
            if isinstance(dtype, np.dtype):
                dtype = dtypes.to_trt(dtype)
            return f"trt.Weights({_render(dtype)})" if dtype is not None else "trt.Weights()"
        if inline and arr.size <= _INLINE and arr.dtype.name in _LITERALS:
            return f"array({_literal(arr)}, {_render(arr.dtype.name)})"
        if shape is not None and int(np.prod(shape)) == arr.size:
            arr = arr.reshape(shape)
        digest = (arr.dtype.str, arr.shape, hashlib.sha1(memoryview(np.ascontiguousarray(arr).view(np.uint8))).digest())
        key = self._digests.get(digest)
        if key is None:
            key = f"{layer.name}.{what}" if what else layer.name
            while key in self.weights:
                key += "_"
            self.weights[key] = arr
            self._digests[digest] = key
        return f"weights({_render(key)})"

    # ---- the script ----------------------------------------------------------------------------
    def script(self) -> Script:
        n = self.network
        for i in range(n.num_inputs):
            x = n.get_input(i)
            var = self.vars[x.name] = self.new_var(x.name)
            self.lines.append(f"{var} = network.add_input({_render(x.name)}, {_render(x.dtype)}, {_render(_dims(x.shape))})")
        current = None
        for i in range(n.num_layers):
            layer = n.get_layer(i)
            kind = layer.type.name  # before downcast: activation/pooling layers shadow `type`
            module = self.owner.get(layer.name, _module_of(layer.name))
            if module != current and kind != "ATTENTION_OUTPUT":  # made by its ATTENTION_INPUT
                current = module
                self.modules.append(module)
                self.lines.append("")
                self.lines.append(f"# ---- {module or 'top level'} ----")
            self.index = i
            self.layer(kind, backend.downcast(layer))
        if self.pending:
            name = next(iter(self.pending))
            raise CodegenError(f"tensor {name!r} is read by a layer but made by none")
        self.lines.append("")
        for i in range(n.num_outputs):
            out = n.get_output(i)
            self.lines.append(f"network.mark_output({self.vars[out.name]})")
        return Script(self.render(), self.weights, self.weights_file, n.num_layers, self.modules)

    def layer(self, kind: str, layer: Any) -> None:
        emit = _EMITTERS.get(kind)
        if emit is None:
            raise CodegenError(f"layer {layer.name!r} has type {kind}, which netdef.codegen cannot write "
                               f"(supported: {', '.join(sorted(_EMITTERS))})")
        call = emit(self, layer)
        if call is None:  # written by another layer (ATTENTION_OUTPUT by its ATTENTION_INPUT)
            return
        target = "layer"
        self.lines.append(f"{target} = {call.expr}")
        self.lines.extend(call.attrs)
        deferred = []
        for j in range(layer.num_inputs):
            x = layer.get_input(j)
            if x is None or j in call.consumed:
                continue
            if x.name in self.vars:
                self.lines.append(f"{target}.set_input({j}, {self.vars[x.name]})")
            else:
                deferred.append((j, x.name))
        if layer.metadata:
            self.lines.append(f"{target}.metadata = {_render(layer.metadata)}")
        self.name_outputs(layer, target)
        if deferred:  # read before it is made (a loop's recurrence): wired once its producer exists
            keep = self.new_var(layer.name, "_layer")
            self.lines.append(f"{keep} = {target}  # its input {', '.join(str(j) for j, _ in deferred)} is made below")
            for j, name in deferred:
                self.pending.setdefault(name, []).append(f"{keep}.set_input({j}, {{}})")

    def name_outputs(self, layer: Any, target: str) -> None:
        """`y = named(layer, "name")`, with explicit tensor names where they differ from the layer's."""
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        names = [o.name for o in outs]
        default = [layer.name] if len(outs) == 1 else [f"{layer.name}:{j}" for j in range(len(outs))]
        extra = "" if names == default else "".join(f", {_render(n)}" for n in names)
        call = f"named({target}, {_render(layer.name)}{extra})"
        if not outs:
            self.lines.append(call)
            return
        vs = [self.new_var(n) for n in names]
        self.lines.append(f"{', '.join(vs)} = {call}")
        for n, v in zip(names, vs):
            self.vars[n] = v
            for line in self.pending.pop(n, ()):
                self.lines.append(line.format(v))

    def owner_var(self, obj: Any, make: Callable[[str], list[str]], name: str, suffix: str) -> str:
        """The variable of a loop or conditional, created on first sight. The bindings give one
        Python object per TensorRT object while it is referenced, so the objects are kept here."""
        for kept, var in self.owners:
            if kept is obj:
                return var
        var = self.new_var(name, suffix)
        self.owners.append((obj, var))
        self.lines.extend(make(var))
        return var

    def render(self) -> str:
        n = self.network
        body = "\n".join(("    " + line) if line else "" for line in self.lines)
        profiles = {}
        for i in range(n.num_inputs):
            x = n.get_input(i)
            if x.name in self.profiles:
                profiles[x.name] = tuple(_dims(s) for s in self.profiles[x.name])
            elif all(d >= 0 for d in x.shape):
                profiles[x.name] = (_dims(x.shape),) * 3
        prof = "".join(f"\n    {_render(k)}: {_render(v)}," for k, v in profiles.items())
        return _TEMPLATE.format(
            name=_render(n.name), version=__version__, backend=f"{backend.name()} {backend.version()}",
            layers=n.num_layers, weights_file=_render(self.weights_file), profiles=prof + "\n" if prof else "",
            body=body, network_name=_render(n.name))


# ---- one emitter per layer type ------------------------------------------------------------------
def _set(layer: Any, attr: str, default: Any, render: Callable[[Any], str] = _render) -> list[str]:
    """`layer.attr = value`, only where the value differs from what the constructor leaves
    (`default`, or a function of the backend module giving it)."""
    value = getattr(layer, attr)
    if callable(default):
        default = default(backend.trt())
    if value is None or render(value) == render(default):
        return []
    return [f"layer.{attr} = {render(value)}"]


def _padding(layer: Any, nd: int, pre_attr: str = "pre_padding", post_attr: str = "post_padding",
             both: str = "padding_nd") -> list[str]:
    pre, post = _dims(getattr(layer, pre_attr)), _dims(getattr(layer, post_attr))
    if pre == post:
        return [] if not any(pre) else [f"layer.{both} = {_render(pre)}"]
    return [f"layer.{pre_attr} = {_render(pre)}", f"layer.{post_attr} = {_render(post)}"]


def _conv(g: _Generator, layer: Any, kind: str) -> _Call:
    x = g.ref(layer.get_input(0), layer)
    k = _dims(layer.kernel_size_nd)
    nd = len(k)
    ones = (1,) * nd
    kernel_shape = None
    if layer.get_input(0).shape is not None and len(layer.get_input(0).shape) >= nd + 1:
        c_in = layer.get_input(0).shape[-nd - 1]
        if c_in > 0:
            per = c_in // layer.num_groups
            kernel_shape = (layer.num_output_maps, per, *k) if kind == "convolution" else (c_in, layer.num_output_maps // layer.num_groups, *k)
    kernel = g.weight(layer, "kernel", layer.kernel, kernel_shape)
    bias = g.weight(layer, "bias", layer.bias)
    args = [x, str(layer.num_output_maps), _render(k), kernel] + ([] if bias.startswith("trt.Weights(") else [bias])
    attrs = (_set(layer, "stride_nd", ones) + _padding(layer, nd) + _set(layer, "dilation_nd", ones)
             + _set(layer, "num_groups", 1) + _set(layer, "padding_mode", backend.trt().PaddingMode.EXPLICIT_ROUND_DOWN))
    return _Call(f"network.add_{kind}_nd({', '.join(args)})", (0,), attrs)


def _pooling(g: _Generator, layer: Any) -> _Call:
    t = backend.trt()
    window = _dims(layer.window_size_nd)
    ones = (1,) * len(window)
    attrs = (_set(layer, "stride_nd", ones) + _padding(layer, len(window))
             + _set(layer, "padding_mode", t.PaddingMode.EXPLICIT_ROUND_DOWN)
             + _set(layer, "average_count_excludes_padding", True) + _set(layer, "blend_factor", 0.0))
    return _Call(f"network.add_pooling_nd({g.ref(layer.get_input(0), layer)}, {_render(layer.type)}, "
                 f"{_render(window)})", (0,), attrs)


# alpha/beta an activation layer starts with (read from TensorRT-RTX 1.7 and checked by the tests)
_ACTIVATION_DEFAULTS = {"LEAKY_RELU": (0.01, 0.0), "ELU": (1.0, 0.0), "HARD_SIGMOID": (0.2, 0.5),
                        "CLIP": (-3.4028234663852886e38, 3.4028234663852886e38)}


def _activation(g: _Generator, layer: Any) -> _Call:
    alpha, beta = _ACTIVATION_DEFAULTS.get(layer.type.name, (0.0, 0.0))
    return _Call(f"network.add_activation({g.ref(layer.get_input(0), layer)}, {_render(layer.type)})", (0,),
                 _set(layer, "alpha", alpha) + _set(layer, "beta", beta))


def _scale(g: _Generator, layer: Any) -> _Call:
    ws = [g.weight(layer, w, getattr(layer, w)) for w in ("shift", "scale", "power")]
    ws = ["None" if w.startswith("trt.Weights(") else w for w in ws]
    return _Call(f"network.add_scale_nd({g.ref(layer.get_input(0), layer)}, {_render(layer.mode)}, {ws[0]}, "
                 f"{ws[1]}, {ws[2]}, {layer.channel_axis})", (0,))


def _simple(method: str, n_inputs: int, *args: Callable[[Any], str],
            attrs: Sequence[tuple[str, Any]] = ()) -> Callable[[_Generator, Any], _Call]:
    """A layer whose constructor takes its first `n_inputs` inputs, then `args` read from it."""
    def emit(g: _Generator, layer: Any) -> _Call:
        ins = [g.ref(layer.get_input(j), layer) for j in range(n_inputs)]
        extra = [a(layer) for a in args]
        lines = [line for attr, default in attrs for line in _set(layer, attr, default)]
        return _Call(f"network.{method}({', '.join(ins + extra)})", tuple(range(n_inputs)), lines)
    return emit


def _present(layer: Any, n: int) -> int:
    """How many of the first `n` inputs are set (optional trailing inputs may be absent)."""
    while n and (n > layer.num_inputs or layer.get_input(n - 1) is None):
        n -= 1
    return n


def _attr(name: str, render: Callable[[Any], str] = _render) -> Callable[[Any], str]:
    return lambda layer: render(getattr(layer, name))


def _concatenation(g: _Generator, layer: Any) -> _Call:
    ins = [g.ref(layer.get_input(j), layer) for j in range(layer.num_inputs)]
    return _Call(f"network.add_concatenation([{', '.join(ins)}])", tuple(range(layer.num_inputs)),
                 [f"layer.axis = {layer.axis}"])


def _einsum(g: _Generator, layer: Any) -> _Call:
    ins = [g.ref(layer.get_input(j), layer) for j in range(layer.num_inputs)]
    return _Call(f"network.add_einsum([{', '.join(ins)}], {_render(layer.equation)})", tuple(range(layer.num_inputs)))


def _constant(g: _Generator, layer: Any) -> _Call:
    shape = _dims(layer.shape)
    return _Call(f"network.add_constant({_render(shape)}, {g.weight(layer, '', layer.weights, shape, inline=True)})", ())


def _permutation(layer: Any, attr: str, rank: int) -> list[str]:
    """A shuffle's transpose: the first `rank` entries where that reproduces all eight (setting a
    shorter permutation zero-fills the rest; an untouched one is the identity)."""
    full = _dims(getattr(layer, attr))
    if full == tuple(range(len(full))):
        return []
    shown = full[:rank] if full[rank:] == (0,) * (len(full) - rank) else full
    return [f"layer.{attr} = {_render(shown)}"]


def _rank(tensor: Any) -> int:
    """A tensor's rank, or 8 (TensorRT's maximum) where TensorRT cannot tell its shape."""
    try:
        return len(tensor.shape)
    except RuntimeError:
        return 8


def _shuffle(g: _Generator, layer: Any) -> _Call:
    attrs = _permutation(layer, "first_transpose", _rank(layer.get_input(0)))
    attrs += _set(layer, "zero_is_placeholder", True)
    shape_input = layer.num_inputs > 1 and layer.get_input(1) is not None
    if not shape_input and layer.reshape_dims is not None:
        attrs.append(f"layer.reshape_dims = {_render(_dims(layer.reshape_dims))}")
    attrs += _permutation(layer, "second_transpose", _rank(layer.get_output(0)))
    return _Call(f"network.add_shuffle({g.ref(layer.get_input(0), layer)})", (0,), attrs)


def _slice(g: _Generator, layer: Any) -> _Call:
    def dims(name: str) -> tuple:
        value = getattr(layer, name)
        return _dims(value) if value is not None else ()
    start, shape, stride = dims("start"), dims("shape"), dims("stride")
    n = max(len(start), len(shape), len(stride))
    start, shape, stride = (v or (0,) * n for v in (start, shape, stride))
    attrs = _set(layer, "mode", backend.trt().SampleMode.STRICT_BOUNDS)
    if layer.axes is not None:
        attrs.append(f"layer.axes = {_render(_dims(layer.axes))}")
    return _Call(f"network.add_slice({g.ref(layer.get_input(0), layer)}, {_render(start)}, {_render(shape)}, "
                 f"{_render(stride)})", (0,), attrs)


def _resize(g: _Generator, layer: Any) -> _Call:
    t = backend.trt()
    attrs = (_set(layer, "resize_mode", t.InterpolationMode.NEAREST)
             + _set(layer, "coordinate_transformation", t.ResizeCoordinateTransformation.ASYMMETRIC)
             + _set(layer, "nearest_rounding", t.ResizeRoundMode.FLOOR)
             + _set(layer, "selector_for_single_pixel", t.ResizeSelector.FORMULA)
             + _set(layer, "cubic_coeff", -0.75) + _set(layer, "exclude_outside", False))
    has_size = layer.num_inputs > 1 and layer.get_input(1) is not None
    if not has_size:
        scales = list(layer.scales)
        if scales:
            attrs.append(f"layer.scales = {_render([float(s) for s in scales])}")
        elif layer.shape is not None and _dims(layer.shape) != _dims(layer.get_input(0).shape):
            attrs.append(f"layer.shape = {_render(_dims(layer.shape))}")
    return _Call(f"network.add_resize({g.ref(layer.get_input(0), layer)})", (0,), attrs)


def _normalization(g: _Generator, layer: Any) -> _Call:
    ins = [g.ref(layer.get_input(j), layer) for j in range(3)]
    method = "add_normalization_v2" if getattr(layer, "is_v2", False) else "add_normalization"
    attrs = _set(layer, "epsilon", 1e-5) + _set(layer, "num_groups", 1)
    return _Call(f"network.{method}({', '.join(ins)}, {_mask(layer.axes)})", (0, 1, 2), attrs)


def _gather(g: _Generator, layer: Any) -> _Call:
    t = backend.trt()
    x, idx = (g.ref(layer.get_input(j), layer) for j in (0, 1))
    if layer.mode == t.GatherMode.DEFAULT:
        call = _Call(f"network.add_gather({x}, {idx}, {layer.axis})", (0, 1))
    else:
        call = _Call(f"network.add_gather_v2({x}, {idx}, {_render(layer.mode)})", (0, 1),
                     [f"layer.axis = {layer.axis}"])
    call.attrs += _set(layer, "num_elementwise_dims", 0)
    return call


def _quantize(method: str) -> Callable[[_Generator, Any], _Call]:
    def emit(g: _Generator, layer: Any) -> _Call:
        x, scale = (g.ref(layer.get_input(j), layer) for j in (0, 1))
        attrs = _set(layer, "axis", -1)
        try:  # TensorRT refuses to read it unless the layer is block-quantized
            block = getattr(layer, "block_shape", None)
        except RuntimeError:
            block = None
        if block is not None and len(block) and any(d != 1 for d in block):
            attrs.append(f"layer.block_shape = {_render(_dims(block))}")
        return _Call(f"network.{method}({x}, {scale}, {_render(layer.to_type)})", (0, 1), attrs)
    return emit


def _topk(g: _Generator, layer: Any) -> _Call:
    k_input = layer.num_inputs > 1 and layer.get_input(1) is not None
    k = 1 if k_input else layer.k  # k from input 1 (set below) reads -1, which the constructor refuses
    call = _Call(f"network.add_topk({g.ref(layer.get_input(0), layer)}, {_render(layer.op)}, {k}, "
                 f"{_mask(layer.axes)})", (0,))
    if hasattr(layer, "indices_type"):
        call.attrs += _set(layer, "indices_type", backend.trt().int32)
    return call


def _fill(g: _Generator, layer: Any) -> _Call:
    shape = layer.shape
    attrs = []
    for name in ("alpha", "beta"):  # doubles: written exactly
        attrs.append(f"layer.{name} = {float(getattr(layer, name))!r}")
    return _Call(f"network.add_fill({_render(_dims(shape) if shape is not None else ())}, "
                 f"{_render(layer.operation)}, {_render(layer.to_type)})", (), attrs)


def _with_indices_type(method: str, n: int) -> Callable[[_Generator, Any], _Call]:
    def emit(g: _Generator, layer: Any) -> _Call:
        call = _Call(f"network.{method}({', '.join(g.ref(layer.get_input(j), layer) for j in range(n))})",
                     tuple(range(n)))
        if hasattr(layer, "indices_type"):
            call.attrs += _set(layer, "indices_type", backend.trt().int32)
        return call
    return emit


def _nms(g: _Generator, layer: Any) -> _Call:
    call = _with_indices_type("add_nms", 3)(g, layer)
    call.attrs += (_set(layer, "bounding_box_format", backend.trt().BoundingBoxFormat.CORNER_PAIRS)
                   + [f"layer.topk_box_limit = {layer.topk_box_limit}"])
    return call


# loops, conditionals and attention: objects whose boundary layers appear in the network
def _loop_of(g: _Generator, layer: Any) -> str:
    loop = layer.loop
    return g.owner_var(loop, lambda v: [f"{v} = network.add_loop()  # its body: the layers that depend on its "
                                        "iterators and recurrences", f"{v}.name = {_render(loop.name)}"],
                       loop.name, "_loop")


def _trip_limit(g: _Generator, layer: Any) -> _Call:
    loop = _loop_of(g, layer)
    return _Call(f"{loop}.add_trip_limit({g.ref(layer.get_input(0), layer)}, {_render(layer.kind)})", (0,))


def _iterator(g: _Generator, layer: Any) -> _Call:
    loop = _loop_of(g, layer)
    return _Call(f"{loop}.add_iterator({g.ref(layer.get_input(0), layer)}, {layer.axis}, {layer.reverse})", (0,))


def _recurrence(g: _Generator, layer: Any) -> _Call:
    loop = _loop_of(g, layer)
    return _Call(f"{loop}.add_recurrence({g.ref(layer.get_input(0), layer)})", (0,))


def _loop_output(g: _Generator, layer: Any) -> _Call:
    loop = _loop_of(g, layer)
    return _Call(f"{loop}.add_loop_output({g.ref(layer.get_input(0), layer)}, {_render(layer.kind)}, "
                 f"{layer.axis})", (0,))


def _conditional_of(g: _Generator, layer: Any) -> str:
    cond = layer.conditional
    return g.owner_var(cond, lambda v: [f"{v} = network.add_if_conditional()", f"{v}.name = {_render(cond.name)}"],
                       cond.name, "_if")


def _condition(g: _Generator, layer: Any) -> _Call:
    return _Call(f"{_conditional_of(g, layer)}.set_condition({g.ref(layer.get_input(0), layer)})", (0,))


def _conditional_input(g: _Generator, layer: Any) -> _Call:
    return _Call(f"{_conditional_of(g, layer)}.add_input({g.ref(layer.get_input(0), layer)})", (0,))


def _conditional_output(g: _Generator, layer: Any) -> _Call:
    return _Call(f"{_conditional_of(g, layer)}.add_output({g.ref(layer.get_input(0), layer)}, "
                 f"{g.ref(layer.get_input(1), layer)})", (0, 1))


def _attention_input(g: _Generator, layer: Any) -> _Call:
    """An IAttention is made whole by one call; its two boundary layers follow from its name."""
    att = layer.attention
    q, k, v = (g.ref(att.get_input(j), layer) for j in range(3))
    if hasattr(att, "causal_kind"):
        expr = f"network.add_attention_v2({q}, {k}, {v}, {_render(att.norm_op)}, {_render(att.causal_kind)})"
    else:
        expr = f"network.add_attention({q}, {k}, {v}, {_render(att.norm_op)}, {att.causal!r})"
    attrs = [f"attention.name = {_render(att.name)}"]
    attrs += [line.replace("layer.", "attention.", 1) for line in _set(att, "decomposable", False)]
    for form in ("query_form", "key_value_form"):
        if getattr(att, form, None) is not None:
            attrs += [line.replace("layer.", "attention.", 1)
                      for line in _set(att, form, lambda t: t.AttentionIOForm.PADDED_BHND)]
    deferred = []
    # the boundary layer holds the optional inputs: mask, quantize scale, query and key/value lengths
    for j, what in ((3, "mask"), (4, "normalization_quantize_scale"), (5, "query_lengths"), (6, "key_value_lengths")):
        x = layer.get_input(j) if j < layer.num_inputs else None
        if x is None:
            continue
        if x.name in g.vars:
            attrs.append(f"attention.{what} = {g.vars[x.name]}")
        else:
            deferred.append((what, x.name))
        if j == 4:
            attrs += [line.replace("layer.", "attention.", 1)
                      for line in _set(att, "normalization_quantize_to_type", lambda t: t.fp8)]
    if att.metadata:
        attrs.append(f"attention.metadata = {_render(att.metadata)}")
    g.lines.append(f"attention = {expr}  # one IAttention: two boundary layers in the network")
    g.lines.extend(attrs)
    # the boundary layers are named after the attention; the output is named like any layer's
    out = att.get_output(0)
    auto = {"ATTENTION_INPUT": f"{att.name}_AttentionInput", "ATTENTION_OUTPUT": f"{att.name}_AttentionOutput"}
    network, index = g.network, g.index
    fixes = []
    for offset, kind in ((0, "ATTENTION_INPUT"), (1, "ATTENTION_OUTPUT")):
        boundary = network.get_layer(index + offset) if index + offset < network.num_layers else None
        if boundary is not None and boundary.type.name == kind and boundary.name != auto[kind]:
            fixes.append(f"network.get_layer(network.num_layers - {2 - offset}).name = {_render(boundary.name)}")
    inner = layer.get_output(0)
    if inner.name != f"{auto['ATTENTION_INPUT']}_output":
        fixes.append(f"network.get_layer(network.num_layers - 2).get_output(0).name = {_render(inner.name)}")
    g.lines.extend(fixes)
    var = g.new_var(out.name)
    g.lines.append(f"{var} = attention.get_output(0)")
    g.lines.append(f"{var}.name = {_render(out.name)}")
    g.vars[out.name] = var
    g.vars[inner.name] = var  # nothing reads the inner tensor but the output layer
    for line in g.pending.pop(out.name, ()):
        g.lines.append(line.format(var))
    if deferred:  # read before it is made: set once its producer exists
        keep = g.new_var(att.name, "_attention")
        g.lines.append(f"{keep} = attention")
        for what, name in deferred:
            g.pending.setdefault(name, []).append(f"{keep}.{what} = {{}}")
    return None


_EMITTERS: dict[str, Callable[[_Generator, Any], _Call | None]] = {
    "ACTIVATION": _activation,
    "CONVOLUTION": lambda g, la: _conv(g, la, "convolution"),
    "DECONVOLUTION": lambda g, la: _conv(g, la, "deconvolution"),
    "POOLING": _pooling,
    "SCALE": _scale,
    "ELEMENTWISE": _simple("add_elementwise", 2, _attr("op")),
    "UNARY": _simple("add_unary", 1, _attr("op")),
    "REDUCE": _simple("add_reduce", 1, _attr("op"), _attr("axes", _mask), _attr("keep_dims")),
    "SOFTMAX": lambda g, la: _Call(f"network.add_softmax({g.ref(la.get_input(0), la)})", (0,),
                                   [f"layer.axes = {_mask(la.axes)}"]),
    "MATRIX_MULTIPLY": lambda g, la: _Call(
        f"network.add_matrix_multiply({g.ref(la.get_input(0), la)}, {_render(la.op0)}, "
        f"{g.ref(la.get_input(1), la)}, {_render(la.op1)})", (0, 1)),
    "SHUFFLE": _shuffle,
    "SLICE": _slice,
    "RESIZE": _resize,
    "CONCATENATION": _concatenation,
    "CONSTANT": _constant,
    "CAST": _simple("add_cast", 1, _attr("to_type")),
    "IDENTITY": _simple("add_identity", 1),
    "NORMALIZATION": _normalization,
    "GATHER": _gather,
    "SCATTER": _simple("add_scatter", 3, _attr("mode"), attrs=[("axis", 0)]),
    "TOPK": _topk,
    "CUMULATIVE": _simple("add_cumulative", 2, _attr("op"), _attr("exclusive"), _attr("reverse")),
    "FILL": _fill,
    "PADDING": _simple("add_padding_nd", 1, lambda la: _render(_dims(la.pre_padding_nd)),
                       lambda la: _render(_dims(la.post_padding_nd))),
    "QUANTIZE": _quantize("add_quantize"),
    "DEQUANTIZE": _quantize("add_dequantize"),
    "SELECT": _simple("add_select", 3),
    "SHAPE": _simple("add_shape", 1),
    "SQUEEZE": lambda g, la: _simple("add_squeeze", _present(la, 2))(g, la),  # no axes: every unit dim
    "UNSQUEEZE": _simple("add_unsqueeze", 2),
    "PARAMETRIC_RELU": _simple("add_parametric_relu", 2),
    "EINSUM": _einsum,
    "NON_ZERO": _with_indices_type("add_non_zero", 1),
    "ONE_HOT": _simple("add_one_hot", 3, _attr("axis")),
    "REVERSE_SEQUENCE": _simple("add_reverse_sequence", 2, attrs=[("batch_axis", 1), ("sequence_axis", 0)]),
    "LRN": _simple("add_lrn", 1, _attr("window_size"), _attr("alpha"), _attr("beta"), _attr("k")),
    "GRID_SAMPLE": _simple("add_grid_sample", 2, attrs=[
        ("interpolation_mode", lambda t: t.InterpolationMode.LINEAR), ("align_corners", False),
        ("sample_mode", lambda t: t.SampleMode.FILL)]),
    "ASSERTION": _simple("add_assertion", 1, _attr("message")),
    "NMS": _nms,
    "ROTARY_EMBEDDING": _simple("add_rotary_embedding", 3, _attr("interleaved"), _attr("rotary_embedding_dim")),
    "KV_CACHE_UPDATE": _simple("add_kv_cache_update", 3, _attr("cache_mode")),
    "TRIP_LIMIT": _trip_limit,
    "ITERATOR": _iterator,
    "RECURRENCE": _recurrence,
    "LOOP_OUTPUT": _loop_output,
    "CONDITION": _condition,
    "CONDITIONAL_INPUT": _conditional_input,
    "CONDITIONAL_OUTPUT": _conditional_output,
    "ATTENTION_INPUT": _attention_input,
    "ATTENTION_OUTPUT": lambda g, la: None,
}

_TEMPLATE = '''\
#!/usr/bin/env python3
"""Network {name} as raw TensorRT network-definition calls.

Generated by netdef {version} from {layers} layers ({backend}); the script does not need
netdef, only TensorRT (classic `tensorrt` >= 10 or TensorRT-RTX) and numpy.
The weights are read from {weights_file} beside this file.

    python THIS.py --engine net.engine          # build and save a serialized engine
    polygraphy run THIS.py --model-type=trt-network-script ...   # Polygraphy (classic TensorRT)
"""
import argparse
import importlib
import json
import mmap
import os
import struct
import sys

import numpy as np


def import_tensorrt():
    """Classic TensorRT first, then TensorRT-RTX (as netdef does); NETDEF_BACKEND picks one."""
    forced = os.environ.get("NETDEF_BACKEND")
    failures = []
    for name in [forced] if forced else ["tensorrt", "tensorrt_rtx"]:
        try:
            module = importlib.import_module(name)
            module.Builder  # stub wheels import but have no bindings
            return module
        except Exception as exc:
            failures.append(f"{{name}}: {{exc}}")
    sys.exit("no TensorRT could be imported (" + "; ".join(failures) + "): pip install tensorrt-rtx, "
             "or classic tensorrt >= 10")


trt = import_tensorrt()
HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS_FILE = os.path.join(HERE, {weights_file})
# input name -> (min, opt, max) shapes of the optimization profile
PROFILES = {{{profiles}}}
LOGGER = trt.Logger(trt.Logger.WARNING)


# ---- weights ------------------------------------------------------------------------------------
DTYPES = {{  # safetensors dtype -> (numpy dtype holding its bytes, TensorRT dtype)
    "F32": (np.float32, trt.float32), "F16": (np.float16, trt.float16), "BF16": (np.uint16, trt.bfloat16),
    "F8_E4M3": (np.uint8, trt.fp8), "I8": (np.int8, trt.int8), "U8": (np.uint8, trt.uint8),
    "I32": (np.int32, trt.int32), "I64": (np.int64, trt.int64), "BOOL": (np.bool_, trt.bool),
}}
# TensorRT keeps only pointers to weights: they live here, in this module, until the engine is built
_WEIGHTS = {{}}  # name -> (TensorRT dtype, array) from the weights file
_ARRAYS = []  # the arrays written in this script


def read_safetensors(path):
    """{{name: (TensorRT dtype, flat array)}}, memory-mapped: an 8-byte header length, a JSON header
    {{name: {{dtype, shape, data_offsets}}}}, then the data."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (size,) = struct.unpack("<Q", data[:8])
    tensors = {{}}
    for name, info in json.loads(data[8:8 + size]).items():
        if name != "__metadata__":
            numpy_dtype, trt_dtype = DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            count = (end - begin) // np.dtype(numpy_dtype).itemsize
            tensors[name] = (trt_dtype, np.frombuffer(data, numpy_dtype, count, 8 + size + begin))
    return tensors


def weights(name):
    """trt.Weights over one tensor of the weights file."""
    if not _WEIGHTS:
        _WEIGHTS.update(read_safetensors(WEIGHTS_FILE))
    dtype, values = _WEIGHTS[name]
    return trt.Weights(dtype, values.ctypes.data, values.size)


def array(values, dtype):
    """trt.Weights over a few values written here."""
    values = np.array(values, dtype)
    _ARRAYS.append(values)
    return trt.Weights(getattr(trt, dtype), values.ctypes.data, values.size)


def named(layer, name, *outputs):
    """Name a layer and its output tensors (by default after the layer: "conv1", or "topk:0",
    "topk:1" for several) and return the outputs."""
    layer.name = name
    n = layer.num_outputs
    tensors = [layer.get_output(i) for i in range(n)]
    for tensor, tensor_name in zip(tensors, outputs or ([name] if n == 1 else [f"{{name}}:{{i}}" for i in range(n)])):
        tensor.name = tensor_name
    return tensors[0] if n == 1 else tuple(tensors) if n else None


# ---- the network --------------------------------------------------------------------------------
def define(network):
    """Add every layer to `network` (created with the STRONGLY_TYPED flag)."""
{body}


def load_network():
    """Polygraphy's network-script entry point (--model-type=trt-network-script): (builder, network)."""
    builder = trt.Builder(LOGGER)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    network.name = {network_name}
    define(network)
    return builder, network


def build_engine(path):
    """Build the network and write the serialized engine (plan) to `path`."""
    builder, network = load_network()
    config = builder.create_builder_config()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if any(-1 in tuple(x.shape) for x in inputs):  # dynamic shapes need a profile of their ranges
        profile = builder.create_optimization_profile()
        for x in inputs:
            if x.name not in PROFILES:
                sys.exit(f"input {{_render(x.name)}} has a dynamic shape {{tuple(x.shape)}}: add its (min, opt, max) to PROFILES")
            profile.set_shape(x.name, *PROFILES[x.name])
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        sys.exit("TensorRT could not build the network (its log above says why)")
    with open(path, "wb") as f:
        f.write(plan)
    return plan.nbytes


def main():
    global WEIGHTS_FILE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", help="write the serialized engine here")
    parser.add_argument("--weights", help=f"weights file (default {{WEIGHTS_FILE}})")
    args = parser.parse_args()
    if args.weights:
        WEIGHTS_FILE = args.weights
    if args.engine:
        size = build_engine(args.engine)
        print(f"built {{args.engine}}: {{size:,}} bytes ({{trt.__name__}} {{trt.__version__}})")
    else:
        builder, network = load_network()
        print(f"network {{network.name!r}}: {{network.num_layers}} layers, {{network.num_inputs}} inputs, "
              f"{{network.num_outputs}} outputs ({{trt.__name__}} {{trt.__version__}}); pass --engine FILE to build it")


if __name__ == "__main__":
    main()
'''
