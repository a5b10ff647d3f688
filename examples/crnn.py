"""CRNN text recognition with a dynamic image width: conv stack -> 2 bidirectional LSTMs -> CTC scores.

TensorRT 10 has no RNN layer any more (IRNNv2Layer is gone), and unrolling an LSTM by hand fixes
the sequence length. netdef's nn.LSTM is a TensorRT loop, so one engine takes any width in its
profile: the network below has the same layers for every width.

The script makes crnn.pytorch's model (netdef.models.originals.CRNN) with random weights (no
download), loads its state_dict into the port, checks every module against PyTorch at two widths,
builds the engine with a dynamic width, and decodes the per-column class scores greedily (CTC).

Run: python examples/crnn.py [--widths 32 100 320] [--dtype float16] [--engine crnn.engine]
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch
from netdef.models import crnn, originals

import netdef

ALPHABET = "-0123456789abcdefghijklmnopqrstuvwxyz"  # class 0 is the CTC blank


def ctc_greedy(scores: torch.Tensor) -> list[str]:
    """Best class per column, repeats merged, blanks dropped; scores: (steps, batch, classes)."""
    best = scores.argmax(-1).t().tolist()
    texts = []
    for row in best:
        chars = [c for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
        texts.append("".join(ALPHABET[c] for c in chars))
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs=3, default=(32, 100, 320), metavar=("MIN", "OPT", "MAX"))
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--engine", help="write the serialized engine here")
    args = ap.parse_args()
    lo, opt, hi = args.widths

    torch.manual_seed(0)
    original = originals.CRNN().eval()
    with torch.no_grad():  # random BatchNorm statistics, so a folding bug could not hide
        for m in original.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model = crnn.crnn()
    model.load_state_dict(original.state_dict())

    for width in (lo, opt):
        x = torch.randn(2, 1, 32, width)
        for dtype in ("float32", args.dtype):
            report = netdef.compare(original, model, (x,), dtype=dtype)
            print(f"width {width}: {report.summary()}")
            if not report.ok:
                print(report)
                raise SystemExit(1)

    net = netdef.trace(model, netdef.Input("x", (("batch", 1, 2, 4), 1, 32, ("width", lo, opt, hi))),
                       dtype=args.dtype)
    kinds = Counter(layer.type.name for layer in net.layers)
    print(f"{net.network.num_layers} layers for every width {lo}..{hi}: {kinds['ITERATOR']} loops "
          f"(ITERATOR), {kinds['RECURRENCE']} recurrences, {kinds['CONVOLUTION']} convolutions")
    x = torch.randn(1, 1, 32, opt)
    with torch.no_grad():
        theirs = original(x)
    ours = netdef.reference.run(net, {"x": x})["output"].float()
    print(f"torch:     {ctc_greedy(theirs)}\nreference: {ctc_greedy(ours)} ({args.dtype}, {ours.shape[0]} columns)")
    plan = netdef.build(net, progress=False)
    print(f"engine: {len(plan)} bytes, {args.dtype}, width {lo}..{hi}")
    if args.engine:
        print("saved", netdef.save_engine(plan, args.engine))


if __name__ == "__main__":
    main()
