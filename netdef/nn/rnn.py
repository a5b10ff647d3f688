"""Recurrent modules, as in torch.nn.modules.rnn: same signatures, state_dict keys and results.

RNN, LSTM and GRU run one loop (netdef.functional.scan, TensorRT's ILoop) per layer and
direction, so the sequence length can be a dynamic dimension of the engine and nothing is
unrolled. Each layer's input projection for every time step is one matrix multiply before
its loops; the loop body does the hidden-state projection and the gates (torch's gate order:
i, f, g, o for LSTM; r, z, n for GRU). The reverse direction iterates backwards and stacks
its outputs in time order, as torch returns them. The cells (LSTMCell, GRUCell, RNNCell)
are one step of the same math, no loop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import functional as F
from netdef import network
from netdef.nn import init
from netdef.nn.module import Module, Parameter
from netdef.tensor import Tensor

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


# ---- one step of each cell, on a precomputed input projection xw = x @ W_ih^T + b_ih ------------
def _lstm_step(xw: Tensor, h: Tensor, c: Tensor, w_hh: Any, b_hh: Any, w_hr: Any = None) -> tuple[Tensor, Tensor]:
    i, f, g, o = F.chunk(xw + F.linear(h, w_hh, b_hh), 4, -1)
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    h = F.sigmoid(o) * F.tanh(c)
    return (h if w_hr is None else F.linear(h, w_hr)), c


def _gru_step(xw: Tensor, h: Tensor, w_hh: Any, b_hh: Any) -> Tensor:
    x_r, x_z, x_n = F.chunk(xw, 3, -1)
    h_r, h_z, h_n = F.chunk(F.linear(h, w_hh, b_hh), 3, -1)
    r = F.sigmoid(x_r + h_r)
    z = F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return n + z * (h - n)  # = (1 - z) * n + z * h, as torch computes it


def _rnn_step(xw: Tensor, h: Tensor, w_hh: Any, b_hh: Any, relu: bool) -> Tensor:
    pre = xw + F.linear(h, w_hh, b_hh)
    return F.relu(pre) if relu else F.tanh(pre)


def _zeros(like: Tensor, *sizes: Any) -> Tensor:
    """Zeros of `sizes` (ints or x.size(d)) in `like`'s dtype: the default initial state."""
    zero = F.constant(np.zeros((1,) * len(sizes), np.float32), dtype=like.dtype)
    return F.expand(zero, *sizes)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} should be an int >= {low}, got {value!r}")


class RNNBase(Module):
    """Shared by RNN, LSTM and GRU: parameters `weight_ih_l{k}{_reverse}`, `weight_hh_l...`,
    `bias_ih_l...`, `bias_hh_l...` (and `weight_hr_l...` with proj_size), in torch's order."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        _check_int("input_size", input_size, 1)
        _check_int("hidden_size", hidden_size, 1)
        _check_int("num_layers", num_layers, 1)
        _check_int("proj_size", proj_size, 0)
        if not 0 <= float(dropout) <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bool(bias), bool(batch_first)
        self.dropout = float(dropout)  # between layers in training only: an inference network has none
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        gates = _GATES[mode] * hidden_size
        out_size = proj_size or hidden_size
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                sfx = f"_l{layer}{'_reverse' if direction else ''}"
                fan = input_size if layer == 0 else out_size * self.num_directions
                # torch's default: every weight and bias U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))
                shapes = {"weight_ih": (gates, fan), "weight_hh": (gates, out_size)}
                if self.bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    self.register_parameter(name + sfx, Parameter(init.kaiming_uniform(shape, hidden_size, dtype)))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _weights(self, layer: int, direction: int) -> tuple:
        sfx = f"_l{layer}{'_reverse' if direction else ''}"
        get = self._parameters.get
        return get(f"weight_ih{sfx}"), get(f"weight_hh{sfx}"), get(f"bias_ih{sfx}"), get(f"bias_hh{sfx}"), \
            get(f"weight_hr{sfx}")

    def _state(self, hx: Any, batch: Any, like: Tensor, size: int, what: str, batched: bool) -> Tensor:
        """The initial state (num_layers * num_directions, batch, size), zeros when not given."""
        net = network.current()
        rows = self.num_layers * self.num_directions
        if hx is None:
            return _zeros(like, rows, batch, size)
        if not isinstance(hx, Tensor):
            net.fail(f"{type(self).__name__}: {what} must be a Tensor, got {type(hx).__name__}")
        want = (rows, batch if isinstance(batch, int) else -1, size) if batched else (rows, size)
        if hx.ndim != len(want) or any(w >= 0 and g >= 0 and g != w for g, w in zip(hx.shape, want)):
            shape = tuple("batch" if w == -1 else w for w in want)
            net.fail(f"{type(self).__name__}: {what} has shape {hx.shape}, expected {shape}")
        hx = F.cast(hx, like.dtype)
        return hx if batched else F.unsqueeze(hx, 1)

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        net = network.current()
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (2, 3):
            shape = input.shape if isinstance(input, Tensor) else type(input).__name__
            net.fail(f"{name}: expected input to be 2D (unbatched) or 3D, got {shape}")
        if input.shape[-1] >= 0 and input.shape[-1] != self.input_size:
            net.fail(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                     f"got {input.shape[-1]}")
        batched = input.ndim == 3
        x = input if not batched else (F.transpose(input, 0, 1) if self.batch_first else input)
        if not batched:
            x = F.unsqueeze(x, 1)
        batch = x.size(1)
        out_size = self.proj_size or self.hidden_size
        if self.mode == "LSTM":
            if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                net.fail(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            h0 = self._state(None if hx is None else hx[0], batch, x, out_size, "h_0", batched)
            c0 = self._state(None if hx is None else hx[1], batch, x, self.hidden_size, "c_0", batched)
        else:
            h0 = self._state(hx, batch, x, out_size, "hx", batched)
            c0 = None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                row = layer * self.num_directions + direction
                y, h, c = self._run(x, h0[row], None if c0 is None else c0[row], layer, direction)
                outputs.append(y)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if len(outputs) == 1 else F.cat(outputs, -1)
        output, h_n = x, F.stack(h_n, 0)
        c_n = F.stack(c_n, 0) if c0 is not None else None
        if not batched:
            output, h_n = F.squeeze(output, 1), F.squeeze(h_n, 1)
            c_n = None if c_n is None else F.squeeze(c_n, 1)
        elif self.batch_first:
            output = F.transpose(output, 0, 1)
        return output, ((h_n, c_n) if c_n is not None else h_n)

    def _run(self, x: Tensor, h0: Tensor, c0: Tensor | None, layer: int, direction: int) -> tuple:
        """One layer in one direction: the input projection of every step, then one loop."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, direction)
        xw = F.linear(x, w_ih, b_ih)
        mode = self.mode
        if mode == "LSTM":
            def step(carry, xt):
                h, c = _lstm_step(xt, *carry, w_hh, b_hh, w_hr)
                return (h, c), h
            (h, c), ys = F.scan(step, (h0, c0), xw, reverse=direction == 1)
            return ys, h, c

        def step(h, xt):
            h = _gru_step(xt, h, w_hh, b_hh) if mode == "GRU" else _rnn_step(xt, h, w_hh, b_hh, mode == "RNN_RELU")
            return h, h
        h, ys = F.scan(step, h0, xw, reverse=direction == 1)
        return ys, h, None

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity  # torch's repr does not show it either


class LSTM(RNNBase):
    """Returns output, (h_n, c_n) like torch; proj_size projects h with weight_hr."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


# ---- cells ---------------------------------------------------------------------------------------
class RNNCellBase(Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, dtype: Any = None) -> None:
        super().__init__()
        _check_int("input_size", input_size, 1)
        _check_int("hidden_size", hidden_size, 1)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        n = num_chunks * hidden_size
        self.weight_ih = Parameter(init.kaiming_uniform((n, input_size), hidden_size, dtype))
        self.weight_hh = Parameter(init.kaiming_uniform((n, hidden_size), hidden_size, dtype))
        if self.bias:
            self.bias_ih = Parameter(init.uniform_bias(n, hidden_size, dtype))
            self.bias_hh = Parameter(init.uniform_bias(n, hidden_size, dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def _prepare(self, input: Tensor, hx: Any) -> tuple[Tensor, list, bool]:
        """(input as (batch, input_size), initial states as (batch, hidden_size), batched?)."""
        net = network.current()
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            shape = input.shape if isinstance(input, Tensor) else type(input).__name__
            net.fail(f"{name}: Expected input to be 1D or 2D, got {shape}")
        if input.shape[-1] >= 0 and input.shape[-1] != self.input_size:
            net.fail(f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected {self.input_size}")
        batched = input.ndim == 2
        x = input if batched else F.unsqueeze(input, 0)
        states = list(hx) if isinstance(hx, (tuple, list)) else [hx]
        out = []
        for h in states:
            if h is None:
                out.append(_zeros(x, x.size(0), self.hidden_size))
                continue
            if not isinstance(h, Tensor) or h.ndim != input.ndim or h.shape[-1] not in (-1, self.hidden_size):
                shape = h.shape if isinstance(h, Tensor) else type(h).__name__
                net.fail(f"{name}: hidden state has shape {shape}, expected "
                         f"{'(batch, ' if batched else '('}{self.hidden_size})")
            h = F.cast(h, x.dtype)
            out.append(h if batched else F.unsqueeze(h, 0))
        return x, out, batched

    def _xw(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        return s if nonlinearity == "tanh" else s + f", nonlinearity={nonlinearity}"


class RNNCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Invalid nonlinearity selection for RNNCell: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx)
        h = _rnn_step(self._xw(x), h, self.weight_hh, self.bias_hh, self.nonlinearity == "relu")
        return h if batched else F.squeeze(h, 0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, dtype)

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            network.current().fail(f"LSTMCell: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        x, (h, c), batched = self._prepare(input, hx if hx is not None else (None, None))
        h, c = _lstm_step(self._xw(x), h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (F.squeeze(h, 0), F.squeeze(c, 0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx)
        h = _gru_step(self._xw(x), h, self.weight_hh, self.bias_hh)
        return h if batched else F.squeeze(h, 0)


__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]
