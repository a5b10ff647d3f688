"""BatchNorm folding at build time: numerically the same network, fewer layers to build."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef
from helpers import randn, randomize
from netdef.build import prepare
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


BATCHNORMS = (netdef.nn.BatchNorm1d, netdef.nn.BatchNorm2d, netdef.nn.BatchNorm3d)


def _shape(name: str, entry) -> tuple:
    """A small input each shipped model takes (image models at 64x64 where they accept it)."""
    if name in ("lenet5", "vit_b_16") or len(entry.input_shape) != 4 or name == "crnn":
        return entry.input_shape
    return (1, entry.input_shape[1], 64, 64)


@pytest.mark.parametrize("name", sorted(__import__("netdef.models", fromlist=["MODELS"]).MODELS))
def test_every_shipped_model_folded_equals_unfolded(name):
    """What build folds computes what compare's stage one checks, for every shipped model."""
    from netdef.models import MODELS, create

    rng = np.random.default_rng(7)
    model = create(name)
    for _, p in model.named_parameters():  # random values drawn at once (the lazy defaults are slower)
        p.data = (rng.standard_normal(p.shape, dtype=np.float32) * 0.1).astype(p.dtype)
    for m in model.modules():
        if isinstance(m, BATCHNORMS):
            m.running_mean = rng.standard_normal(m.num_features).astype(np.float32) * 0.1
            m.running_var = rng.uniform(0.5, 1.5, m.num_features).astype(np.float32)
    spec = netdef.Input("x", _shape(name, MODELS[name]))
    x = rng.standard_normal(spec.shape).astype(np.float32)
    unfolded = netdef.trace(model, spec)
    folded = prepare(model, spec)
    expect_folds = any(isinstance(m, BATCHNORMS) for m in model.modules())
    assert (folded.folded_batchnorms > 0) == expect_folds
    before, after = netdef.reference.run(unfolded, {"x": x}), netdef.reference.run(folded, {"x": x})
    for key in before:
        netdef.tolerance.assert_close(after[key], before[key], "float32", what=f"{name} output {key}")
