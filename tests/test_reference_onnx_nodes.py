"""The reference runner against ONNX's own node test cases, parsed by NVIDIA's ONNX parser.

Every case of `onnx.backend.test.case.node.collect_testcases()` is serialized and parsed by the
active backend's OnnxParser into a strongly typed network (the parser is a test oracle only;
netdef never parses). A case the parser rejects is not applicable; a case whose network holds a
layer type the runner has no builder for is skipped, naming the types (it starts running when a
builder is registered). Every other case runs through `netdef.reference.run` and must match
ONNX's expected outputs with the case's rtol/atol, as ONNX's backend test runner compares them,
unless DIFFERENCES lists it with the reason; a listed case must still fail (strict), so the table
cannot rot. Results and the table: docs/reference.md, "Validation".
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnx
from onnx import numpy_helper

import netdef
import netdef.reference
from netdef import dtypes
from netdef.reference.layers import LAYERS


@functools.cache
def cases() -> dict:
    """ONNX's node test cases by name (generated once per process: about 6 s)."""
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators overflow casts on purpose
        return {c.name: c for c in node.collect_testcases()}


class NotApplicable(Exception):
    """The parser rejects the case, or the runner lacks a builder for one of its layer types."""


class Mismatch(AssertionError):
    """The runner's outputs differ from ONNX's expected outputs."""


def parse(case) -> tuple:
    """The case's model parsed into a strongly typed network; (network, parser) kept alive together."""
    t = netdef.backend.trt()
    network = netdef.backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = t.OnnxParser(network, netdef.backend.logger().impl)
    try:
        ok = parser.parse(case.model.SerializeToString())
    except Exception as exc:  # noqa: BLE001 - a parser crash is a rejection too
        ok, first = False, f"{type(exc).__name__}: {exc}"
    else:
        first = str(parser.get_error(0).desc()) if parser.num_errors else "parse() returned False"
    netdef.backend.logger().take_errors()
    if not ok:
        raise NotApplicable(f"the parser rejects it: {first}"[:300])
    return network, parser


def missing_types(network) -> list[str]:
    return sorted({network.get_layer(i).type.name for i in range(network.num_layers)} - set(LAYERS))


def _array(value) -> np.ndarray:
    """A data-set entry (ndarray, numpy scalar or TensorProto) as a numpy array."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value).copy()  # writable, as torch wants
    return np.asarray(value)


def feed(case, network) -> dict:
    """The case's inputs by name, in the dtype the parsed network declares."""
    inputs, _ = case.data_sets[0]
    declared = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    out = {}
    for info, value in zip(case.model.graph.input, inputs):
        if info.name not in declared:  # e.g. an input the parser folded away
            continue
        v = _array(value)
        try:
            want = dtypes.to_numpy(dtypes.name(declared[info.name].dtype))
        except TypeError:  # INT4/FP4: the runner names the dtype it does not support
            want = v.dtype
        out[info.name] = v if v.dtype == want else v.astype(want)  # e.g. DOUBLE, which the parser makes FLOAT
    return out


def compare(case, got: dict) -> None:
    """ONNX's comparison (onnx.backend.test.runner.Runner.assert_similar_outputs): same shape,
    same dtype (float64 is float32 in TensorRT), values within the case's rtol/atol."""
    _, expected = case.data_sets[0]
    names = [o.name for o in case.model.graph.output]
    for name, e in zip(names, expected):
        e = _array(e)
        if name not in got:
            raise Mismatch(f"output {name!r} is not an output of the parsed network ({sorted(got)})")
        g = got[name]
        g = netdef.arrays.to_numpy(g)
        if g.shape != e.shape:
            raise Mismatch(f"output {name!r} has shape {g.shape}, expected {e.shape}")
        want = np.dtype(np.float32) if e.dtype == np.float64 else e.dtype
        if g.dtype != want:
            raise Mismatch(f"output {name!r} has dtype {g.dtype}, expected {e.dtype}")
        rtol = case.rtol
        if g.dtype.kind == "f" or g.dtype.name == "bfloat16" or g.dtype.name.startswith("float8"):
            if g.dtype.name == "bfloat16":
                rtol = max(rtol, 2 ** -6)  # two bfloat16 ULPs, as ONNX's runner
            try:
                np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=case.atol)
            except AssertionError as exc:
                raise Mismatch(f"output {name!r}: {exc}") from None
        elif not np.array_equal(g, e):
            raise Mismatch(f"output {name!r}: {g} != {e}")


def outcome(name: str) -> None:
    """Run one case; raises NotApplicable, Mismatch or the runner's error."""
    case = cases()[name]
    network, _parser = parse(case)
    missing = missing_types(network)
    if missing:
        raise NotApplicable(f"layer types without a reference builder: {', '.join(missing)}")
    got = netdef.reference.run(network, feed(case, network))
    compare(case, got)


# ---- expected differences: {case: reason}; each listed case must fail (checked below) ---------------
_INT4_FP4 = ("INT4 and FP4 (e2m1) tensors: the runner has no such dtypes and names them in its error "
             "(docs/reference.md, 'Not supported')")
_TRILU = ("the parser reads Trilu's absent `upper` attribute as 0 and builds the lower-triangle network "
          "(ONNX's default is upper=1; these cases leave it unset)")
_NO_SATURATE = ("the parser ignores Cast's saturate=0 and builds the same CAST layer as for saturate=1; "
                "ONNX's non-saturating cast gives NaN out of range, the saturating one ±448")
_UINT8_ZERO_POINT = ("the parser gives a QUANTIZE layer an INT8 output for a UINT8 zero point that is a "
                     "network input; TensorRT's builder rejects the network (zero_point must be an initializer)")
_CEIL_POOL = ("TensorRT's EXPLICIT_ROUND_UP (what the parser makes of ceil_mode=1) keeps a last window that "
              "starts in the end padding, ONNX drops it: TensorRT declares the larger output shape")
DIFFERENCES: dict[str, str] = {
    **dict.fromkeys([
        *(f"test_cast_{a}_to_{b}" for a, b in (
            ("FLOAT16", "FLOAT4E2M1"), ("FLOAT16", "INT4"), ("FLOAT4E2M1", "FLOAT"), ("FLOAT4E2M1", "FLOAT16"),
            ("FLOAT", "FLOAT4E2M1"), ("FLOAT", "INT4"), ("INT4", "FLOAT"), ("INT4", "FLOAT16"), ("INT4", "INT8"))),
        *(f"test_castlike_{a}_to_{b}{x}" for a, b in (
            ("FLOAT16", "FLOAT4E2M1"), ("FLOAT16", "INT4"), ("FLOAT4E2M1", "FLOAT"), ("FLOAT4E2M1", "FLOAT16"),
            ("FLOAT", "FLOAT4E2M1"), ("FLOAT", "INT4"), ("INT4", "FLOAT"), ("INT4", "FLOAT16"), ("INT4", "INT8"))
            for x in ("", "_expanded")),
        "test_quantizelinear_int4", "test_quantizelinear_float4e2m1"], _INT4_FP4),
    **dict.fromkeys([f"test_triu{x}" for x in ("", "_neg", "_one_row", "_out_neg_out", "_out_pos", "_pos",
                                               "_square", "_square_neg")], _TRILU),
    **dict.fromkeys([f"test_cast{like}_no_saturate_{a}_to_FLOAT8E4M3FN{x}"
                     for like, xs in (("", ("",)), ("like", ("", "_expanded"))) for x in xs
                     for a in ("FLOAT", "FLOAT16")], _NO_SATURATE),
    **dict.fromkeys(["test_quantizelinear", "test_quantizelinear_axis", "test_quantizelinear_blocked_asymmetric"],
                    _UINT8_ZERO_POINT),
    **dict.fromkeys(["test_averagepool_2d_ceil_last_window_starts_on_pad",
                     "test_maxpool_2d_ceil_output_size_reduce_by_one"], _CEIL_POOL),
    "test_spacetodepth_crd_mode_example": ("the parser ignores SpaceToDepth's mode='CRD' and builds the DCR "
                                           "permutation (the _expanded case, plain ops, passes)"),
    **dict.fromkeys(["test_bernoulli_double_expanded", "test_bernoulli_seed_expanded"],
                    "random values: TensorRT's RANDOM_UNIFORM generator cannot be reproduced (the runner draws "
                    "seeded torch samples of the same law)"),
    "test_attention_4d_causal_fp16_expanded": (
        "float16 rounding: ~80 float16 ops; the runner computes each layer in float32 and rounds once (TensorRT's "
        "policy), ONNX's numpy reference rounds per numpy op; 2 of 192 values differ by 2 float16 ulps and the "
        "runner is the closer to float64 (max error 4.0e-4 against 4.9e-4)"),
}


def test_differences_name_real_cases():
    unknown = sorted(set(DIFFERENCES) - set(cases()))
    assert not unknown, f"DIFFERENCES lists cases ONNX does not have: {unknown}"


@pytest.mark.parametrize("name", sorted(cases()))
def test_node_case(name):
    reason = DIFFERENCES.get(name)
    try:
        outcome(name)
    except NotApplicable as exc:
        pytest.skip(str(exc))
    except (Mismatch, netdef.reference.RunnerError) as exc:
        if reason is None:
            raise
        pytest.xfail(f"{reason} [{str(exc)[:200]}]")
    if reason is not None:
        pytest.fail(f"{name} passes but DIFFERENCES lists it ({reason}): remove it from the table")
