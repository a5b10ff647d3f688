"""docs/api.md is generated from the code (python -m netdef.apidoc) and must not go stale."""
from __future__ import annotations

from pathlib import Path

from netdef import apidoc

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_api_doc_is_current():
    assert DOC.read_text() == apidoc.render(), (
        "docs/api.md is stale: a module, op or Tensor method changed; run `python -m netdef.apidoc` "
        "from the checkout's root and commit docs/api.md")


def test_every_public_op_and_module_has_a_row():
    from netdef import functional, nn

    text = apidoc.render()
    for name in ("Conv2d", "BatchNorm2d", "Sequential"):
        assert f"| `{name}` | `torch.nn.{name}` | `{name}(" in text
    assert "| `conv2d` | `torch.nn.functional.conv2d` | `conv2d(input, weight, bias=None, stride=1, padding=0, " in text
    assert "| `reshape` | `torch.Tensor.reshape` | `reshape(*shape)` |" in text
    assert "| `scatter_nd` | netdef only |" in text
    ops = [n for n, o in vars(functional).items() if callable(o) and getattr(o, "__module__", "").startswith(
        "netdef.functional") and not n.startswith("_")]
    assert len(ops) > 80 and all(f"| `{n}` |" in text for n in ops)
    classes = [n for n, o in vars(nn).items() if isinstance(o, type) and o.__module__.startswith("netdef.nn")]
    assert len(classes) > 40 and all(f"| `{n}` |" in text for n in classes)


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "api.md"
    stale.write_text(apidoc.render().replace("| `conv2d` |", "| `conv2d_old` |"))
    assert apidoc.main(["--check", str(stale)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert apidoc.main([str(stale)]) == 0
    assert apidoc.main(["--check", str(stale)]) == 0
