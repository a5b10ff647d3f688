"""docs/tutorial.md runs as written: its ```python blocks, in order, as one script."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks() -> list[str]:
    text = open(os.path.join(ROOT, "docs", "tutorial.md")).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_tutorial_runs_in_order(tmp_path):
    code = blocks()
    assert len(code) >= 12
    script = "\n\n".join(f"# ---- block {i + 1}\n{c}" for i, c in enumerate(code))
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    out = res.stdout
    assert "raw API network says" in out and "OK:" in out and "first divergent module: fc2" in out
    assert "first divergent module: shuffle" in out
    assert "add_convolution_nd" in out and "built lenet5_raw.engine" in out
    assert (tmp_path / "report.html").stat().st_size > 5_000
    assert (tmp_path / "lenet5.engine").exists() and (tmp_path / "lenet5_raw.safetensors").exists()
