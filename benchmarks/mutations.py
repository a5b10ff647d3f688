"""Detection margin of each planted porting mistake (tests/mutants.py); prints a table.

The margin is the first failing module's err/tol in compare's stage one (the float32 port
against torch): how many times over the float32 tolerance the mistake is. Stage one is the
same whatever the target precision, so one float32 compare per mutant gives it; a mistake that
changes shapes shows "shape". The controls' worst err/tol (<= 1 passes) is printed too.

Usage: python benchmarks/mutations.py [--subject resnet18]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netdef  # noqa: E402
from _machine import describe  # noqa: E402
from mutants import CONTROLS, MUTANTS, SUBJECTS, located, make_pair  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subject", choices=sorted(SUBJECTS), help="only this model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pairs: dict = {}
    print(f"{describe()}; torch {torch.__version__}, {netdef.backend.name()} {netdef.backend.version()}\n")
    print("| model | mistake | first failure | located | margin (err/tol) |")
    print("|---|---|---|---|---|")
    for m in MUTANTS:
        if args.subject and m.subject != args.subject:
            continue
        if m.subject not in pairs:
            pairs[m.subject] = make_pair(m.subject)
        original, _, x = pairs[m.subject]
        port = SUBJECTS[m.subject].port()
        port.load_state_dict(original.state_dict())
        m.mutate(port)
        report = netdef.compare(original, port, x * m.input_scale)
        first = report.first_failure
        margin = (f"{first.stats.ratio:.3g}" if first is not None and first.stats is not None
                  else first.status if first is not None else "NOT CAUGHT")
        print(f"| {m.subject} | {m.name} | {first.label if first else '-'} | "
              f"{'yes' if first is not None and located(first.path, m.where) else 'NO'} | {margin} |")
    print("\n| model | control | outputs compared | worst err/tol |")
    print("|---|---|---|---|")
    for subject, controls in CONTROLS.items():
        if args.subject and subject != args.subject:
            continue
        if subject not in pairs:
            pairs[subject] = make_pair(subject)
        original, _, x = pairs[subject]
        for name, edit in controls:
            port = SUBJECTS[subject].port()
            port.load_state_dict(original.state_dict())
            edit(port)
            report = netdef.compare(original, port, x)
            worst = max(r.stats.ratio for r in report.rows if r.stats)
            print(f"| {subject} | {name} | {report.compared} | {worst:.3g} |")


if __name__ == "__main__":
    main()
