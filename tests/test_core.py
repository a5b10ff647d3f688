"""Core tracing: module paths become layer names, dtypes live in the graph, builds serialize."""
from __future__ import annotations

import pytest

import netdef
from netdef import functional as F
from netdef import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding="same"), nn.ReLU())

    def forward(self, x):
        y = self.relu(self.conv1(x))
        return F.add(self.body(y), y)


def test_layers_named_after_module_paths():
    net = netdef.trace(Block(), netdef.Input("x", (1, 3, 16, 16)))
    names = [layer.name for layer in net.layers]
    assert names == ["conv1", "relu", "body.0", "body.1", "add"]
    assert net.module_outputs["body"] == [["body.1"]]
    assert net.outputs == ["output"]


def test_float16_graph_casts_at_the_boundary():
    net = netdef.trace(Block(), netdef.Input("x", (2, 3, 8, 8)), dtype="float16")
    conv = next(layer for layer in net.layers if layer.name == "conv1")
    assert conv.get_output(0).dtype == netdef.dtypes.to_trt("float16")
    out = net.network.get_output(0)
    assert out.dtype == netdef.dtypes.to_trt("float32")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_build_dynamic_batch(dtype):
    plan = netdef.build(Block(), netdef.Input("x", (("batch", 1, 2, 4), 3, 16, 16)), dtype=dtype,
                        progress=False)
    assert len(plan) > 1000
    assert plan.metadata["dtype"] == dtype
    assert plan.metadata["inputs"][0]["min"] == [1, 3, 16, 16]


def test_op_outside_trace_names_the_user_line():
    with pytest.raises(netdef.TraceError, match="test_core.py"):
        F.relu(None)


def test_rejected_layer_names_module_and_line():
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3)  # input has 3 channels

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(netdef.TraceError) as info:
        netdef.trace(Bad(), netdef.Input("x", (1, 3, 8, 8)))
    assert "conv" in str(info.value) and "test_core.py" in str(info.value)


def test_inputs_sharing_a_named_dimension_must_agree():
    a = netdef.Input("a", (("batch", 1, 4, 8), 3))
    b = netdef.Input("b", (("batch", 1, 4, 8), 5))
    net = netdef.trace(lambda x, y: F.add(x.sum(1), y.sum(1)), a, b)
    assert [i.name for i in net.inputs] == ["a", "b"]
    c = netdef.Input("c", (("batch", 1, 2, 16), 5))
    with pytest.raises(ValueError, match=r"dimension 'batch' is \(1, 4, 8\) in input 'a' but \(1, 2, 16\) in input 'c'"):
        netdef.trace(lambda x, y: F.add(x.sum(1), y.sum(1)), a, c)


def test_bad_input_specs_are_clear():
    with pytest.raises(ValueError, match=r"Input 'x': dynamic dimension \(4, 2, 8\) needs 0 <= min <= opt <= max"):
        netdef.Input("x", ((4, 2, 8), 3))
    with pytest.raises(ValueError, match="a dimension is an int"):
        netdef.Input("x", ("big", 3))


def test_describe_plan_without_sidecar(tmp_path):
    from netdef.inspect import describe_plan

    plan = netdef.build(Block(), netdef.Input("x", (1, 3, 8, 8)), progress=False)
    path = tmp_path / "foreign.plan"
    path.write_bytes(bytes(plan))
    text = describe_plan(str(path))
    assert f"{len(plan):,} bytes" in text and "no sidecar" in text


def test_output_names_must_differ_from_inputs_and_each_other():
    import pytest

    import netdef
    from netdef import functional as F
    from netdef import nn

    class Two(nn.Module):
        def forward(self, boxes):
            return F.relu(boxes), F.sigmoid(boxes)

    spec = netdef.Input("boxes", (2, 4))
    with pytest.raises(netdef.TraceError, match="output name 'boxes' is also the name of an input"):
        netdef.trace(Two(), spec, output_names=["boxes", "scores"])
    with pytest.raises(netdef.TraceError, match="output name 'a' is also the name of another output"):
        netdef.trace(Two(), spec, output_names=["a", "a"], dtype="float16")
    net = netdef.trace(Two(), spec, output_names=["kept", "scores"])
    assert net.outputs == ["kept", "scores"]
