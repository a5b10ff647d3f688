"""The recurrent ready-made models (CRNN, GRUClassifier) against their torch originals, and the CRNN
example with a dynamic image width."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import torch
from helpers import random_original
from netdef.models import MODELS, create, crnn, gru_classifier, originals

import netdef
from netdef import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


CASES = {  # port, original, compare input: a small CRNN (nh=32, 11 classes), the default classifier
    "crnn": (lambda: crnn.CRNN(nclass=11, nh=32), lambda: originals.CRNN(nclass=11, nh=32), (2, 1, 32, 40)),
    "gru_classifier": (gru_classifier.GRUClassifier, originals.GRUClassifier, (2, 9, 40)),
}


def loaded(name: str) -> tuple[Any, Any, torch.Tensor]:
    make_port, make_original, shape = CASES[name]
    torch.manual_seed(0)
    original = random_original(make_original(), torch.randn(shape, generator=torch.Generator().manual_seed(1)), seed=2)
    port = make_port()
    port.load_state_dict(original.state_dict())
    return original, port, torch.randn(shape, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", list(CASES))
def test_every_module_matches_the_original(name: str) -> None:
    original, port, x = loaded(name)
    for dtype in ("float32", "float16"):
        report = netdef.compare(original, port, (x,), dtype=dtype)
        assert report.ok, str(report)
        assert not [r.label for r in report.rows if r.status == "missing"]
    paths = {r.path for r in report.rows}
    assert {"rnn.0.rnn", "rnn.1.embedding", "cnn.batchnorm6"} <= paths if name == "crnn" else "gru" in paths


@pytest.mark.parametrize("name", ["crnn", "gru_classifier"])
def test_registry_entries_have_the_originals_names_and_shapes(name: str) -> None:
    with torch.device("meta"):
        theirs = MODELS[name].original().state_dict()
    ours = create(name).state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_crnn_batch_and_steps_swapped_is_found_in_its_bidirectional_lstm() -> None:
    """A port that reshapes the embedding's output to (batch, steps, classes) instead of torch's
    (steps, batch, classes): compare names the BidirectionalLSTM whose forward does it."""
    original, port, x = loaded("crnn")

    def swapped(self, input):
        recurrent, _ = self.rnn(input)
        steps, batch = recurrent.size(0), recurrent.size(1)
        output = self.embedding(F.reshape(recurrent, -1, recurrent.shape[-1]))
        return F.reshape(output, batch, steps, self.embedding.out_features)

    port.rnn[0].forward = swapped.__get__(port.rnn[0])
    report = netdef.compare(original, port, (x,))
    assert not report.ok and report.first_failure.path == "rnn.0", str(report)


def test_crnn_example_builds_one_engine_for_every_width(tmp_path: Any) -> None:
    engine = tmp_path / "crnn.engine"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "crnn.py"), "--widths", "32", "48", "160",
                          "--engine", str(engine)], capture_output=True, text=True, timeout=900, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert out.count("OK:") == 4 and "4 loops (ITERATOR), 8 recurrences" in out
    torch_line, ref_line = (line.split(":", 1)[1].split("(")[0].strip() for line in out.splitlines()
                            if line.startswith(("torch:", "reference:")))
    assert torch_line == ref_line  # the same greedy CTC decoding
    meta = netdef.load_plan(engine).metadata["inputs"][0]
    assert meta["min"][3] == 32 and meta["max"][3] == 160
