"""Every layer configuration the shipped models emit is validated by an oracle netdef did not write.

A configuration (netdef.reference.coverage) is a layer type plus the attributes that select its
reference semantics. The shipped models (netdef.models.MODELS in float32, float16 and bfloat16,
ResNet-18 with int8 Q/DQ, GPT-2 and Llama from small `transformers` configs in both attention
emissions, YOLOv5's DetectionModel and PointPillars) emit about 230. Each must occur in a network
NVIDIA's ONNX parser made, that the reference runner reproduces against ONNX's own results: an
ONNX node test case the runner passes (tests/test_reference_onnx_nodes.py) or a small ONNX graph
of tests/_oracle.py GRAPHS checked here against onnx.reference.ReferenceEvaluator. A configuration
the parser cannot make is listed in UNVALIDATED with the reason and validated against torch
instead (TORCH: a netdef network made as the models make it, against torch/torchvision). The
evidence set is collected from the networks actually validated in this process, never from a
list. docs/reference.md's coverage table is generated from the same data
(python tests/_oracle.py --write-docs) and checked for freshness.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import _oracle
from _oracle import (
    GRAPHS,
    UNVALIDATED,
    by_parser,
    check_graph,
    check_torch,
    graph_ids,
    torch_ids,
)


@pytest.fixture(scope="module")
def shipped() -> dict:
    return _oracle.shipped_configurations()


@pytest.fixture(scope="module")
def evidence() -> dict:
    return _oracle.evidence()


@pytest.mark.parametrize("gid", graph_ids())
def test_graph_matches_onnx_reference(gid):
    """Each evidence graph, parsed by NVIDIA's parser, runs as onnx.reference computes it."""
    assert check_graph(gid)


def test_graphs_cover_every_dtype_they_declare():
    assert all(spec.dtypes for spec in GRAPHS.values())
    assert len(graph_ids()) >= 150


@pytest.mark.parametrize("tid", torch_ids())
def test_torch_check_matches(tid):
    """Each torch check: the netdef-made network, run by the reference runner, as torch computes it."""
    assert check_torch(tid)


def test_shipped_models_emit_the_expected_families(shipped):
    """The trace really covers the models: the families every one of them relies on are there."""
    from netdef import functional as F

    kinds = {c.kind for c in shipped}
    assert {"CONVOLUTION", "SCALE", "POOLING", "MATRIX_MULTIPLY", "NORMALIZATION", "RESIZE", "RECURRENCE", "QUANTIZE",
            "DEQUANTIZE", "CAST", "NMS", "DECONVOLUTION"} <= kinds
    fused = {"ATTENTION_INPUT": "attention", "ROTARY_EMBEDDING": "rotary", "KV_CACHE_UPDATE": "kv_cache"}
    assert {k for k, op in fused.items() if F.has_layer(op)} <= kinds
    dtypes = {dict(c.attrs).get("dtype") for c in shipped if c.kind == "CONVOLUTION"}
    assert {"float32", "float16", "bfloat16"} <= dtypes
    models = set().union(*shipped.values())
    assert {"resnet18 int8", "gpt2", "gpt2 step", "llama", "llama step", "yolov5n DetectionModel", "pointpillars"} <= models
    if any(F.has_layer(op) for op in fused.values()):  # then both emissions are traced
        decomposed = {c.kind for c, m in shipped.items() if "llama step decomposed" in m}
        assert decomposed and not decomposed & set(fused)


def test_every_shipped_configuration_is_validated_independently(shipped, evidence):
    unvalidated = sorted(str(c) for c in shipped if not by_parser(evidence.get(c, [])) and str(c) not in UNVALIDATED)
    assert not unvalidated, (f"{len(unvalidated)} configurations the shipped models emit occur in no network "
                             "NVIDIA's parser made that the runner validated against an oracle:\n  "
                             + "\n  ".join(unvalidated))
    shown = {str(c) for c in shipped}
    stale = sorted(k for k in UNVALIDATED if k not in shown or any(str(c) == k and by_parser(v) for c, v in evidence.items()))
    assert not stale, f"UNVALIDATED lists configurations that are validated or no longer emitted: {stale}"


def test_configurations_the_parser_cannot_make_are_validated_against_torch(shipped, evidence):
    torch_only = {str(c): [n for n in names if n.startswith("torch ")] for c, names in evidence.items()}
    missing = sorted(k for k in UNVALIDATED if not torch_only.get(k))
    assert not missing, f"UNVALIDATED configurations without a passing torch check: {missing}"


def test_docs_coverage_table_is_fresh(shipped, evidence):
    assert _oracle.docs_table() == _oracle.markdown(shipped, evidence), (
        "docs/reference.md's coverage table is stale: run `python tests/_oracle.py --write-docs`")


def test_configurations_separate_the_semantics_the_runner_distinguishes():
    """Layers that differ only in sizes share a configuration; layers whose reference semantics
    differ (uneven padding, padding in the average, a cropping transposed convolution, a float->int
    cast, a vector operand, the output dtype) do not."""
    import numpy as np

    import netdef
    from netdef.reference.coverage import configurations

    t = netdef.backend.trt()
    net = netdef.Network()
    n = net.network
    x = n.add_input("x", t.float32, (1, 4, 9, 9))

    def pool(kind, window, pre, post, exclude=True):
        layer = n.add_pooling_nd(x, kind, window)
        layer.pre_padding, layer.post_padding = pre, post
        layer.average_count_excludes_padding = exclude
        return layer

    pool(t.PoolingType.MAX, (3, 3), (1, 1), (1, 1))
    pool(t.PoolingType.MAX, (5, 5), (2, 2), (2, 2))  # same configuration: only sizes differ
    pool(t.PoolingType.MAX, (3, 3), (0, 0), (1, 1))  # uneven padding (ceil_mode)
    pool(t.PoolingType.AVERAGE, (3, 3), (1, 1), (1, 1), exclude=True)
    pool(t.PoolingType.AVERAGE, (3, 3), (1, 1), (1, 1), exclude=False)
    kernel = net.weights(np.full((4, 2, 3, 3), 0.5, np.float32))
    for pad in ((0, 0), (1, 1)):
        deconv = n.add_deconvolution_nd(x, 2, (3, 3), kernel, net.weights(np.zeros(0, np.float32)))
        deconv.padding_nd = pad  # padding crops a transposed convolution's output
    n.add_cast(x, t.int32)
    n.add_cast(x, t.float16)
    vec = n.add_constant((9,), net.weights(np.linspace(-1, 1, 9, dtype=np.float32))).get_output(0)
    n.add_matrix_multiply(x, t.MatrixOperation.NONE, vec, t.MatrixOperation.VECTOR)
    found = sorted(str(c) for c in configurations(net))
    assert found == [
        "CAST(float32->float16)",
        "CAST(float32->int32)",
        "CONSTANT(float32)",
        ("DECONVOLUTION(nd=2d, groups=1, stride=1, dilation=1, padding=crops, padding_mode=EXPLICIT_ROUND_DOWN, "
         "kernel=weights, bias=none, float32)"),
        ("DECONVOLUTION(nd=2d, groups=1, stride=1, dilation=1, padding=none, padding_mode=EXPLICIT_ROUND_DOWN, "
         "kernel=weights, bias=none, float32)"),
        "MATRIX_MULTIPLY(op0=NONE, op1=VECTOR, batch=broadcast, float32)",
        "POOLING(AVERAGE, nd=2d, padding=symmetric, padding_mode=EXPLICIT_ROUND_DOWN, count=excludes padding, float32)",
        "POOLING(AVERAGE, nd=2d, padding=symmetric, padding_mode=EXPLICIT_ROUND_DOWN, count=includes padding, float32)",
        "POOLING(MAX, nd=2d, padding=symmetric, padding_mode=EXPLICIT_ROUND_DOWN, float32)",
        "POOLING(MAX, nd=2d, padding=uneven, padding_mode=EXPLICIT_ROUND_DOWN, float32)",
    ]


def test_configurations_separate_loops_attention_and_nms():
    """Loop layers by direction and output kind, attention by causal kind, mask and grouped heads,
    NMS by box format and the candidates' dtype (not the indices' int32/int64)."""
    import numpy as np

    import netdef
    from netdef import functional as F
    from netdef.reference.coverage import configurations

    def found(net, kind):
        return sorted(str(c) for c in configurations(net) if c.kind == kind)

    lstm = netdef.nn.LSTM(3, 4, bidirectional=True)
    for _, p in lstm.named_parameters():
        p.data = np.full(p.shape, 0.5, np.float32)
    net = netdef.trace(lstm, netdef.Input("x", (5, 2, 3)))
    assert found(net, "ITERATOR") == ["ITERATOR(reverse=false, float32)", "ITERATOR(reverse=true, float32)"]
    assert {"LOOP_OUTPUT(CONCATENATE, float32)", "LOOP_OUTPUT(REVERSE, float32)"} <= set(found(net, "LOOP_OUTPUT"))

    if F.has_layer("attention"):
        def attend(q, k, v):
            allowed = np.tril(np.ones((3, 3), bool))
            return (F.scaled_dot_product_attention(q, k, v),
                    F.scaled_dot_product_attention(q, k[:, :2], v[:, :2], is_causal=True, enable_gqa=True),
                    F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
                    F.scaled_dot_product_attention(q, k, v, attn_mask=np.where(allowed, 0.0, -1.0).astype(np.float32)))
        net = netdef.trace(attend, *(netdef.Input(n, (2, 4, 3, 8)) for n in "qkv"))
        assert found(net, "ATTENTION_INPUT") == [
            f"ATTENTION_INPUT(norm=SOFTMAX, causal={c}, mask={m}, heads={h}, float32)" for c, m, h in (
                ("NONE", "added", "same"), ("NONE", "bool", "same"), ("NONE", "none", "same"),
                ("UPPER_LEFT", "none", "grouped"))]

    def nms(boxes, scores):
        return (netdef.ops.multiclass_nms(boxes, scores, 0.5, 0.1, 4)[3],
                netdef.ops.multiclass_nms(boxes, scores, 0.5, 0.1, 4, box_format="cxcywh")[3])
    inputs = (netdef.Input("boxes", (1, 6, 4)), netdef.Input("scores", (1, 6, 2)))
    with F.emission(nms="layer"):
        assert found(netdef.trace(nms, *inputs), "NMS") == [
            "NMS(box_format=CENTER_SIZES, boxes=shared, float32)", "NMS(box_format=CORNER_PAIRS, boxes=shared, float32)"]
        assert found(netdef.trace(nms, *inputs, dtype="float16"), "NMS")[0].endswith("float16)")
    with F.emission(nms="loop"):
        assert not found(netdef.trace(nms, *inputs), "NMS")
