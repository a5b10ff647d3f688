"""What a new user gets wrong first: input shapes, reshape sizes from a dynamic x.shape, memory sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from netdef import nn
from netdef.build import memory_size
from netdef.models.lenet import LeNet5

from helpers import randn


@pytest.mark.parametrize("shape, message", [
    ((0, 3, 224, 224), "a static dimension must be >= 1, got 0"),
    ((1, -3, 8), "a static dimension must be >= 1, got -3"),
    (((0, 0, 4), 3), r"needs opt >= 1"),
    (((2, 1, 4), 3), r"needs 0 <= min <= opt <= max"),
    ((1 << 40, 1 << 40), "overflows 64 bits"),
    (((True, 2, 4), 3), "a dimension is an int"),
])
def test_input_refuses_empty_and_impossible_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        netdef.Input("x", shape)


def test_min_zero_is_an_input_that_may_be_empty():
    """0 keeps one meaning: the minimum of a dynamic range. TensorRT builds it and the network runs empty."""
    model = LeNet5()
    x = netdef.Input("x", ((0, 1, 4), 1, 28, 28))
    assert x.min_shape == (0, 1, 28, 28)
    assert len(netdef.build(model, x, progress=False)) > 100_000
    net = netdef.trace(model, x)
    assert tuple(netdef.reference.run(net, {"x": np.zeros((0, 1, 28, 28), np.float32)})["output"].shape) == (0, 10)


def test_inputs_tensorrt_refuses_are_trace_errors_naming_the_input():
    with pytest.raises(netdef.TraceError, match="two inputs are named 'x'"):
        netdef.trace(lambda a, b: a + b, netdef.Input("x", (1, 4)), netdef.Input("x", (2, 4)))
    with pytest.raises(netdef.TraceError, match=r"TensorRT rejected input 'x' of shape \(99999999999, 1, 28, 28\)"):
        netdef.trace(LeNet5(), netdef.Input("x", (99999999999, 1, 28, 28)))


def test_more_inputs_than_forward_takes():
    with pytest.raises(netdef.TraceError, match=r"LeNet5.forward\(x\) cannot take the 2 input\(s\) 'x', 'y'"):
        netdef.trace(LeNet5(), netdef.Input("x", (1, 1, 28, 28)), netdef.Input("y", (1, 1, 28, 28)))


class Head(nn.Module):
    """A port that folds pairs of rows into the batch: the reshape a user writes with x.shape."""

    def __init__(self, use_size: bool) -> None:
        super().__init__()
        self.use_size = use_size

    def forward(self, x):
        if self.use_size:
            return x.reshape(x.size(0) * 2, -1)
        return x.reshape(x.shape[0] * 2, -1)  # x.shape[0] is -1 when the batch is dynamic


class Net(nn.Module):
    def __init__(self, use_size: bool) -> None:
        super().__init__()
        self.head = Head(use_size)

    def forward(self, x):
        return self.head(x)


def test_negative_reshape_size_from_a_dynamic_shape_names_module_and_line():
    x = netdef.Input("x", (("batch", 1, 2, 4), 4, 3))
    with pytest.raises(netdef.TraceError) as info:
        netdef.trace(Net(use_size=False), x)
    msg = str(info.value)
    assert "size -2 at position 0 of (-2, -1) is negative" in msg and "in module 'head'" in msg
    assert "x.size(0)" in msg and "test_first_use.py" in msg and "x.shape[0] * 2" in msg

    net = netdef.trace(Net(use_size=True), x)  # the suggested fix works at run time
    data = randn(np.random.default_rng(0), 3, 4, 3)
    out = netdef.reference.run(net, {"x": data})["output"]
    torch.testing.assert_close(out, torch.from_numpy(data).reshape(6, -1), rtol=0, atol=0)


def test_two_inferred_sizes_and_negative_expand_get_the_hint():
    x = netdef.Input("x", (("batch", 1, 2, 4), 4, 3))
    with pytest.raises(netdef.TraceError, match=r"only one dimension can be inferred.*x\.size\(0\)"):
        netdef.trace(lambda t: t.view(t.shape[0], -1), x)
    with pytest.raises(netdef.TraceError, match=r"expand: size -3 at position 0 .* is negative"):
        netdef.trace(lambda t: t.unsqueeze(0).expand(t.shape[0] * 3, -1, 4, 3), x)


@pytest.mark.parametrize("text, size", [
    ("4096", 4096), (4096, 4096), ("0", 0), ("512M", 512 << 20), ("4G", 4 << 30), ("4GB", 4 << 30),
    ("1.5GiB", 3 << 29), ("1k", 1024), (" 2 MiB ", 2 << 20), ("1T", 1 << 40),
])
def test_memory_sizes(text, size):
    assert memory_size(text) == size


@pytest.mark.parametrize("text, message", [
    ("-5", "is negative"), (-5, "is negative"), ("-1G", "is negative"), ("1.5", "whole number"),
    ("4Q", "expected bytes or a number with a unit"), ("", "expected bytes"), (True, "expected bytes"),
    (2.0, "expected bytes"), ("nan", "expected bytes"), ("1e400G", "too large"),
])
def test_bad_memory_sizes(text, message):
    with pytest.raises(netdef.BuildError, match=message):
        memory_size(text)


def test_build_takes_a_workspace_size_with_a_unit():
    x = netdef.Input("x", (1, 1, 28, 28))
    assert len(netdef.build(LeNet5(), x, workspace="64M", progress=False)) > 100_000
    with pytest.raises(netdef.BuildError, match="is negative"):
        netdef.build(LeNet5(), x, workspace=-5, progress=False)
