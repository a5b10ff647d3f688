"""Oracles netdef did not write, for the reference runner, and the configurations they validate.

* ONNX's node test cases (`onnx.backend.test.case.node.collect_testcases()`), parsed by the active
  backend's OnnxParser and compared with ONNX's expected outputs as ONNX's backend runner does.
* Small ONNX graphs built here with `onnx.helper` (GRAPHS), in float32, float16 and bfloat16,
  parsed the same way and compared with `onnx.reference.ReferenceEvaluator`.
* The configurations (netdef.reference.coverage) every shipped model emits when traced.

NVIDIA's parser is a test oracle only (netdef never parses): it makes networks someone else
wrote, with the layer configurations real models produce. Used by tests/test_reference_onnx_nodes.py
and tests/test_reference_coverage.py; as a script it regenerates the coverage table of
docs/reference.md:

    python tests/_oracle.py --write-docs
"""
from __future__ import annotations

import collections
import functools
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import netdef
import netdef.reference
from netdef import dtypes
from netdef import functional as F
from netdef.reference.coverage import Config, configurations
from netdef.reference.layers import LAYERS  # imports every builder

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


class NotApplicable(Exception):
    """The parser rejects the model, or the runner lacks a builder for one of its layer types."""


class Mismatch(AssertionError):
    """The runner's outputs differ from the oracle's."""


# ---- parsing -------------------------------------------------------------------------------------
def parse(model: onnx.ModelProto) -> tuple:
    """`model` parsed into a strongly typed network; returns (network, parser), kept alive together."""
    t = netdef.backend.trt()
    network = netdef.backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = t.OnnxParser(network, netdef.backend.logger().impl)
    try:
        ok = parser.parse(model.SerializeToString())
    except Exception as exc:  # noqa: BLE001 - a parser crash is a rejection too
        ok, first = False, f"{type(exc).__name__}: {exc}"
    else:
        first = str(parser.get_error(0).desc()) if parser.num_errors else "parse() returned False"
    netdef.backend.logger().take_errors()
    if not ok:
        raise NotApplicable(f"the parser rejects it: {first}"[:300])
    return network, parser


def missing_types(network: Any) -> list[str]:
    return sorted({network.get_layer(i).type.name for i in range(network.num_layers)} - set(LAYERS))


def _array(value: Any) -> np.ndarray:
    """A data-set entry (ndarray, numpy scalar or TensorProto) as a numpy array."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value).copy()  # writable, as torch wants
    return np.asarray(value)


def feed(model: onnx.ModelProto, inputs: list, network: Any) -> dict:
    """Inputs by name, in the dtype the parsed network declares (DOUBLE becomes FLOAT in TensorRT)."""
    declared = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    # by name; a graph input the parser renamed (Loop's `cond` becomes `cond_in`) takes the network's
    # next unclaimed input, in order
    spare = iter([n for n in declared if n not in {i.name for i in model.graph.input}])
    out = {}
    for info, value in zip(model.graph.input, inputs):
        name = info.name if info.name in declared else next(spare, None)
        if name is None:  # e.g. an input the parser folded away
            continue
        v = _array(value)
        try:
            want = dtypes.to_numpy(dtypes.name(declared[name].dtype))
        except TypeError:  # INT4/FP4: the runner names the dtype it does not support
            want = v.dtype
        out[name] = v if v.dtype == want else v.astype(want)
    return out


def _floating(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype.name == "bfloat16" or a.dtype.name.startswith("float8")


def compare_outputs(names: list[str], expected: list, got: dict, rtol: float, atol: float,
                    scaled: bool = False) -> None:
    """ONNX's comparison (onnx.backend.test.runner.Runner.assert_similar_outputs) of the outputs
    `names`: same shape, same dtype (float64 is float32 in TensorRT), |got - expected| <= atol +
    rtol * |expected|. scaled=True multiplies atol by max|expected| (for graphs whose values are
    not of order 1)."""
    for name, e in zip(names, expected):
        e = _array(e)
        if name not in got:
            raise Mismatch(f"output {name!r} is not an output of the network ({sorted(got)})")
        g = netdef.arrays.to_numpy(got[name])
        if g.shape != e.shape:
            raise Mismatch(f"output {name!r} has shape {g.shape}, expected {e.shape}")
        want = np.dtype(np.float32) if e.dtype == np.float64 else e.dtype
        if g.dtype != want:
            raise Mismatch(f"output {name!r} has dtype {g.dtype}, expected {e.dtype}")
        if _floating(g):
            r = max(rtol, 2 ** -6) if g.dtype.name == "bfloat16" else rtol  # two bfloat16 ulps, as ONNX
            e64 = e.astype(np.float64)
            a = atol * float(np.nanmax(np.abs(e64), initial=1.0)) if scaled else atol
            try:
                np.testing.assert_allclose(g.astype(np.float64), e64, rtol=r, atol=a)
            except AssertionError as exc:
                raise Mismatch(f"output {name!r}: {exc}") from None
        elif not np.array_equal(g, e):
            raise Mismatch(f"output {name!r}: {g} != {e}")


# ---- ONNX's node test cases ----------------------------------------------------------------------
@functools.cache
def cases() -> dict:
    """ONNX's node test cases by name (generated once per process: about 6 s)."""
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators overflow casts on purpose
        return {c.name: c for c in node.collect_testcases()}


_CHECKED: dict[str, frozenset | NotApplicable] = {}  # network id -> its configurations, or why none


def _memo(key: str, run: Callable[[], tuple]) -> frozenset:
    """The configurations of the network `run` validates, once per process: the node-case tests
    and the coverage test share the work. Failures are not remembered, so they raise anew with
    their own traceback; NotApplicable is."""
    hit = _CHECKED.get(key)
    if isinstance(hit, NotApplicable):
        raise NotApplicable(str(hit))
    if hit is None:
        try:
            network, _parser = run()  # the parser holds the network's weights: keep it until read
        except NotApplicable as exc:
            _CHECKED[key] = exc
            raise
        hit = _CHECKED[key] = frozenset(configurations(network))
    return hit


def _run_case(name: str) -> tuple:
    case = cases()[name]
    network, parser = parse(case.model)
    missing = missing_types(network)
    if missing:
        raise NotApplicable(f"layer types without a reference builder: {', '.join(missing)}")
    for inputs, expected in case.data_sets:
        got = netdef.reference.run(network, feed(case.model, inputs, network))
        compare_outputs([o.name for o in case.model.graph.output], expected, got, case.rtol, case.atol)
    return network, parser


def check_case(name: str) -> frozenset:
    """Run ONNX's node test case `name`; returns the configurations of the network it validated.
    Raises NotApplicable, Mismatch or the runner's error."""
    return _memo(name, lambda: _run_case(name))


# ---- small ONNX graphs against onnx.reference ----------------------------------------------------
_ELEM = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}
_NP = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
# |runner - oracle| <= TOL * (|oracle| + max|oracle|): one unit in the last place of the dtype, of the
# value and of the tensor's scale (the parser may round derived weights, e.g. BatchNormalization folded
# into scale and shift, to the dtype); for float32, accumulation-order noise
TOL = {"float32": 1e-5, "float16": 2 ** -10, "bfloat16": 2 ** -7}
FLOATS = ("float32", "float16", "bfloat16")


class Graph:
    """An ONNX graph whose floating tensors are `store` ("float16" or the float32 of the oracle),
    with values rounded to `dtype`: the graph under test and its float32 oracle are built by the
    same spec from the same seed, so they hold the same values.

    Floating graph inputs are float32 and cast to the compute dtype (like a netdef network's
    boundary cast); floating outputs are cast back to float32."""

    def __init__(self, dtype: str, store: str, seed: int = 0) -> None:
        self.dtype, self.store = dtype, store
        self.elem = _ELEM[store]
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.inits: list = []
        self.feeds: dict[str, np.ndarray] = {}
        self.count = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def round(self, a: Any) -> np.ndarray:
        return np.asarray(a, np.float32).astype(_NP[self.dtype]).astype(np.float32)

    def input(self, *shape: int, scale: float = 1.0) -> str:
        """A float32 network input of seeded N(0, scale²) values (exact in the compute dtype)."""
        name = self._name("x")
        self.inputs.append(oh.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.feeds[name] = self.round(scale * self.rng.standard_normal(shape))
        return name if self.store == "float32" else self.node("Cast", [name], to=self.elem)

    def int_input(self, values: np.ndarray) -> str:
        name = self._name("i")
        values = np.asarray(values)
        elem = oh.np_dtype_to_tensor_dtype(values.dtype)
        self.inputs.append(oh.make_tensor_value_info(name, elem, list(values.shape)))
        self.feeds[name] = values
        return name

    def floats(self, values: Any) -> str:
        """An initializer of the given floating values, stored in the graph's dtype."""
        name = self._name("w")
        self.inits.append(numpy_helper.from_array(self.round(values).astype(_NP[self.store]), name))
        return name

    def weight(self, *shape: int, scale: float = 0.5, offset: float = 0.0) -> str:
        return self.floats(offset + scale * self.rng.standard_normal(shape))

    def const(self, values: Any) -> str:
        """A non-floating initializer (shapes, axes, quantized values), stored as given."""
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    def node(self, op: str, inputs: list, outputs: int = 1, **attrs: Any) -> Any:
        names = [self._name(op.lower()) for _ in range(outputs)]
        self.nodes.append(oh.make_node(op, inputs, names, **attrs))
        return names[0] if outputs == 1 else names

    def output(self, name: str, floating: bool = True, elem: int | None = None) -> None:
        if floating and self.store != "float32":
            name = self.node("Cast", [name], to=TensorProto.FLOAT)
        self.outputs.append(oh.make_tensor_value_info(name, TensorProto.FLOAT if floating else elem, None))

    def model(self, opset: int) -> onnx.ModelProto:
        graph = oh.make_graph(self.nodes, "evidence", self.inputs, self.outputs, self.inits)
        return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])


class Spec:
    def __init__(self, build: Callable[[Graph], None], dtypes: tuple, opset: int) -> None:
        self.build, self.dtypes, self.opset = build, dtypes, opset


GRAPHS: dict[str, Spec] = {}


def graph(name: str, dtypes: tuple = FLOATS, opset: int = 21) -> Callable:
    def deco(build: Callable[[Graph], None]) -> Callable:
        if name in GRAPHS:
            raise RuntimeError(f"graph {name!r} is defined twice")
        GRAPHS[name] = Spec(build, dtypes, opset)
        return build
    return deco


def _run_graph(name: str, dtype: str) -> tuple:
    from onnx.reference import ReferenceEvaluator

    spec = GRAPHS[name]
    g, oracle = Graph(dtype, dtype), Graph(dtype, "float32")
    spec.build(g)
    spec.build(oracle)
    model = g.model(spec.opset)
    network, parser = parse(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ReferenceEvaluator(oracle.model(spec.opset)).run(None, oracle.feeds)
    got = netdef.reference.run(network, feed(model, [g.feeds[i.name] for i in model.graph.input], network))
    compare_outputs([o.name for o in model.graph.output], expected, got, TOL[dtype], TOL[dtype], scaled=True)
    return network, parser


def _unary(name: str, op: str, opset: int = 21, **attrs: Any) -> None:
    graph(name, opset=opset)(lambda g: g.output(g.node(op, [g.input(2, 3, 5, 6)], **attrs)))


_unary("relu", "Relu")
_unary("sigmoid", "Sigmoid")
_unary("gelu", "Gelu")
_unary("softmax", "Softmax", axis=-1)
_unary("identity", "Identity")
_unary("tanh", "Tanh")
_unary("exp", "Exp")
_unary("gelu_tanh", "Gelu", approximate="tanh")


@graph("clip_0_6")
def _clip(g: Graph) -> None:
    g.output(g.node("Clip", [g.input(2, 3, 5, 6, scale=4.0), g.floats(0.0), g.floats(6.0)]))


for _op in ("Add", "Sub", "Mul"):
    graph(f"{_op.lower()}_same_shape")(
        lambda g, op=_op: g.output(g.node(op, [g.input(2, 3, 4, 5), g.input(2, 3, 4, 5)])))
    graph(f"{_op.lower()}_broadcast_weight")(
        lambda g, op=_op: g.output(g.node(op, [g.input(2, 3, 4, 5), g.weight(1, 3, 1, 5, offset=1.0)])))


def _conv(name: str, cin: int, cout: int, k: int, stride: int = 1, pads: tuple = (0, 0, 0, 0), groups: int = 1,
          bias: bool = False, dilation: int = 1, size: int = 9, **attrs: Any) -> None:
    def build(g: Graph) -> None:
        w = g.weight(cout, cin // groups, k, k, scale=1 / np.sqrt(cin // groups * k * k))
        ins = [g.input(2, cin, size, size), w] + ([g.weight(cout)] if bias else [])
        g.output(g.node("Conv", ins, kernel_shape=[k, k], strides=[stride] * 2, pads=list(pads), group=groups,
                        dilations=[dilation] * 2, **attrs))
    graph(name)(build)


_conv("conv_3x3_pad1", 4, 6, 3, pads=(1, 1, 1, 1))
_conv("conv_3x3_pad1_bias", 4, 6, 3, pads=(1, 1, 1, 1), bias=True)
_conv("conv_5x5_pad2_bias", 1, 6, 5, pads=(2, 2, 2, 2), bias=True)
_conv("conv_1x1", 4, 6, 1)
_conv("conv_5x5_bias", 3, 4, 5, bias=True)
_conv("conv_3x3_stride2_pad1", 4, 6, 3, stride=2, pads=(1, 1, 1, 1))
_conv("conv_7x7_stride2_pad3", 3, 4, 7, stride=2, pads=(3, 3, 3, 3), size=12)
_conv("conv_1x1_stride2", 4, 6, 1, stride=2)
_conv("conv_patch_4x4_stride4_bias", 3, 8, 4, stride=4, bias=True, size=12)
_conv("conv_depthwise_3x3_pad1", 6, 6, 3, pads=(1, 1, 1, 1), groups=6)
_conv("conv_depthwise_3x3_stride2_pad1", 6, 6, 3, stride=2, pads=(1, 1, 1, 1), groups=6)
_conv("conv_grouped_3x3_pad1", 4, 8, 3, pads=(1, 1, 1, 1), groups=2)
_conv("conv_grouped_3x3_stride2_pad1", 4, 8, 3, stride=2, pads=(1, 1, 1, 1), groups=2)
_conv("conv_uneven_pads_dilated", 4, 6, 3, pads=(0, 1, 2, 1), dilation=2, bias=True)


def _deconv(name: str, cin: int, cout: int, k: int, stride: int, pads: tuple, groups: int = 1,
            output_padding: tuple = (0, 0), bias: bool = True) -> None:
    def build(g: Graph) -> None:
        w = g.weight(cin, cout // groups, k, k, scale=1 / np.sqrt(cin * k * k / stride ** 2))
        ins = [g.input(2, cin, 5, 6), w] + ([g.weight(cout)] if bias else [])
        g.output(g.node("ConvTranspose", ins, kernel_shape=[k, k],
                        strides=[stride] * 2, pads=list(pads), group=groups, output_padding=list(output_padding)))
    graph(name)(build)


_deconv("deconv_4x4_stride2_pad1", 4, 6, 4, 2, (1, 1, 1, 1))
_deconv("deconv_3x3_stride2_pad1_output_padding1", 4, 6, 3, 2, (1, 1, 1, 1), output_padding=(1, 1))
_deconv("deconv_3x3_stride2_uneven_pads", 4, 6, 3, 2, (0, 1, 1, 0))  # onnx.reference has no grouped one
_deconv("deconv_2x2_stride2", 4, 6, 2, 2, (0, 0, 0, 0), bias=False)  # PointPillars' upsampling
_deconv("deconv_1x1", 4, 6, 1, 1, (0, 0, 0, 0), bias=False)


def _pool(name: str, op: str, k: int, stride: int, pads: tuple = (0, 0, 0, 0), size: int = 9, **attrs: Any) -> None:
    graph(name)(lambda g: g.output(g.node(op, [g.input(2, 3, size, size + 1)], kernel_shape=[k, k],
                                          strides=[stride] * 2, pads=list(pads), **attrs)))


_pool("maxpool_3x3_stride2_pad1", "MaxPool", 3, 2, (1, 1, 1, 1))
_pool("maxpool_5x5_stride1_pad2", "MaxPool", 5, 1, (2, 2, 2, 2))
_pool("maxpool_2x2_stride2", "MaxPool", 2, 2)
_pool("maxpool_3x3_stride2_uneven_pads", "MaxPool", 3, 2, (0, 1, 1, 2))
_pool("maxpool_3x3_stride2_ceil", "MaxPool", 3, 2, ceil_mode=1, size=10)
_pool("avgpool_2x2_stride2", "AveragePool", 2, 2)
_pool("avgpool_3x3_stride2_pad1_exclude_pad", "AveragePool", 3, 2, (1, 1, 1, 1))
_pool("avgpool_3x3_stride2_pad1_include_pad", "AveragePool", 3, 2, (1, 1, 1, 1), count_include_pad=1)
_pool("avgpool_3x3_stride2_uneven_pads_exclude_pad", "AveragePool", 3, 2, (0, 1, 1, 2))
_pool("avgpool_3x3_stride2_uneven_pads_include_pad", "AveragePool", 3, 2, (0, 1, 1, 2), count_include_pad=1)
_pool("avgpool_3x3_stride2_ceil_include_pad", "AveragePool", 3, 2, ceil_mode=1, count_include_pad=1, size=10)


@graph("batchnorm")
def _batchnorm(g: Graph) -> None:
    c = 4
    g.output(g.node("BatchNormalization", [g.input(2, c, 5, 6), g.weight(c, offset=1.0), g.weight(c),
                                           g.weight(c, scale=0.1), g.floats(0.5 + g.rng.random(c))], epsilon=1e-5))


@graph("layernorm_last_axis")
def _layernorm(g: Graph) -> None:
    g.output(g.node("LayerNormalization", [g.input(2, 5, 8), g.weight(8, offset=1.0), g.weight(8)], axis=-1))


_MATMULS = {
    "matmul_batched": ((2, 3, 4), (2, 4, 5)),
    "matmul_broadcast_weight": ((2, 3, 4), (4, 5)),
    "matmul_vector_left": ((4,), (4, 5)),
    "matmul_vector_right": ((2, 3, 4), (4,)),
    "matmul_vector_vector": ((4,), (4,)),
}
for _name, (_a, _b) in _MATMULS.items():
    graph(_name)(lambda g, a=_a, b=_b: g.output(g.node("MatMul", [g.input(*a), g.weight(*b)])))


@graph("gemm_transposed_weight_bias")
def _gemm(g: Graph) -> None:
    g.output(g.node("Gemm", [g.input(3, 6), g.weight(5, 6), g.weight(5)], transB=1))


def _resize(name: str, scales: tuple | None = None, sizes: tuple | None = None, **attrs: Any) -> None:
    def build(g: Graph) -> None:
        x = g.input(1, 2, 4, 5)
        ins = [x, "", g.const(np.array(scales, np.float32))] if scales else [x, "", "", g.const(np.array(sizes))]
        g.output(g.node("Resize", ins, **attrs))
    graph(name)(build)


_resize("resize_nearest_asymmetric_floor_scales", scales=(1, 1, 2, 2), mode="nearest",
        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
_resize("resize_nearest_half_pixel_round_prefer_ceil_sizes", sizes=(1, 2, 7, 9), mode="nearest",
        coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
_resize("resize_linear_half_pixel_scales", scales=(1, 1, 2, 2), mode="linear",
        coordinate_transformation_mode="half_pixel")
_resize("resize_linear_align_corners_sizes", sizes=(1, 2, 7, 9), mode="linear",
        coordinate_transformation_mode="align_corners")
_resize("resize_cubic_half_pixel_scales", scales=(1, 1, 2, 2), mode="cubic", cubic_coeff_a=-0.75,
        coordinate_transformation_mode="half_pixel")


@graph("reshape_flatten")
def _reshape(g: Graph) -> None:
    x = g.input(2, 3, 4, 5)
    g.output(g.node("Reshape", [x, g.const(np.array([2, 60]))]))
    g.output(g.node("Flatten", [x], axis=1))


@graph("transpose_concat_slice")
def _transpose(g: Graph) -> None:
    x = g.node("Transpose", [g.input(2, 3, 4, 5)], perm=[0, 2, 1, 3])
    y = g.node("Concat", [x, g.input(2, 1, 3, 5)], axis=1)
    g.output(g.node("Gather", [y, g.const(np.array(0))], axis=1))
    g.output(g.node("Slice", [y, g.const(np.array([1])), g.const(np.array([3])), g.const(np.array([1]))]))


@graph("split_static")
def _split(g: Graph) -> None:
    for part in g.node("Split", [g.input(2, 5, 3), g.const(np.array([1, 4]))], outputs=2, axis=1):
        g.output(part)


@graph("cast_float_to_int")
def _cast_to_int(g: Graph) -> None:
    x = g.input(2, 3, 4, scale=3.0)  # exact in every dtype, so truncation sees the same values
    g.output(g.node("Cast", [x], to=TensorProto.INT32), floating=False, elem=TensorProto.INT32)
    g.output(g.node("Cast", [x], to=TensorProto.INT64), floating=False, elem=TensorProto.INT64)


@graph("cast_int_to_float")
def _cast_from_int(g: Graph) -> None:
    i = g.int_input(np.arange(-6, 6, dtype=np.int32).reshape(3, 4))
    g.output(g.node("Add", [g.node("Cast", [i], to=g.elem), g.weight(3, 4)]))


@graph("cast_bool")
def _cast_bool(g: Graph) -> None:
    above = g.node("Greater", [g.input(2, 3, 4), g.weight(3, 4)])
    g.output(g.node("Cast", [above], to=g.elem))
    g.output(g.node("Cast", [above], to=TensorProto.INT32), floating=False, elem=TensorProto.INT32)


@graph("pow_broadcast_exponent")
def _pow(g: Graph) -> None:
    # integer exponents (YOLOv5 squares), so negative bases are defined
    g.output(g.node("Pow", [g.input(2, 3, 4, 5), g.floats(np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1))]))


@graph("reduce_sum_keepdims")
def _reduce_sum(g: Graph) -> None:
    g.output(g.node("ReduceSum", [g.input(2, 3, 4, 5), g.const(np.array([1]))], keepdims=1))


@graph("pad_constant_static")
def _pad(g: Graph) -> None:
    x = g.input(2, 3, 4, 5)
    g.output(g.node("Pad", [x, g.const(np.array([0, 0, 1, 2, 0, 0, 2, 1])), g.floats(1.5)], mode="constant"))


@graph("int32_broadcast_ops", dtypes=("float32",))
def _int32_ops(g: Graph) -> None:
    """Index arithmetic as the detectors' post-processing emits it: int32 comparisons, min/max,
    sums (elementwise and reduced) against broadcast operands."""
    rng = np.random.default_rng(3)
    a = g.int_input(rng.integers(-9, 9, (3, 4), dtype=np.int32))
    b = g.int_input(rng.integers(-9, 9, (1, 4), dtype=np.int32))
    g.output(g.node("Greater", [a, b]), floating=False, elem=TensorProto.BOOL)
    for op in ("Max", "Min", "Add"):
        g.output(g.node(op, [a, b]), floating=False, elem=TensorProto.INT32)
    g.output(g.node("ReduceSum", [a, g.const(np.array([0]))], keepdims=0), floating=False, elem=TensorProto.INT32)


@graph("int32_same_shape_ops", dtypes=("float32",))
def _int32_same_shape(g: Graph) -> None:
    """Index bookkeeping as the NMS loop emission does it: int32 comparisons of equal shapes and a
    kept-dims max over class slots."""
    rng = np.random.default_rng(4)
    a = g.int_input(rng.integers(-9, 9, (3, 4), dtype=np.int32))
    b = g.int_input(rng.integers(-9, 9, (3, 4), dtype=np.int32))
    for op in ("Greater", "Less"):
        g.output(g.node(op, [a, b]), floating=False, elem=TensorProto.BOOL)
    g.output(g.node("ReduceMax", [a, g.const(np.array([1]))], keepdims=1), floating=False, elem=TensorProto.INT32)


@graph("loop_bool_state", dtypes=("float32",))
def _loop_bool_state(g: Graph) -> None:
    """A Loop carrying a bool mask (as the NMS loop emission carries its suppressed set): the
    parser makes a bool recurrence and a last-value loop output."""
    start = g.node("Greater", [g.input(3, 4), g.weight(3, 4)])
    seen = g.node("Less", [g.input(3, 4), g.weight(3, 4)])
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]),
         oh.make_node("Xor", ["mask_in", "seen"], ["mask_out"])],
        "body",
        [oh.make_tensor_value_info("iter", TensorProto.INT64, []),
         oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         oh.make_tensor_value_info("mask_in", TensorProto.BOOL, [3, 4])],
        [oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         oh.make_tensor_value_info("mask_out", TensorProto.BOOL, [3, 4])])
    g.nodes.append(oh.make_node("Identity", [seen], ["seen"]))
    last = g.node("Loop", [g.const(np.array(3, np.int64)), g.const(np.array(True)), start], body=body)
    g.output(last, floating=False, elem=TensorProto.BOOL)


def _recurrent(name: str, op: str, gates: int, dtypes: tuple = FLOATS) -> None:
    """A bidirectional LSTM/GRU (opset 22 takes float16 and bfloat16): NVIDIA's parser makes it a
    TensorRT loop with forward and reversed iterators, recurrences and last-value, concatenated
    and reversed loop outputs."""
    def build(g: Graph) -> None:
        hidden, size = 4, 3
        ins = [g.input(5, 2, size), g.weight(2, gates * hidden, size), g.weight(2, gates * hidden, hidden),
               g.weight(2, 2 * gates * hidden, scale=0.1)]
        for out in g.node(op, ins, outputs=3 if op == "LSTM" else 2, hidden_size=hidden, direction="bidirectional"):
            g.output(out)
    graph(name, dtypes, opset=22)(build)


_recurrent("lstm_bidirectional", "LSTM", 4)
# bfloat16: the parser subtracts a float32 constant from the bfloat16 update gate and rejects its own network
_recurrent("gru_bidirectional", "GRU", 3, dtypes=("float32", "float16"))


def _attention(name: str, heads: tuple, causal: bool = False, mask: bool = False) -> None:
    """ONNX's Attention (opset 23), which the parser maps onto TensorRT's IAttention one to one:
    (B, H, L, E) query against (B, H_kv, S, E) keys and values, optionally with a bool mask."""
    def build(g: Graph) -> None:
        (hq, hk), (b, length, s, e) = heads, (2, 3, 6, 8)
        ins = [g.input(b, hq, length, e), g.input(b, hk, s, e), g.input(b, hk, s, e)]
        if mask:
            allowed = g.rng.random((b, 1, length, s)) < 0.7
            allowed[..., 0] = True  # every query attends somewhere
            ins.append(g.int_input(allowed))
        g.output(g.node("Attention", ins, is_causal=int(causal)))
    graph(name, opset=23)(build)


_attention("attention", (4, 4))
_attention("attention_causal_gqa", (4, 2), causal=True)
_attention("attention_bool_mask", (4, 4), mask=True)
_attention("attention_bool_mask_gqa", (4, 2), mask=True)


@graph("rotary_embedding_no_positions", opset=23)
def _rotary(g: Graph) -> None:
    """ONNX's RotaryEmbedding on (B, H, S, D) with per-batch cos/sin caches (B, S, D/2)."""
    b, s, d = 2, 5, 8
    angles = np.arange(s)[:, None] * 10000.0 ** (-np.arange(d // 2) / (d // 2))
    cos, sin = (g.floats(np.broadcast_to(f(angles), (b, s, d // 2))) for f in (np.cos, np.sin))
    g.output(g.node("RotaryEmbedding", [g.input(b, 3, s, d), cos, sin]))


@graph("kv_cache_update", opset=24)
def _kv_cache(g: Graph) -> None:
    """ONNX's TensorScatter (linear mode), which the parser makes a KV_CACHE_UPDATE layer: each batch
    item's update rows written into its cache at its write index."""
    cache, update = g.input(2, 3, 8, 4), g.input(2, 3, 2, 4)
    g.output(g.node("TensorScatter", [cache, update, g.int_input(np.array([1, 5], np.int64))], axis=2, mode="linear"))


def _qdq(g: Graph, x: str, scale: Any, axis: int = 1) -> str:
    s = g.floats(scale) if np.ndim(scale) else g.const(np.float32(scale))
    q = g.node("QuantizeLinear", [x, s], axis=axis, output_dtype=TensorProto.INT8)
    return g.node("DequantizeLinear", [q, s], axis=axis)


def _qdq_conv(name: str, k: int, stride: int = 1, pads: tuple = (0, 0, 0, 0), bias: bool = False) -> None:
    """int8 Q/DQ as netdef.quantize emits it: the input per tensor, the weights per output channel,
    so the convolution's kernel is a tensor input (the weights' DEQUANTIZE)."""
    def build(g: Graph) -> None:
        w = g.rng.standard_normal((6, 4, k, k)).astype(np.float32) / (2 * k)
        wq = _qdq(g, g.floats(w), np.abs(w).max(axis=(1, 2, 3)) / 127, axis=0)
        ins = [_qdq(g, g.input(2, 4, 9, 8), 3.0 / 127), wq] + ([g.weight(6)] if bias else [])
        g.output(g.node("Conv", ins, kernel_shape=[k, k], strides=[stride] * 2, pads=list(pads)))
    graph(name, dtypes=("float32",))(build)


_qdq_conv("qdq_conv_3x3_pad1_bias", 3, pads=(1, 1, 1, 1), bias=True)
_qdq_conv("qdq_conv_3x3_pad1", 3, pads=(1, 1, 1, 1))
_qdq_conv("qdq_conv_3x3_stride2_pad1", 3, stride=2, pads=(1, 1, 1, 1))
_qdq_conv("qdq_conv_1x1", 1)
_qdq_conv("qdq_conv_1x1_stride2", 1, stride=2)


@graph("qdq_gemm_per_channel_weights", dtypes=("float32",))
def _qdq_gemm(g: Graph) -> None:
    w = g.rng.standard_normal((5, 6)).astype(np.float32) / 3
    wq = _qdq(g, g.floats(w), np.abs(w).max(axis=1) / 127, axis=0)
    g.output(g.node("Gemm", [_qdq(g, g.input(3, 6), 3.0 / 127), wq, g.weight(5)], transB=1))


def graph_ids() -> list[str]:
    return [f"{name}[{dt}]" for name, spec in GRAPHS.items() for dt in spec.dtypes]


def check_graph(gid: str) -> frozenset:
    """Build graph `gid` ("name[dtype]"), parse it, run it, and compare with onnx.reference run on the
    float32 graph of the same values; returns the configurations of the parsed network. Raises
    Mismatch or the runner's error."""
    name, dt = re.fullmatch(r"(.+)\[(\w+)\]", gid).groups()
    return _memo(f"graph {gid}", lambda: _run_graph(name, dt))


# ---- torch as the oracle, where no parser-made network has the configuration ------------------------
# configurations NVIDIA's parser cannot make, with the reason; each is validated against torch
# (TORCH below) instead, and docs/reference.md lists them with the reason
UNVALIDATED: dict[str, str] = {
    **dict.fromkeys([f"MATRIX_MULTIPLY(op0=NONE, op1=TRANSPOSE, batch=broadcast, {dt})" for dt in FLOATS],
                    "the parser transposes a matrix multiply operand only for Gemm, which is 2-D (batch=same); "
                    "MatMul after a Transpose node becomes a shuffle and op1=NONE"),
    **dict.fromkeys([f"NMS(box_format={f}, boxes=shared, float16)" for f in ("CENTER_SIZES", "CORNER_PAIRS")],
                    "ONNX's NonMaxSuppression takes float32 boxes and scores only"),
    "SLICE(STRICT_BOUNDS, inputs=start, stride=1)": (
        "the parser's Slice derives the size from starts and ends, so a dynamic start always comes with a size "
        "input (inputs=start+size)"),
}

TORCH: dict[str, tuple[Callable[[str], tuple], tuple]] = {}


def torch_check(name: str, dtypes: tuple = FLOATS) -> Callable:
    """Register `build(dtype) -> (network, feeds, expected {output: array})`: a netdef network made
    as the shipped models make it, its inputs, and torch's outputs for them (computed in float32
    from the same values, rounded to `dtype` where they enter the network)."""
    def deco(build: Callable[[str], tuple]) -> Callable:
        if name in TORCH:
            raise RuntimeError(f"torch check {name!r} is defined twice")
        TORCH[name] = (build, dtypes)
        return build
    return deco


def _rounded(rng: np.random.Generator, dt: str, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(_NP[dt]).astype(np.float32)


@torch_check("linear_3d")
def _linear_3d(dt: str) -> tuple:
    """nn.Linear on a (batch, sequence, features) input, as the language models' projections and
    the recurrent layers' input products: a matrix multiply by the transposed weight, broadcast
    over the batch."""
    import torch

    rng = np.random.default_rng(0)
    w, b, x = _rounded(rng, dt, 5, 8) / 3, _rounded(rng, dt, 5), _rounded(rng, dt, 2, 7, 8)
    port = netdef.nn.Linear(8, 5)
    port.load_state_dict({"weight": w, "bias": b})
    net = netdef.trace(port, netdef.Input("x", x.shape), dtype=dt)
    want = torch.nn.functional.linear(*(torch.from_numpy(a) for a in (x, w, b))).numpy()
    return net, {"x": x}, {"output": want}


@torch_check("getitem_dynamic_start", dtypes=("float32",))
def _getitem_dynamic_start(dt: str) -> tuple:
    """x[:, -1] on a sequence of dynamic length (the last token's logits): the slice starts at a
    computed index and has a static size."""
    rng = np.random.default_rng(1)
    x = _rounded(rng, dt, 2, 5, 3)
    net = netdef.trace(lambda t: t[:, -1], netdef.Input("x", (2, ("seq", 1, 4, 7), 3)), dtype=dt)
    import torch

    return net, {"x": x}, {"output": torch.from_numpy(x)[:, -1].numpy()}


def _nms_case(box_format: str, chosen: str, dt: str) -> tuple:
    """netdef.ops.multiclass_nms against torchvision.ops.batched_nms (per image, the class as the
    category, candidates above the score threshold, the best `max_detections`). Coordinates are
    small integers and scores multiples of 1/64, exact in float16; every IoU is at least 0.02 from
    the threshold, so float16 arithmetic cannot flip a decision. `chosen` is the NMS emission
    ("layer" or "loop"), each checked on its own."""
    import torch
    import torchvision

    b, n, c, d, iou, conf = 2, 12, 3, 10, 0.45, 0.4
    rng = np.random.default_rng(2)
    while True:
        lo = rng.integers(0, 12, (b, n, 2))
        xyxy = np.concatenate([lo, lo + rng.integers(4, 13, (b, n, 2))], -1).astype(np.float32)
        ious = np.stack([torchvision.ops.box_iou(t, t).numpy() for t in torch.from_numpy(xyxy).double()])
        if np.abs(ious - iou).min() > 0.02:
            break
    scores = np.stack([rng.permutation(n * c) + 1 for _ in range(b)]).reshape(b, n, c).astype(np.float32) / 64
    boxes = xyxy if box_format == "xyxy" else torchvision.ops.box_convert(torch.from_numpy(xyxy), "xyxy",
                                                                          "cxcywh").numpy()
    want = {"det_boxes": np.zeros((b, d, 4), np.float32), "det_scores": np.zeros((b, d), np.float32),
            "det_labels": np.full((b, d), -1, np.int64), "det_count": np.zeros(b, np.int64)}
    for i in range(b):
        box, cls = np.nonzero(scores[i] > conf)
        kept = torchvision.ops.batched_nms(torch.from_numpy(xyxy[i][box]), torch.from_numpy(scores[i][box, cls]),
                                           torch.from_numpy(cls), iou).numpy()
        assert len(kept) < len(box), "the case must suppress candidates"
        keep = kept[:d]
        k = len(keep)
        want["det_boxes"][i, :k], want["det_scores"][i, :k] = boxes[i][box[keep]], scores[i][box[keep], cls[keep]]
        want["det_labels"][i, :k], want["det_count"][i] = cls[keep], k
    assert 0 < want["det_count"].min() < d, "the case must pad an image's rows past its detections"

    def detect(bx: Any, sc: Any) -> tuple:
        return netdef.ops.multiclass_nms(bx, sc, iou, conf, d, box_format=box_format)
    with F.emission(nms=chosen):
        net = netdef.trace(detect, netdef.Input("boxes", (b, n, 4)), netdef.Input("scores", (b, n, c)), dtype=dt,
                           output_names=list(want))
    return net, {"boxes": boxes, "scores": scores}, want


for _fmt in ("xyxy", "cxcywh"):
    for _chosen in ("layer", "loop"):
        torch_check(f"multiclass_nms_{_fmt} {_chosen}", dtypes=("float32", "float16"))(
            functools.partial(_nms_case, _fmt, _chosen))


def torch_ids() -> list[str]:
    return [f"{name}[{dt}]" for name, (_, dts) in TORCH.items() for dt in dts]


def _run_torch(name: str, dt: str) -> tuple:
    net, feeds, want = TORCH[name][0](dt)
    got = netdef.reference.run(net, feeds)
    compare_outputs(list(want), list(want.values()), got, TOL[dt], TOL[dt], scaled=True)
    return net, None


def check_torch(tid: str) -> frozenset:
    """Run torch check `tid` ("name[dtype]"): the netdef network through the reference runner
    against torch; returns the network's configurations. Raises Mismatch or the runner's error."""
    name, dt = re.fullmatch(r"(.+)\[(\w+)\]", tid).groups()
    return _memo(f"torch {tid}", lambda: _run_torch(name, dt))


# ---- the configurations the shipped models emit -----------------------------------------------------
# a second input shape for models that take other sizes, where 64x64 images are not one of them
OTHER_SHAPES = {"crnn": (1, 1, 32, 160), "gru_classifier": (2, 7, 40)}


def _constant_weights(model: Any, dt: str) -> None:
    """Configurations depend on weights only through which scale-layer weights act, so the float
    traces use constant weights of 0.5 (BatchNorm then has a scale and a shift, as with real
    weights; drawing VGG's 138M random defaults and converting them to bfloat16 takes ~10 s)."""
    for _, p in model.named_parameters():
        p.data = np.full(p.shape, 0.5, dtype=dtypes.to_numpy(dt))


def _bundled() -> Any:
    """(label, network) for every model of netdef.models.MODELS at its default input shape (and at
    64x64 where the model takes other sizes) in float32, float16 and bfloat16."""
    from netdef.models import MODELS, create

    for name, entry in MODELS.items():
        model = create(name)
        shapes = [entry.input_shape]
        if name in OTHER_SHAPES:
            shapes.append(OTHER_SHAPES[name])
        elif name not in ("lenet5", "vit_b_16"):  # fixed-size inputs
            shapes.append((1, entry.input_shape[1], 64, 64))
        for dt in FLOATS:
            _constant_weights(model, dt)
            for shape in shapes:
                yield name, netdef.trace(model, netdef.Input("x", shape), dtype=dt)


def _int8() -> Any:
    """The int8 Q/DQ network netdef.quantize makes for ResNet-18, with realistic weights (random,
    with random BatchNorm statistics, as the model tests use)."""
    import torch
    import torchvision
    from helpers import random_original
    from netdef.models import MODELS, create

    from netdef.quantize import calibrate

    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = create("resnet18")
    model.load_state_dict(random_original(torchvision.models.resnet18(weights=None), batch).state_dict())
    config = calibrate(model, [batch])
    yield "resnet18 int8", netdef.trace(model, netdef.Input("x", MODELS["resnet18"].input_shape), quantization=config)


def _language_models() -> Any:
    """GPT-2 and Llama built from small `transformers` configs (as tests/test_hf_models.py; no
    download): the whole-sequence network and the KV-cache step network netdef.generate runs, in
    every float dtype, in the default emission (fused where the backend has TensorRT's attention,
    rotary and KV-cache layers) and, where it has them, decomposed (netdef.functional.emission)."""
    import transformers
    from netdef.models import gpt2, llama

    from netdef.generation import step_network

    small = {"vocab_size": 97, "bos_token_id": 0, "eos_token_id": None, "pad_token_id": 0}
    ports = {
        "gpt2": gpt2.GPT2LMHeadModel(transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                                             **small).to_dict()),
        "llama": llama.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": 500.0},
            **small).to_dict()),
    }
    ops = ("attention", "rotary", "kv_cache")
    emissions = [("", {})]  # the default: each op fused where the backend has its layer
    if any(F.has_layer(op) for op in ops):
        emissions.append((" decomposed", dict.fromkeys(ops, "decomposed")))
    for suffix, chosen in emissions:
        for name, port in ports.items():
            for dt in FLOATS:
                _constant_weights(port, dt)
                with F.emission(**chosen):
                    yield name + suffix, netdef.trace(port, netdef.Input("x", (2, 7), "int64"), dtype=dt)
                    yield f"{name} step{suffix}", step_network(port, batch=2, seq=(1, 7, 7), cache=16, dtype=dt)


def _detectors() -> Any:
    """YOLOv5n's DetectionModel (Detect and NMS) and PointPillars in float32 and float16 (TensorRT's
    NMS layer takes no bfloat16: tracing them in bfloat16 fails and names the NMS module), in both
    NMS emissions: the backend's default and the other one ("layer" on classic TensorRT, "loop"
    on TensorRT-RTX, which cannot build INMSLayer)."""
    from netdef.models import pointpillars, yolov5

    default = F.emission_for("nms")
    for chosen in (default, "loop" if default == "layer" else "layer"):
        suffix = "" if chosen == default else f" nms-{chosen}"
        with F.emission(nms=chosen):
            for label, net in _detector_networks(pointpillars, yolov5):
                yield label + suffix, net


def _detector_networks(pointpillars: Any, yolov5: Any) -> Any:

    cfg = pointpillars.Config(max_detections=20)
    clouds = [pointpillars.synthetic_scene(cfg, s) for s in (10, 11)]
    voxels, num, coords = pointpillars.voxelize(clouds, cfg)
    pillars = (netdef.Input("voxels", voxels.shape), netdef.Input("voxel_num_points", num.shape, "int32"),
               netdef.Input("voxel_coords", coords.shape, "int32"))
    for dt in ("float32", "float16"):
        model = yolov5.DetectionModel(max_det=10)
        _constant_weights(model, dt)
        yield "yolov5n DetectionModel", netdef.trace(model, netdef.Input("x", (1, 3, 64, 64)), dtype=dt)
        model = pointpillars.PointPillar(cfg)
        _constant_weights(model, dt)
        yield "pointpillars", netdef.trace(model, *pillars, dtype=dt)


@functools.cache
def shipped_configurations() -> dict[Config, frozenset[str]]:
    """Configuration -> the models that emit it, for every model netdef ships: netdef.models.MODELS,
    the int8 ResNet-18, GPT-2 and Llama (models/gpt2.py, models/llama.py) and the detectors
    (YOLOv5's DetectionModel, PointPillars). Traced once per process (~10 s)."""
    found: dict[Config, set[str]] = collections.defaultdict(set)
    for source in (_bundled, _int8, _language_models, _detectors):
        for label, net in source():
            for c in configurations(net):
                found[c].add(label)
    return {c: frozenset(labels) for c, labels in found.items()}


# ---- evidence and the docs table ---------------------------------------------------------------------

def evidence() -> dict[Config, list[str]]:
    """Configuration -> the validated networks that contain it: every ONNX node case the runner
    passes (its expected outputs are ONNX's), every graph of GRAPHS that matches onnx.reference
    ("graph ..."), and every TORCH check that matches torch ("torch ..."). A network that fails
    validation is no evidence."""
    found: dict[Config, list[str]] = collections.defaultdict(list)
    for name, check in [*((f"graph {g}", functools.partial(check_graph, g)) for g in graph_ids()),
                        *((n, functools.partial(check_case, n)) for n in sorted(cases())),
                        *((f"torch {t}", functools.partial(check_torch, t)) for t in torch_ids())]:
        try:
            validated = check()
        except (Mismatch, NotApplicable, netdef.reference.RunnerError):
            continue
        for c in validated:
            found[c].append(name)
    return dict(found)


def by_parser(names: list[str]) -> list[str]:
    """The evidence of parser-made networks (ONNX node cases and GRAPHS) among `names`."""
    return [n for n in names if not n.startswith("torch ")]


def _models(names: set[str]) -> str:
    """"all 15 models" for netdef.models.MODELS, and each model's networks in one entry:
    "gpt2 (default, decomposed, step, step decomposed)"."""
    from netdef.models import MODELS

    rest = set(names)
    shown = []
    if set(MODELS) <= rest:
        shown.append(f"all {len(MODELS)} models")
        rest -= set(MODELS)
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for n in rest:
        base, _, variant = n.partition(" ")
        groups[base].append(variant)
    order = {n: i for i, n in enumerate(MODELS)}
    for base in sorted(groups, key=lambda b: (order.get(b, 99), b)):
        variants = sorted(groups[base], key=lambda v: (len(v.split()), v))
        shown.append(base if variants == [""] else f"{base} ({', '.join(v or 'default' for v in variants)})")
    return ", ".join(shown)


def _first(names: list[str], prefix: str = "") -> str:
    shown = ", ".join(f"`{n.removeprefix(prefix)}`" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def markdown(shipped: dict[Config, set[str]], found: dict[Config, list[str]]) -> str:
    """The coverage table of docs/reference.md: one row per configuration the shipped models emit.

    The evidence column names up to three GRAPHS that validate the configuration (node cases where
    no graph does; the TORCH checks, with the reason of UNVALIDATED, where no parser-made network
    has it); the last column says whether passing ONNX node cases contain it too (their names
    change as builders are registered, so the table does not list them)."""
    rows = [("| configuration | emitted by | validated by (onnx.helper graphs of tests/_oracle.py; torch checks where "
             "the parser cannot make it) | in passing ONNX node cases |"), "| --- | --- | --- | --- |"]
    parser = by_torch = 0
    for c in sorted(shipped, key=str):
        names = found.get(c, [])
        graphs = [n for n in names if n.startswith("graph ")]
        nodes = [n for n in by_parser(names) if not n.startswith("graph ")]
        checks = [n for n in names if n.startswith("torch ")]
        if graphs:
            shown = _first(graphs, "graph ")
        elif nodes:
            shown = "node cases " + _first(nodes)
        elif checks:
            shown = f"torch: {_first(checks, 'torch ')} (no parser-made network: {UNVALIDATED.get(str(c), '?')})"
        else:
            shown = f"**not independently validated**: {UNVALIDATED.get(str(c), 'no evidence')}"
        parser += bool(graphs or nodes)
        by_torch += bool(checks) and not (graphs or nodes)
        rows.append(f"| `{c}` | {_models(shipped[c])} | {shown} | {'yes' if nodes else 'no'} |")
    head = (f"{parser + by_torch} of {len(shipped)} configurations the shipped models emit are validated independently: "
            f"{parser} in networks NVIDIA's parser made (against onnx.reference or ONNX's expected outputs), {by_torch} "
            f"against torch where the parser cannot make them (backend {netdef.backend.trt().__name__} "
            f"{netdef.backend.trt().__version__}).")
    return "\n".join([head, "", *rows]) + "\n"


BEGIN = "<!-- coverage table: generated by `python tests/_oracle.py --write-docs`; do not edit -->\n"
END = "<!-- end of coverage table -->\n"


def docs_table() -> str:
    """The generated part of docs/reference.md as it stands."""
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise AssertionError(f"{DOCS} has no generated coverage table (markers {BEGIN.strip()!r})")
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def write_docs(table: str) -> None:
    text = DOCS.read_text()
    before, rest = text.split(BEGIN, 1)
    DOCS.write_text(before + BEGIN + table + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        raise SystemExit("usage: python tests/_oracle.py --write-docs")
    write_docs(markdown(shipped_configurations(), evidence()))
    print(f"wrote the coverage table of {DOCS}")
