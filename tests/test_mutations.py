"""Planted porting mistakes: compare catches each one in every precision and names where it is.

The catalog (tests/mutants.py) plants realistic mistakes into the shipped ResNet-18,
MobileNetV2, ViT and YOLOv5n ports. Each must fail compare in float32, float16, bfloat16
and int8 (Q/DQ calibrated on the mutated port, as its author would), with the first failure
at the mutated module, its parent or its child. The controls (the unmodified port and a
numerically equivalent rewrite) must pass in all four. benchmarks/mutations.py prints the
detection margin of each mutant.
"""
from __future__ import annotations

import pytest
import torch

import netdef
from mutants import CONTROLS, MUTANTS, SUBJECTS, located, make_pair
from netdef.quantize import calibrate

PRECISIONS = ["float32", "float16", "bfloat16", "int8"]


@pytest.fixture(scope="module")
def pairs() -> dict:
    return {}


def fresh(pairs: dict, subject: str) -> tuple:
    """The original and input are made once per subject; each mutant gets its own freshly loaded port."""
    if subject not in pairs:
        pairs[subject] = make_pair(subject)
    original, _, x = pairs[subject]
    port = SUBJECTS[subject].port()
    port.load_state_dict(original.state_dict())
    return original, port, x


def run(original, port, x, precision: str) -> netdef.Report:
    if precision == "int8":
        config = calibrate(port, [x])
        return netdef.compare(original, port, x, quantization=config)
    return netdef.compare(original, port, x, dtype=precision)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m.subject}-{m.name}" for m in MUTANTS])
def test_mutant_is_caught_and_located(pairs, mutant):
    original, port, x = fresh(pairs, mutant.subject)
    mutant.mutate(port)
    x = x * mutant.input_scale
    for precision in PRECISIONS:
        try:
            report = run(original, port, x, precision)
        except netdef.NetdefError as exc:  # a mistake TensorRT itself rejects is caught too
            assert precision == "int8" or "rejected" in str(exc), exc
            continue
        assert not report.ok, f"{mutant.name} passed compare in {precision}:\n{report}"
        first = report.first_failure
        assert first is not None and located(first.path, mutant.where), (
            f"{mutant.name} ({precision}) located at {first.path if first else None}, expected {mutant.where}:\n"
            f"{report.summary()}")
        assert first.status != "DRIFT", f"{mutant.name} was caught only as precision drift in {precision}"


@pytest.mark.parametrize("subject,control", [(s, c) for s, cs in CONTROLS.items() for c in cs],
                         ids=[f"{s}-{c[0]}" for s, cs in CONTROLS.items() for c in cs])
def test_control_passes(pairs, subject, control):
    original, port, x = fresh(pairs, subject)
    control[1](port)
    for precision in PRECISIONS:
        report = run(original, port, x, precision)
        assert report.ok, f"control {control[0]} failed in {precision}:\n{report}"
        assert report.compared > 10


def test_catalog_covers_the_issue():
    """At least 25 mutants across ResNet, MobileNetV2, ViT and YOLOv5, each subject with several."""
    assert len(MUTANTS) >= 25
    per_subject = {s: sum(m.subject == s for m in MUTANTS) for s in SUBJECTS}
    assert min(per_subject.values()) >= 5, per_subject
    assert len({(m.subject, m.name) for m in MUTANTS}) == len(MUTANTS)


def test_inputs_are_not_degenerate(pairs):
    for subject in SUBJECTS:
        _, _, x = fresh(pairs, subject)
        assert torch.count_nonzero(x) == x.numel()
