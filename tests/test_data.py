"""netdef.data's handwritten digits, and the shipped LeNet-5 weights trained on them."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import netdef
from netdef import data
from netdef.errors import NetdefError
from netdef.models.lenet import WEIGHTS_DIR
from netdef.models.originals import LeNet5

ACCURACY = 0.9806  # models/weights/README.md, "Held-out accuracy"
SIZES = {"train": 1437, "test": 360}


@pytest.mark.parametrize("split", data.SPLITS)
def test_shapes_dtypes_and_values(split):
    images, labels = data.load_digits(split)
    n = SIZES[split]
    assert images.shape == (n, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    # 17 grey levels, each source pixel a 3x3 block, a zero border of 2
    assert np.array_equal(images * 16, np.round(images * 16))
    inner = images[:, 0, 2:26, 2:26]
    assert np.array_equal(inner, np.repeat(np.repeat(inner[:, ::3, ::3], 3, 1), 3, 2))
    assert not images[:, :, :2].any() and not images[:, :, 26:].any()
    assert not images[:, :, :, :2].any() and not images[:, :, :, 26:].any()
    assert (images.reshape(n, -1).max(1) > 0).all(), "a blank image"
    assert np.array_equal(np.unique(labels), np.arange(10))
    assert np.bincount(labels).min() >= 0.08 * n  # every class well represented


def test_splits_are_deterministic_disjoint_and_complete():
    train_x, train_y = data.load_digits("train")
    test_x, test_y = data.load_digits("test")
    again_x, again_y = data.load_digits("test")
    assert np.array_equal(test_x, again_x) and np.array_equal(test_y, again_y)
    assert test_x is not again_x  # callers get copies they may change
    test_x[0] = 5.0
    assert data.load_digits("test")[0].max() == 1.0
    train_rows = {row.tobytes() for row in train_x.reshape(len(train_x), -1)}
    assert not any(row.tobytes() in train_rows for row in again_x.reshape(len(again_x), -1))

    from sklearn.datasets import load_digits as sk_load_digits
    sk = sk_load_digits()
    assert len(train_y) + len(test_y) == len(sk.target)
    assert np.array_equal(np.concatenate([train_y, test_y]), sk.target)
    all_x = np.concatenate([train_x, again_x])[:, 0, 2:26:3, 2:26:3] * 16
    assert np.array_equal(all_x, sk.images)


def test_bad_split_names_it():
    with pytest.raises(NetdefError, match=r"split must be one of .*'valid'"):
        data.load_digits("valid")


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    data._all_digits.cache_clear()
    try:
        with pytest.raises(NetdefError, match=r"pip install 'scikit-learn"):
            data.load_digits("test")
    finally:
        data._all_digits.cache_clear()


def test_reading_digits_does_not_import_torch():
    code = ("import sys, netdef.data; netdef.data.load_digits('test'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _torch_lenet(path: Path) -> LeNet5:
    """The torch original with a shipped file's values (.wts is flat: shapes come from the model)."""
    state = netdef.weights.load(path)
    model = LeNet5().eval()
    expected = model.state_dict()
    assert list(state) == list(expected)
    model.load_state_dict(netdef.weights.to_torch(state, like=expected))
    return model


@pytest.mark.parametrize("name", ["lenet5.safetensors", "lenet5.wts"])
def test_shipped_weights_reach_documented_accuracy(name):
    model = _torch_lenet(WEIGHTS_DIR / name)
    images, labels = data.load_digits("test")
    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).argmax(1).numpy()
    accuracy = float((predicted == labels).mean())
    assert abs(accuracy - ACCURACY) <= 0.005, f"{name}: {accuracy:.4f}, documented {ACCURACY}"


def test_documented_accuracy_matches_readme():
    readme = (WEIGHTS_DIR / "README.md").read_text()
    found = re.search(r"Held-out accuracy: ([\d.]+)%", readme)
    assert found and float(found.group(1)) / 100 == pytest.approx(ACCURACY, abs=5e-5)


def test_wts_and_safetensors_hold_identical_float32_values():
    oracle = load_file(str(WEIGHTS_DIR / "lenet5.safetensors"))  # the safetensors package, not netdef
    ours = netdef.weights.load(WEIGHTS_DIR / "lenet5.safetensors")
    wts = netdef.weights.load(WEIGHTS_DIR / "lenet5.wts")
    assert list(wts) == list(ours) and set(ours) == set(oracle)
    for key, ref in oracle.items():
        assert ref.dtype == np.float32 and ours[key].dtype == np.float32
        assert np.array_equal(ours[key], ref)
        flat = np.asarray(wts[key])
        assert flat.dtype == np.float32 and flat.shape == (ref.size,)
        # bit patterns, so -0.0 vs 0.0 or a NaN payload would also be caught
        assert np.array_equal(flat.view(np.uint32), ref.reshape(-1).view(np.uint32)), key
        assert np.abs(ref).max() > 0, f"{key} is all zeros"


def test_weights_folder_stays_small():
    assert sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file()) < 1 << 20
