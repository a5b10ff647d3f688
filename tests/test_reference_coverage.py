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
    assert {"CONVOLUTION", "SCALE", "POOLING", "MATRIX_MULTIPLY", "SOFTMAX", "NORMALIZATION", "RESIZE",
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
