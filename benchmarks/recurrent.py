"""An LSTM as a TensorRT loop (netdef.nn.LSTM) against the same LSTM unrolled step by step (the
only way without loops: one copy of the cell per time step), and the reference runner against
torch eager. Prints markdown tables.

Usage: python benchmarks/recurrent.py [--hidden 256] [--steps 16 64] [--batch 8] [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import netdef
import netdef.reference
from _machine import describe
from netdef import functional as F
from netdef import nn
from netdef.nn.rnn import _lstm_step


class Unrolled(nn.Module):
    """nn.LSTM's math with one LSTMCell call per step and direction: what a port without loops
    has to build (a fixed sequence length, the cell's layers repeated every step)."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        m = self.lstm
        steps, batch = x.shape[0], x.shape[1]
        h_n = []
        for layer in range(m.num_layers):
            outs = []
            for direction in range(m.num_directions):
                w_ih, w_hh, b_ih, b_hh, _ = m._weights(layer, direction)
                xw = F.linear(x, w_ih, b_ih)
                h = c = F.constant(torch.zeros(batch, m.hidden_size).numpy())
                ys = [None] * steps
                for t in (range(steps - 1, -1, -1) if direction else range(steps)):
                    h, c = _lstm_step(xw[t], h, c, w_hh, b_hh)
                    ys[t] = h
                outs.append(F.stack(ys, 0))
                h_n.append(h)
            x = outs[0] if len(outs) == 1 else F.cat(outs, -1)
        return x, F.stack(h_n, 0)


def timed(fn, runs: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    hid = args.hidden
    original = torch.nn.LSTM(hid, hid, num_layers=2, bidirectional=True).eval()
    port = nn.LSTM(hid, hid, num_layers=2, bidirectional=True)
    port.load_state_dict(original.state_dict())

    print(f"2-layer bidirectional LSTM, {hid} inputs and hidden units, batch {args.batch}, float32 runs on "
          f"1 torch thread, median of {args.runs}; {describe()}; "
          f"torch {torch.__version__}, {netdef.backend.name()} {netdef.backend.version()}")
    print()
    print("| network | sequence length | layers | trace | float16 engine build | plan |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    top = max(args.steps) * 4
    spec = netdef.Input("x", (("T", 1, max(args.steps), top), ("batch", 1, args.batch, args.batch), hid))
    trace_s, net = timed(lambda: netdef.trace(port, spec, dtype="float16"))
    build_s, plan = timed(lambda: netdef.build(net, progress=False))
    print(f"| loop (netdef.nn.LSTM) | 1..{top}, dynamic | {net.network.num_layers} | {trace_s:.2f} s | "
          f"{build_s:.1f} s | {len(plan) / 1e6:.1f} MB |")
    for steps in args.steps:
        fixed = netdef.Input("x", (steps, args.batch, hid))
        trace_s, unrolled = timed(lambda fixed=fixed: netdef.trace(Unrolled(port), fixed, dtype="float16"))
        build_s, plan = timed(lambda unrolled=unrolled: netdef.build(unrolled, progress=False))
        print(f"| unrolled cells | {steps}, fixed | {unrolled.network.num_layers} | {trace_s:.2f} s | "
              f"{build_s:.1f} s | {len(plan) / 1e6:.1f} MB |")

    print()
    print("| sequence length | torch eager | reference runner | runner / eager | max abs diff |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    net32 = netdef.trace(port, spec)
    program = netdef.reference.compile(net32)
    # one thread for both: a loop body is many small ops, where a shared machine's thread pool only waits
    torch.set_num_threads(1)
    for steps in args.steps:
        x = torch.randn(steps, args.batch, hid)
        with torch.inference_mode():
            original(x)  # warm-up
            eager_s, (want, _) = timed(lambda x=x: original(x), args.runs)
        program({"x": x})
        ref_s, got = timed(lambda x=x: program({"x": x}), args.runs)
        err = (got["output0"] - want).abs().max().item()
        print(f"| {steps} | {eager_s * 1e3:.1f} ms | {ref_s * 1e3:.1f} ms | {ref_s / eager_s:.2f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
