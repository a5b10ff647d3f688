"""BatchNorm folding at build time: numerically the same network, fewer layers to build."""
from __future__ import annotations

import pytest
import torch

import netdef
from helpers import randn, randomize
from netdef.fold import fold_batchnorm
from netdef.models.resnet import resnet18


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_folded_resnet_matches_unfolded(rng, dtype):
    import torchvision

    original = randomize(torchvision.models.resnet18(weights=None), seed=3)
    model = resnet18()
    model.load_state_dict(original.state_dict())
    x = randn(rng, 2, 3, 64, 64)
    inp = netdef.Input("x", x.shape)
    before = netdef.reference.run(netdef.trace(model, inp, dtype=dtype), {"x": x})["output"]
    net = netdef.trace(model, inp, dtype=dtype)
    assert fold_batchnorm(net) == 20  # every BatchNorm of ResNet-18 follows a convolution
    after = netdef.reference.run(net, {"x": x})["output"]
    with torch.no_grad():
        expected = original(torch.from_numpy(x))
    netdef.tolerance.assert_close(after, expected, dtype, what="folded network")
    netdef.tolerance.assert_close(after, before, dtype, what="folded vs unfolded")


def test_no_fold_when_conv_output_is_shared():
    from netdef import nn

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is used twice: folding would change `y`

    net = netdef.trace(Shared(), netdef.Input("x", (1, 3, 8, 8)))
    assert fold_batchnorm(net) == 0


def test_build_folds_and_records_it():
    plan = netdef.build(resnet18(), netdef.Input("x", (1, 3, 32, 32)), progress=False)
    assert plan.metadata["folded_batchnorms"] == 20
    net = netdef.trace(resnet18(), netdef.Input("x", (1, 3, 32, 32)))
    plan = netdef.build(net, progress=False)  # a given network is not rewritten unless asked
    assert plan.metadata["folded_batchnorms"] == 0
