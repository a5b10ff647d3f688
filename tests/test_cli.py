"""The netdef command line, run as a user would, in subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

NETDEF = [sys.executable, "-m", "netdef.cli"]


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*NETDEF, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("cmd", [[], ["export"], ["build"], ["inspect"], ["compare"], ["demo"]])
def test_help(cmd):
    res = run(*cmd, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: netdef" in res.stdout


@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    import torch

    from netdef import weights
    from netdef.models.originals import LeNet5

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("w") / "lenet.safetensors")
    weights.save(LeNet5().state_dict(), path)
    return path


def test_export_build_inspect(tmp_path, lenet_weights):
    wts = str(tmp_path / "lenet.wts")
    res = run("export", lenet_weights, wts)
    assert res.returncode == 0, res.stderr
    assert open(wts).readline().strip() == "10"

    engine = str(tmp_path / "lenet.engine")
    res = run("build", "lenet5", "-w", wts, "-s", "x=1-4-8,1,28,28", "--dtype", "float16", "-o", engine)
    assert res.returncode == 0, res.stderr
    meta = json.load(open(engine + ".json"))
    assert meta["dtype"] == "float16" and meta["inputs"][0]["max"] == [8, 1, 28, 28]
    assert os.path.getsize(engine) == meta["plan_bytes"]

    res = run("inspect", "lenet5", "-s", "x=2,1,28,28", "--calls")
    assert res.returncode == 0, res.stderr
    assert "conv1" in res.stdout and "CONVOLUTION" in res.stdout and ".stride_nd" in res.stdout

    res = run("inspect", engine)
    assert res.returncode == 0 and '"plan_bytes"' in res.stdout


def test_compare_exit_codes(tmp_path, lenet_weights):
    res = run("compare", "lenet5", "lenet5", "-w", lenet_weights, "-s", "x=2,1,28,28")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK:" in res.stdout

    buggy = tmp_path / "buggy.py"
    buggy.write_text(textwrap.dedent("""
        from netdef.models.lenet import LeNet5

        def build():
            model = LeNet5()
            model.conv2.padding = (1, 1)   # the port's bug
            return model
    """))
    res = run("compare", f"{buggy}:build", "lenet5", "-w", lenet_weights, "-s", "x=2,1,28,28",
              "--json", str(tmp_path / "r.json"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "first divergent module: conv2" in res.stdout
    assert json.load(open(tmp_path / "r.json"))["first_failure"] == "conv2"


def test_compare_aligns_names_and_chooses_what_stage_two_models(tmp_path, lenet_weights):
    wrapped = tmp_path / "wrapped.py"
    wrapped.write_text(textwrap.dedent("""
        import torch
        from netdef.models.originals import LeNet5

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = LeNet5()

            def forward(self, x):
                return self.model(x)

            def load_state_dict(self, state, strict=True):
                return self.model.load_state_dict(state, strict)

            def state_dict(self, *a, **k):
                return self.model.state_dict(*a, **k)
    """))
    args = ("compare", "lenet5", f"{wrapped}:Wrapped", "-w", lenet_weights, "-s", "x=2,1,28,28")
    res = run(*args)
    assert res.returncode == 1 and "produced layers but the torch original has no module 'conv1'" in res.stdout
    res = run(*args, "--prefix", "model.", "--no-tf32", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.load(open(tmp_path / "r.json"))
    assert report["ok"] and report["precision"] == "float32" and report["unmatched_torch_modules"] == ["model"]


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.wts"
    bad.write_text("2\nconv.weight 1 3f800000\n")
    res = run("build", "lenet5", "-w", str(bad), "-s", "x=1,1,28,28", "-o", str(tmp_path / "e.engine"))
    assert res.returncode == 2
    assert res.stderr.startswith("netdef build: error:") and "bad.wts" in res.stderr
    assert not os.path.exists(tmp_path / "e.engine")

    res = run("build", "nosuchmodel", "--random-weights", "-s", "x=1,1,28,28")
    assert res.returncode == 2 and "unknown model 'nosuchmodel'" in res.stderr

    res = run("build", "lenet5", "-s", "x=1,one,28")
    assert res.returncode == 2 and "bad dimension" in res.stderr


# ---- user errors: exit 2 and one line; 1 only ever means "compare found a divergent module" ----
def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`netdef ARGV` in this process (fast); (exit code, stdout, stderr)."""
    from netdef.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *argv: str) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"netdef {argv[0]}: error: "), err
    return err


MODEL_FILES = {
    "syntax.py": ("def forward(:\n", "SyntaxError: invalid syntax", ":1)"),
    "raises.py": ("import os\nraise RuntimeError('no GPU config found')\n", "RuntimeError: no GPU config found", ":2)"),
    "imports.py": ("import nosuchpackage_xyz\n", "No module named 'nosuchpackage_xyz'", ":1)"),
    "factory.py": ("def build(num_classes):\n    pass\n", "build() failed: TypeError", "factory.py"),
}


@pytest.mark.parametrize("name", MODEL_FILES)
def test_model_specs_that_fail_to_import(capsys, tmp_path, name):
    text, message, where = MODEL_FILES[name]
    (tmp_path / name).write_text(text)
    attr = "build" if name == "factory.py" else "Net"
    err = user_error(capsys, "build", f"{tmp_path / name}:{attr}", "--random-weights")
    assert message in err and where in err and name in err, err


@pytest.mark.parametrize("argv, message", [
    (["build", "lenet5", "--random-weights", "-s", "x=99999999999,1,28,28"], "TensorRT rejected input 'x'"),
    (["build", "lenet5", "--random-weights", "-s", "x=1,1,28,28", "-s", "x=2,1,28,28"], "two inputs are named 'x'"),
    (["build", "lenet5", "--random-weights", "-s", "x=0,3,224,224"], "a static dimension must be >= 1, got 0"),
    (["build", "lenet5", "--random-weights", "-s", "x=1-0-4,1,28,28"], "needs 0 <= min <= opt <= max"),
    (["build", "lenet5", "--random-weights", "--workspace", "-5"], "argument --workspace: memory size '-5' is negative"),
    (["build", "lenet5", "--random-weights", "--workspace", "4Q"], "expected bytes or a number with a unit"),
    (["build", "lenet5"], "pass the weights with -w FILE, or --random-weights"),
    (["build", "lenet5.py:Net", "--random-weights"], "model file not found: lenet5.py"),
    (["build", "nosuch.module:Net", "--random-weights"], "No module named 'nosuch'"),
    (["build", "nosuchmodel", "--random-weights"], "unknown model 'nosuchmodel'; bundled models: lenet5"),
    (["inspect", "missing.engine"], "no such file: missing.engine"),
    (["inspect", "lenet5", "-s", "x=1,1,28,28", "-s", "y=1,1,28,28"], "LeNet5.forward(x) cannot take the 2 input(s)"),
    (["compare", "lenet5", "lenet5", "-w", "w.wts", "--atol", "-1"], "a tolerance is a number >= 0"),
    (["compare", "lenet5", "torchvision:nosuchnet", "-w", "w.wts"], "torchvision.models has no 'nosuchnet'"),
    (["export"], "the following arguments are required: src, dst"),
])
def test_user_errors_exit_2_in_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert message in user_error(capsys, *argv)
    assert not list(tmp_path.glob("*.engine"))


def test_compare_refuses_shapes_the_original_cannot_take(capsys, lenet_weights):
    err = user_error(capsys, "compare", "lenet5", "lenet5", "-w", lenet_weights, "-s", "x=2,28,28")
    assert "the original LeNet5 does not run on the inputs x=(2, 28, 28)" in err and "check --shape" in err


def test_build_needs_both_or_neither(capsys, lenet_weights):
    assert "exclude each other" in user_error(capsys, "build", "lenet5", "-w", lenet_weights, "--random-weights")


def test_an_exception_from_the_models_own_code_is_exit_3_with_its_traceback(capsys, tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent("""
        from netdef import nn

        class Net(nn.Module):
            def forward(self, x):
                return x.no_such_method()
    """))
    code, _, err = cli(capsys, "build", f"{tmp_path / 'broken.py'}:Net", "--random-weights", "-s", "x=1,4")
    assert code == 3, err
    assert "Traceback" in err and "no_such_method" in err and "internal error" in err.splitlines()[-1]


def test_a_value_error_in_the_models_code_is_one_line_with_its_location(capsys, tmp_path):
    (tmp_path / "unpack.py").write_text(textwrap.dedent("""
        from netdef import nn

        class Net(nn.Module):
            def forward(self, x):
                a, b = x.chunk(3, 1)
                return a + b
    """))
    err = user_error(capsys, "build", f"{tmp_path / 'unpack.py'}:Net", "--random-weights", "-s", "x=1,6,8,8")
    assert "ValueError: too many values to unpack (expected 2)" in err and "unpack.py:6)" in err


def test_random_weights_and_engine_named_after_the_spec(capsys, tmp_path, monkeypatch):
    from netdef.cli import engine_name

    assert [engine_name(m) for m in ("resnet18", "resnet34", "ResNet50", "nets/my.py:Tiny", "pkg.nets:Tiny")] == [
        "resnet18.engine", "resnet34.engine", "resnet50.engine", "Tiny.engine", "Tiny.engine"]
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "build", "lenet5", "--random-weights", "--workspace", "256M")
    assert code == 0, err
    assert "built lenet5.engine" in out and "RANDOM weights" in out
    assert (tmp_path / "lenet5.engine").stat().st_size > 100_000


def test_non_strict_lists_every_key_left_random_and_every_key_ignored(capsys, tmp_path):
    from netdef import weights

    state = dict(weights.load(os.path.join(os.path.dirname(__file__), "..", "models", "weights", "lenet5.safetensors")))
    for key in ("conv2.bias", "fc1.weight", "fc3.bias"):
        del state[key]
    state["classifier.weight"] = state["fc2.weight"]
    path = str(tmp_path / "partial.safetensors")
    weights.save(state, path)

    code, _, err = cli(capsys, "build", "lenet5", "-w", path, "-o", str(tmp_path / "e.engine"))
    assert code == 2 and err.startswith("netdef build: error: cannot load state_dict") and "conv2.bias" in err
    code, out, err = cli(capsys, "build", "lenet5", "-w", path, "--non-strict", "-o", str(tmp_path / "e.engine"))
    assert code == 0, err
    assert ("netdef build: warning: 3 keys of LeNet5 are not in " + path + " and keep their initial (random) values"
            in err)
    assert "conv2.bias, fc1.weight, fc3.bias" in err
    assert f"1 keys in {path} are not in LeNet5 and were ignored:\n  classifier.weight" in err


def test_readme_command_lines_parse():
    """Every `netdef ...` line of the README's "Command line" block is valid for today's parser."""
    import re
    import shlex

    from netdef.cli import build_parser

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = re.search(r"## Command line\n\n```\n(.*?)```", readme, re.S).group(1)
    lines = [line.split("#")[0] for line in block.splitlines() if line.startswith("netdef ")]
    assert len(lines) >= 4
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])  # a bad flag or value exits 2 here
        assert args.command == shlex.split(line)[1]


@pytest.mark.parametrize("attr", ["Net", "net", "make"])
def test_a_torch_module_as_model_is_a_user_error(capsys, tmp_path, attr):
    (tmp_path / "m.py").write_text(textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def forward(self, x):
                return x * 2

        net = Net()

        def make():
            return Net()
    """))
    spec = f"{tmp_path / 'm.py'}:{attr}"
    err = user_error(capsys, "inspect", spec, "-s", "x=1,3")
    assert f"model {spec!r} is a torch module; MODEL must be the netdef port" in err and "ORIGINAL" in err
