"""compare() cannot pass by accident: names, calls and outputs are matched, and mismatches fail loudly."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

import netdef
from netdef import functional as F
from netdef import nn


def _net(lib):
    return lib.Sequential(OrderedDict(conv=lib.Conv2d(3, 8, 3, padding=1), bn=lib.BatchNorm2d(8),
                                      act=lib.ReLU(), pool=lib.AdaptiveAvgPool2d(1), flat=lib.Flatten(),
                                      fc=lib.Linear(8, 4)))


class Wrapped(torch.nn.Module):
    """The original with an extra wrapper: its module paths all start with `model.`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _net(torch.nn)

    def forward(self, x):
        return self.model(x)


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _twins():
    original = Wrapped().eval()
    port = _net(nn)
    port.load_state_dict({k.removeprefix("model."): v for k, v in original.state_dict().items()})
    return original, port


def test_a_port_whose_names_do_not_match_fails_naming_the_modules(x):
    original, port = _twins()
    report = netdef.compare(original, port, x)
    assert not report.ok
    unmatched = [r.port_path or r.path for r in report.rows if r.status == "unmatched"]
    assert unmatched == ["conv", "bn", "act", "pool", "flat", "fc"]
    assert report.first_failure.status == "unmatched" and "'conv'" in report.first_failure.note
    assert {"model", "model.conv", "model.fc"} <= set(report.unmatched_torch)
    assert "torch module(s) have no port counterpart" in report.summary()


@pytest.mark.parametrize("how", ["prefix", "name_map", "callable"])
def test_prefix_or_name_map_align_the_names(x, how):
    original, port = _twins()
    kwargs = {"prefix": {"prefix": "model."}, "name_map": {"name_map": {"": "model"}},
              "callable": {"name_map": lambda p: "model." + p}}[how]
    report = netdef.compare(original, port, x, **kwargs)
    assert report.ok, str(report)
    assert [r.path for r in report.rows if r.stats][:3] == ["model.conv", "model.bn", "model.act"]
    assert report.rows[0].port_path == "conv"
    assert report.unmatched_torch == ["model"]  # the wrapper itself has no port twin: listed, not failed


def test_ignore_skips_modules_on_both_sides(x):
    original, port = _twins()
    report = netdef.compare(original, port, x, prefix="model.", ignore=["model.fc", "model"])
    assert report.ok and "model.fc" not in {r.path for r in report.rows}
    assert report.unmatched_torch == []


def test_nothing_compared_fails(x):
    """A port module that produces no layers (Identity) against an original with other names."""
    class Empty(nn.Module):
        def forward(self, x):
            return x

    original = torch.nn.Sequential(torch.nn.Identity()).eval()
    report = netdef.compare(original, Empty(), x, ignore=["<output>"])
    assert not report.ok and report.compared == 0 and "nothing was compared" in report.summary()


def test_a_bare_tensor_is_accepted_and_train_mode_is_restored(x):
    original, port = _twins()
    original.train()
    original.model.bn.eval()  # a mixed state must survive too
    report = netdef.compare(original, port, x, prefix="model.")
    assert report.ok
    assert original.training and original.model.conv.training and not original.model.bn.training


class TwoBranches(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.shared = torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.shared(self.a(x)) + 2 * self.shared(self.b(x))


class TwoBranchesPort(nn.Module):
    """Calls the shared module on the branches in the other order: the same function."""

    def __init__(self, swap_bug: bool = False) -> None:
        super().__init__()
        self.a, self.b, self.shared = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 4, 3)
        self.swap_bug = swap_bug

    def forward(self, x):
        yb = self.shared(self.b(x))
        ya = self.shared(self.a(x))
        return ya + 2 * yb if not self.swap_bug else yb + 2 * ya


def test_a_shared_module_is_matched_call_by_call_whatever_the_order(x):
    original = TwoBranches().eval()
    port = TwoBranchesPort()
    port.load_state_dict(original.state_dict())
    report = netdef.compare(original, port, x)
    assert report.ok, str(report)
    assert sorted(r.label for r in report.rows if r.path == "shared") == ["shared", "shared#1"]
    wrong = TwoBranchesPort(swap_bug=True)
    wrong.load_state_dict(original.state_dict())
    bad = netdef.compare(original, wrong, x)
    assert not bad.ok and bad.first_failure.path == "<output>"  # only the sum is wrong


class Heads(torch.nn.Module):
    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.body, self.box, self.cls = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 2, 1), torch.nn.Conv2d(4, 3, 1)
        self.extra = extra

    def forward(self, x):
        y = self.body(x)
        out = {"boxes": self.box(y), "scores": self.cls(y).softmax(1)}
        if self.extra:
            out["features"] = y
        return out


class HeadsPort(nn.Module):
    def __init__(self, as_tuple: bool = False, swapped: bool = False) -> None:
        super().__init__()
        self.body, self.box, self.cls = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 1)
        self.as_tuple, self.swapped = as_tuple, swapped

    def forward(self, x):
        y = self.body(x)
        boxes, scores = self.box(y), F.softmax(self.cls(y), 1)
        if self.as_tuple:  # as ModelOutput[i]: the dict's values in order
            return (boxes, scores)
        return {"scores": boxes, "boxes": scores} if self.swapped else {"boxes": boxes, "scores": scores}


@pytest.mark.parametrize("as_tuple", [False, True])
def test_outputs_are_matched_by_structure_and_every_one_is_checked(x, as_tuple):
    original = Heads().eval()
    port = HeadsPort(as_tuple=as_tuple)
    port.load_state_dict(original.state_dict())
    report = netdef.compare(original, port, x)
    assert report.ok, str(report)
    outputs = [r.path for r in report.rows if r.path.startswith("<output")]
    assert outputs == ["<output boxes>", "<output scores>"]  # named by the original's keys either way
    # keys swapped: matched by key, so the shapes no longer agree
    swapped = HeadsPort(swapped=True)
    swapped.load_state_dict(original.state_dict())
    assert not netdef.compare(original, swapped, x).ok
    # a torch output the port does not return fails, unless ignored
    extra = Heads(extra=True).eval()
    extra.load_state_dict(original.state_dict())
    missing = netdef.compare(extra, port, x)
    assert not missing.ok and any(r.status == "unmatched" and "features" in r.path for r in missing.rows)
    if not as_tuple:
        assert netdef.compare(extra, port, x, ignore=["<output features>"]).ok


def test_a_hugging_face_model_output_is_matched_by_key(x):
    transformers = pytest.importorskip("transformers")

    class WithModelOutput(Heads):
        def forward(self, x):
            out = super().forward(x)
            return transformers.modeling_outputs.ModelOutput(boxes=out["boxes"], scores=out["scores"])

    original = WithModelOutput().eval()
    port = HeadsPort()
    port.load_state_dict(original.state_dict())
    report = netdef.compare(original, port, x)
    assert report.ok, str(report)
    assert {"<output boxes>", "<output scores>"} <= {r.path for r in report.rows}


def test_the_report_explains_its_columns_and_serializes(x):
    original, port = _twins()
    report = netdef.compare(original, port, x, prefix="model.", dtype="float16")
    text = str(report)
    for column in ("err/tol", "drift/budget", "SNR dB", "columns:", "status = ok"):
        assert column in text
    assert text.rstrip().splitlines()[-1].startswith("OK:")  # the verdict is the last line
    data = json.loads(report.to_json())
    assert data["ok"] and data["precision"] == "float16" and data["compared"] == report.compared
    bn = next(r for r in data["rows"] if r["path"] == "model.bn")
    assert bn["drift"]["snr_db"] > 20 and 0 <= bn["err_over_tol"] < 1
