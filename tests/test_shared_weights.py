"""A weight used N times is one constant: stored, counted and digested once per dtype.

A Linear called 16 times once made 16 constant layers and counted its weight 16 times in
`weight_bytes`; the engine held 16 copies.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import randn, randomize

import netdef
from netdef import functional as F
from netdef import nn
from netdef.fold import fold_batchnorm


class Repeat(nn.Module):
    """One Linear applied `times` times (a weight-tied recurrent block)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.fc = nn.Linear(32, 32)

    def forward(self, x):
        for _ in range(self.times):
            x = F.relu(self.fc(x))
        return x


class TorchRepeat(torch.nn.Module):
    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.fc = torch.nn.Linear(32, 32)

    def forward(self, x):
        for _ in range(self.times):
            x = torch.relu(self.fc(x))
        return x


def _constants(net: netdef.Network) -> int:
    return sum(1 for layer in net.layers if layer.type == netdef.backend.trt().LayerType.CONSTANT)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_linear_called_16_times_is_stored_once(rng, dtype):
    torch.manual_seed(0)
    original = TorchRepeat(16).eval()
    model = Repeat(16)
    model.load_state_dict(original.state_dict())
    once = netdef.trace(Repeat(1), netdef.Input("x", (2, 32)), dtype=dtype)
    inp = netdef.Input("x", (2, 32))
    net = netdef.trace(model, inp, dtype=dtype)
    itemsize = np.dtype(np.float32 if dtype == "float32" else np.float16).itemsize
    assert net.weight_bytes == (32 * 32 + 32) * itemsize == once.weight_bytes
    assert _constants(net) == 2  # weight and bias, each one layer however often used
    model1 = Repeat(1)
    model1.load_state_dict({k: v for k, v in original.state_dict().items()})
    assert net.weights_digest == netdef.trace(model1, inp, dtype=dtype).weights_digest
    x = randn(rng, 2, 32)
    out = netdef.reference.run(net, {"x": x})["output"]
    with torch.no_grad():
        expected = original(torch.from_numpy(x))
    netdef.tolerance.assert_close(out, expected, dtype, what="16 calls of one Linear")
    report = netdef.compare(original, model, (torch.from_numpy(x),), dtype="float32")
    assert report.ok, str(report)
    plan = netdef.build(model, inp, dtype=dtype, progress=False)
    assert plan.metadata["weight_bytes"] == net.weight_bytes


def test_one_parameter_in_two_dtypes_is_two_constants():
    model = Repeat(2)
    model.fc2 = model.fc  # the same module under a second path, computed in float16 there

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = model.fc
            self.b = nn.Sequential(model.fc)

        def forward(self, x):
            return self.b(self.a(x))

    net = netdef.trace(Mixed(), netdef.Input("x", (2, 32)), dtype_overrides={"b": "float16"})
    assert net.weight_bytes == (32 * 32 + 32) * (4 + 2)
    assert _constants(net) == 4


def test_a_weight_changed_between_uses_is_not_reused():
    """A cast copy is reused only while its source still holds the same values."""
    w = np.ones((4, 4), np.float32)

    class Edit(nn.Module):
        def forward(self, x):
            y = F.linear(x, w)
            w[0, 0] = 3.0  # the second use must see the new value
            return F.linear(y, w)

    net = netdef.trace(Edit(), netdef.Input("x", (1, 4)), dtype="float16")
    assert net.weight_bytes == 2 * 16 * 2
    out = netdef.reference.run(net, {"x": np.ones((1, 4), np.float32)})["output"]
    first = np.ones((1, 4)) @ np.ones((4, 4)).T
    np.testing.assert_allclose(out, first @ w.T)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_folding_a_shared_kernel_leaves_the_other_use_intact(rng, dtype):
    """Two BatchNorms after one shared convolution: folding one must not rescale the kernel
    the other convolution layer still reads (a cast kernel is rescaled in place only when it
    is used once)."""

    class Torch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.bn1, self.bn2 = torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return torch.relu(self.bn2(self.conv(torch.relu(self.bn1(self.conv(x))))))

    class Port(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

        def forward(self, x):
            return F.relu(self.bn2(self.conv(F.relu(self.bn1(self.conv(x))))))

    torch.manual_seed(1)
    original = randomize(Torch(), seed=2)
    model = Port()
    model.load_state_dict(original.state_dict())
    x = randn(rng, 1, 4, 8, 8)
    net = netdef.trace(model, netdef.Input("x", x.shape), dtype=dtype)
    assert fold_batchnorm(net) == 2
    out = netdef.reference.run(net, {"x": x})["output"]
    with torch.no_grad():
        expected = original(torch.from_numpy(x))
    netdef.tolerance.assert_close(out, expected, dtype, what="both folded convolutions")
    np.testing.assert_array_equal(model.conv.weight.data, original.conv.weight.detach().numpy())
