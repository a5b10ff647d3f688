"""Every layer configuration the shipped models emit is validated by an oracle netdef did not write.

A configuration (netdef.reference.coverage) is a layer type plus the attributes that select its
reference semantics. The shipped models (netdef.models.MODELS in float32, float16 and bfloat16, and
ResNet-18 with int8 Q/DQ) emit about a hundred. Each must occur in a network NVIDIA's ONNX parser
made, that the reference runner reproduces against ONNX's own results: an ONNX node test case the
runner passes (tests/test_reference_onnx_nodes.py) or a small ONNX graph of tests/_oracle.py GRAPHS
checked here against onnx.reference.ReferenceEvaluator. The evidence set is collected from the
networks actually validated in this process, never from a list. docs/reference.md's coverage table
is generated from the same data (python tests/_oracle.py --write-docs) and checked for freshness.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import _oracle
from _oracle import GRAPHS, UNVALIDATED, check_graph, graph_ids


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


def test_shipped_models_emit_the_expected_families(shipped):
    """The trace really covers the models: the families every one of them relies on are there."""
    kinds = {c.kind for c in shipped}
    assert {"CONVOLUTION", "SCALE", "POOLING", "MATRIX_MULTIPLY", "ATTENTION_INPUT", "NORMALIZATION", "RESIZE", "RECURRENCE",
            "QUANTIZE", "DEQUANTIZE", "CAST"} <= kinds
    dtypes = {dict(c.attrs).get("dtype") for c in shipped if c.kind == "CONVOLUTION"}
    assert {"float32", "float16", "bfloat16"} <= dtypes
    assert any("resnet18 int8" in models for models in shipped.values())


def test_every_shipped_configuration_is_validated_independently(shipped, evidence):
    unvalidated = sorted(str(c) for c in shipped if c not in evidence and str(c) not in UNVALIDATED)
    assert not unvalidated, (f"{len(unvalidated)} configurations the shipped models emit occur in no network "
                             "NVIDIA's parser made that the runner validated against an oracle:\n  "
                             + "\n  ".join(unvalidated))
    shown = {str(c) for c in shipped}
    stale = sorted(k for k in UNVALIDATED if k not in shown or any(str(c) == k for c in evidence))
    assert not stale, f"UNVALIDATED lists configurations that are validated or no longer emitted: {stale}"


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
