"""nn.LSTM / nn.GRU / nn.RNN and their cells against torch.nn: state_dict keys, every option, float32
and float16 by compare, several sequence lengths in one dynamic profile, planted port mistakes."""
from __future__ import annotations

from typing import Any

import pytest
import torch

import netdef
import netdef.reference as R
from netdef import functional as F
from netdef import nn
from netdef.nn import rnn as rnn_module
from netdef.tolerance import assert_close

IN, HID = 5, 6


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair(cls: str, seed: int = 0, **kw: Any) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    original = getattr(torch.nn, cls)(**kw).eval()
    port = getattr(nn, cls)(**kw)
    port.load_state_dict(original.state_dict())
    return original, port


STATE_DICT_CASES = [
    ("LSTM", {"input_size": IN, "hidden_size": HID, "num_layers": 3, "bidirectional": True, "proj_size": 2}),
    ("LSTM", {"input_size": IN, "hidden_size": HID, "num_layers": 2, "bias": False, "batch_first": True,
              "dropout": 0.25}),
    ("GRU", {"input_size": IN, "hidden_size": HID, "num_layers": 2, "bidirectional": True, "bias": False}),
    ("RNN", {"input_size": IN, "hidden_size": HID, "num_layers": 2, "nonlinearity": "relu", "bidirectional": True}),
    ("LSTMCell", {"input_size": IN, "hidden_size": HID}),
    ("GRUCell", {"input_size": IN, "hidden_size": HID, "bias": False}),
    ("RNNCell", {"input_size": IN, "hidden_size": HID, "nonlinearity": "relu"}),
]


@pytest.mark.parametrize("cls,kw", STATE_DICT_CASES, ids=[c for c, _ in STATE_DICT_CASES])
def test_state_dict_keys_shapes_and_repr_are_torchs(cls: str, kw: dict) -> None:
    original = getattr(torch.nn, cls)(**kw)
    port = getattr(nn, cls)(**kw)
    ours, theirs = port.state_dict(), original.state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert port.load_state_dict(theirs) == ([], [])
    assert repr(port) == repr(original)


class WithState(torch.nn.Module):
    """Passes the initial state as network inputs (compare feeds flat tensors)."""

    def __init__(self, rnn: Any, lstm: bool) -> None:
        super().__init__()
        self.rnn, self.lstm = rnn, lstm

    def forward(self, x, h0, c0=None):
        return self.rnn(x, (h0, c0) if self.lstm else h0)


class PortWithState(nn.Module):
    def __init__(self, rnn: Any, lstm: bool) -> None:
        super().__init__()
        self.rnn, self.lstm = rnn, lstm

    def forward(self, x, h0, c0=None):
        return self.rnn(x, (h0, c0) if self.lstm else h0)


# (class, options, input shape, initial state given?)
MODULE_CASES = [
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}, (3, 7, IN), True),
    ("LSTM", {"proj_size": 3, "bias": False, "num_layers": 2, "dropout": 0.3}, (7, 2, IN), False),
    ("LSTM", {"bidirectional": True, "proj_size": 4}, (7, IN), True),  # unbatched
    ("GRU", {"num_layers": 2, "bidirectional": True}, (7, 3, IN), True),
    ("GRU", {"batch_first": True, "bias": False}, (2, 7, IN), False),
    ("GRU", {"bidirectional": True}, (7, IN), True),  # unbatched
    ("RNN", {"nonlinearity": "relu", "bidirectional": True, "batch_first": True}, (3, 7, IN), False),
    ("RNN", {"num_layers": 2, "dropout": 0.5}, (7, 3, IN), True),
    ("RNN", {"bidirectional": True}, (7, IN), True),  # unbatched
]


def initial_state(cls: str, kw: dict, shape: tuple) -> list[torch.Tensor]:
    rows = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    batch = () if len(shape) == 2 else (shape[0] if kw.get("batch_first") else shape[1],)
    h = torch.randn(rows, *batch, kw.get("proj_size") or HID, generator=gen(11))
    return [h, torch.randn(rows, *batch, HID, generator=gen(12))] if cls == "LSTM" else [h]


@pytest.mark.parametrize("case", MODULE_CASES, ids=[f"{c}-{i}" for i, (c, *_) in enumerate(MODULE_CASES)])
def test_modules_match_torch_in_float32_and_float16(case: tuple) -> None:
    cls, kw, shape, with_state = case
    original, port = pair(cls, input_size=IN, hidden_size=HID, **kw)
    inputs = [torch.randn(*shape, generator=gen(1))]
    if with_state:
        inputs += initial_state(cls, kw, shape)
        original, port = WithState(original, cls == "LSTM"), PortWithState(port, cls == "LSTM")
    for dtype in ("float32", "float16"):
        report = netdef.compare(original, port, inputs, dtype=dtype)
        assert report.ok, str(report)
        if with_state:  # output, h_n (and c_n): a row per tensor the recurrent module returns
            assert sum(r.path == "rnn" for r in report.rows) == (3 if cls == "LSTM" else 2)


CELL_CASES = [
    ("LSTMCell", {}, (3, IN), True),
    ("LSTMCell", {"bias": False}, (IN,), False),
    ("GRUCell", {}, (3, IN), False),
    ("GRUCell", {}, (IN,), True),
    ("RNNCell", {"nonlinearity": "relu"}, (3, IN), True),
    ("RNNCell", {}, (3, IN), False),
]


class CellWithState(torch.nn.Module):
    def __init__(self, cell: Any, lstm: bool) -> None:
        super().__init__()
        self.cell, self.lstm = cell, lstm

    def forward(self, x, h, c=None):
        return self.cell(x, (h, c) if self.lstm else h)


class PortCellWithState(nn.Module):
    def __init__(self, cell: Any, lstm: bool) -> None:
        super().__init__()
        self.cell, self.lstm = cell, lstm

    def forward(self, x, h, c=None):
        return self.cell(x, (h, c) if self.lstm else h)


@pytest.mark.parametrize("case", CELL_CASES, ids=[f"{c}-{i}" for i, (c, *_) in enumerate(CELL_CASES)])
def test_cells_match_torch_in_float32_and_float16(case: tuple) -> None:
    cls, kw, shape, with_state = case
    original, port = pair(cls, input_size=IN, hidden_size=HID, **kw)
    inputs = [torch.randn(*shape, generator=gen(2))]
    if with_state:
        h = torch.randn(*shape[:-1], HID, generator=gen(3))
        inputs += [h, torch.randn(*shape[:-1], HID, generator=gen(4))] if cls == "LSTMCell" else [h]
        original, port = CellWithState(original, cls == "LSTMCell"), PortCellWithState(port, cls == "LSTMCell")
    for dtype in ("float32", "float16"):
        report = netdef.compare(original, port, inputs, dtype=dtype)
        assert report.ok, str(report)


def test_one_network_takes_every_length_and_batch_of_its_dynamic_profile() -> None:
    """The LSTM is loops, not unrolled: one traced network runs every (batch, length) in its profile."""
    original, port = pair("LSTM", input_size=IN, hidden_size=HID, num_layers=2, bidirectional=True, proj_size=3,
                          batch_first=True)
    x_spec = netdef.Input("x", (("batch", 1, 2, 3), ("T", 1, 6, 12), IN))
    nets = {dt: netdef.trace(port, x_spec, dtype=dt, output_names=["y", "h_n", "c_n"])
            for dt in ("float32", "float16")}
    kinds = [layer.type.name for layer in nets["float32"].layers]
    assert kinds.count("ITERATOR") == 4 and kinds.count("RECURRENCE") == 8  # 2 layers x 2 directions
    for batch, steps in ((1, 1), (2, 5), (3, 12)):
        x = torch.randn(batch, steps, IN, generator=gen(steps))
        with torch.no_grad():
            y, (h_n, c_n) = original(x)
        ours = R.run(nets["float32"], {"x": x})
        half = R.run(nets["float16"], {"x": x})
        for name, want in (("y", y), ("h_n", h_n), ("c_n", c_n)):
            assert ours[name].shape == want.shape
            assert_close(ours[name], want, "float32", what=f"{name} at batch {batch}, T={steps}")
            # reduced precision is drift from the float32 port
            assert_close(half[name], ours[name], "float16", what=f"float16 {name} at batch {batch}, T={steps}")


def test_lstm_engine_builds_with_a_dynamic_sequence_length() -> None:
    port = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    plan = netdef.build(port, netdef.Input("x", (("batch", 1, 2, 4), ("T", 1, 32, 256), 8)), dtype="float16",
                        progress=False)
    spec = plan.metadata["inputs"][0]
    assert spec["min"] == [1, 1, 8] and spec["max"] == [4, 256, 8] and len(plan) > 0


def test_bad_inputs_name_the_module_and_the_users_line() -> None:
    with pytest.raises(netdef.TraceError, match=r"LSTM: input.size\(-1\) must be equal to input_size. Expected 5, "
                                                 r"got 4 in module 'rnn'(.|\n)*test_nn_rnn.py"):
        netdef.trace(PortWithState(nn.LSTM(IN, HID), True), netdef.Input("x", (7, 2, 4)),
                     netdef.Input("h0", (1, 2, HID)), netdef.Input("c0", (1, 2, HID)))
    with pytest.raises(netdef.TraceError, match=r"GRU: hx has shape \(2, 2, 6\), expected \(1, 2, 6\)"):
        netdef.trace(PortWithState(nn.GRU(IN, HID), False), netdef.Input("x", (7, 2, IN)),
                     netdef.Input("h0", (2, 2, HID)))
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(IN, HID, proj_size=HID)


# ---- planted mistakes: compare names the recurrent module -------------------------------------------
class Tagger(torch.nn.Module):
    """A small sequence tagger around a bidirectional LSTM: proj -> rnn -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(IN, 8)
        self.rnn = torch.nn.LSTM(8, HID, bidirectional=True)
        self.head = torch.nn.Linear(2 * HID, 3)

    def forward(self, x, h0, c0):
        y, _ = self.rnn(self.proj(x), (h0, c0))
        return self.head(y)


class TaggerPort(nn.Module):
    def __init__(self, swap_state: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(IN, 8)
        self.rnn = nn.LSTM(8, HID, bidirectional=True)
        self.head = nn.Linear(2 * HID, 3)
        self.swap_state = swap_state

    def forward(self, x, h0, c0):
        y, _ = self.rnn(self.proj(x), (c0, h0) if self.swap_state else (h0, c0))
        return self.head(y)


def igfo_step(xw, h, c, w_hh, b_hh, w_hr=None):
    i, g, f, o = F.chunk(xw + F.linear(h, w_hh, b_hh), 4, -1)  # torch's order is i, f, g, o
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c), c


MISTAKES = {
    "gate order i,g,f,o": lambda mp: mp.setattr(rnn_module, "_lstm_step", igfo_step),
    "bias_hh left out": lambda mp: mp.setattr(rnn_module, "_lstm_step",
                                              lambda xw, h, c, w_hh, b_hh, w_hr=None:
                                              REAL_LSTM_STEP(xw, h, c, w_hh, None, w_hr)),
    "reverse direction not reversed": lambda mp: mp.setattr(
        rnn_module.F, "scan", lambda *a, **k: REAL_SCAN(*a, **{**k, "reverse": False})),
    "h0 and c0 swapped": None,
}
REAL_LSTM_STEP, REAL_SCAN = rnn_module._lstm_step, F.scan


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_planted_lstm_mistakes_are_found_in_the_lstm(mistake: str, dtype: str, monkeypatch: Any) -> None:
    torch.manual_seed(5)
    original = Tagger().eval()
    port = TaggerPort()
    port.load_state_dict(original.state_dict())
    inputs = [torch.randn(7, 2, IN, generator=gen(6)), torch.randn(2, 2, HID, generator=gen(7)),
              torch.randn(2, 2, HID, generator=gen(8))]
    assert netdef.compare(original, port, inputs, dtype=dtype).ok  # the port as written is right
    if MISTAKES[mistake] is None:
        port.swap_state = True
    else:
        MISTAKES[mistake](monkeypatch)
    report = netdef.compare(original, port, inputs, dtype=dtype)
    assert not report.ok
    assert report.first_failure.path == "rnn", str(report)
    assert report.rows[0].path == "proj" and report.rows[0].passed  # the module before it still matches


def test_planted_gru_gate_order_is_found_in_the_gru(monkeypatch: Any) -> None:
    from netdef.models import gru_classifier, originals

    torch.manual_seed(9)
    original = originals.GRUClassifier(n_features=IN, hidden_size=HID).eval()
    port = gru_classifier.GRUClassifier(n_features=IN, hidden_size=HID)
    port.load_state_dict(original.state_dict())

    def zrn_step(xw, h, w_hh, b_hh):  # torch's order is r, z, n
        x_z, x_r, x_n = F.chunk(xw, 3, -1)
        h_z, h_r, h_n = F.chunk(F.linear(h, w_hh, b_hh), 3, -1)
        r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
        n = F.tanh(x_n + r * h_n)
        return n + z * (h - n)

    monkeypatch.setattr(rnn_module, "_gru_step", zrn_step)
    for dtype in ("float32", "float16"):
        report = netdef.compare(original, port, (torch.randn(2, 7, IN, generator=gen(10)),), dtype=dtype)
        assert not report.ok and report.first_failure.path == "gru", str(report)


# ---- a loop inside a user module, with a module inside the loop body -----------------------------
class TorchDecoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = torch.nn.GRUCell(8, HID)

    def forward(self, x, h):
        ys = []
        for xt in x:
            h = self.cell(xt, h)
            ys.append(h)
        return torch.stack(ys)


class Decoder(nn.Module):
    """The same with netdef.functional.scan: the cell is traced once and runs every iteration."""

    def __init__(self, reverse: bool = False) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, HID)
        self.reverse = reverse

    def forward(self, x, h):
        def step(h, xt):
            h = self.cell(xt, h)
            return h, h
        return F.scan(step, h, x, reverse=self.reverse)[1]


class Seq(torch.nn.Module):
    def __init__(self, decoder: Any, linear: Any) -> None:
        super().__init__()
        self.proj, self.decoder, self.head = linear(IN, 8), decoder, linear(HID, 3)

    def forward(self, x, h):
        return self.head(self.decoder(self.proj(x), h))


class SeqPort(nn.Module):
    forward = Seq.forward

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.proj, self.decoder, self.head = nn.Linear(IN, 8), decoder, nn.Linear(HID, 3)


def test_compare_rows_around_a_loop_in_a_user_module() -> None:
    """Rows for the module that holds the loop and the modules around it; the cell called in the loop
    body runs once per iteration, so its torch calls have no single traced counterpart (listed in in_loops)."""
    torch.manual_seed(13)
    original = Seq(TorchDecoder(), torch.nn.Linear).eval()
    inputs = [torch.randn(5, 2, IN, generator=gen(14)), torch.randn(2, HID, generator=gen(15))]
    for reverse in (False, True):
        port = SeqPort(Decoder(reverse=reverse))
        port.load_state_dict(original.state_dict())
        report = netdef.compare(original, port, inputs)
        status = {r.label: r.status for r in report.rows}
        assert status["proj"] == "ok" and "decoder.cell" not in status and report.in_loops == ["decoder.cell"]
        if not reverse:
            assert report.ok and status["decoder"] == status["head"] == "ok", str(report)
        else:  # a planted mistake: the port's loop runs backwards
            assert not report.ok and report.first_failure.path == "decoder", str(report)
