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

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from _oracle import Mismatch, NotApplicable, cases, check_case

import netdef.reference

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
    **dict.fromkeys([f"test_attention_4d_{c}" for c in (
        "causal_nonpad_batch_prefill", "causal_nonpad_continued_prefill", "causal_nonpad_negative_offset_structural_empty",
        "gqa_causal_nonpad_decode", "gqa_causal_nonpad_decode_fp16")],
        "the parser drops Attention's nonpad_kv_seqlen input, so the parsed network attends over every key"),
    **dict.fromkeys(["test_attention_bidirectional_window", "test_attention_local_window"],
                    "the parser drops Attention's left_window_size/right_window_size, so the parsed network "
                    "attends over every key"),
    **dict.fromkeys(["test_lstm_batchwise", "test_gru_batchwise", "test_simple_rnn_batchwise"],
                    "the parser ignores layout=1 (batch-major) and iterates over the batch axis; TensorRT itself "
                    "declares Y_h as (1, 1, 4) where ONNX expects (3, 1, 4)"),
    "test_nonmaxsuppression_two_classes": ("TensorRT orders the selected rows of a batch item by decreasing score "
                                           "across classes; ONNX lists them class by class (the same rows)"),
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
        check_case(name)
    except NotApplicable as exc:
        pytest.skip(str(exc))
    except (Mismatch, netdef.reference.RunnerError) as exc:
        if reason is None:
            raise
        pytest.xfail(f"{reason} [{str(exc)[:200]}]")
    if reason is not None:
        pytest.fail(f"{name} passes but DIFFERENCES lists it ({reason}): remove it from the table")
