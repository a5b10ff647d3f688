"""The README's example runs as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_example(tmp_path):
    text = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"## Example\n\n```python\n(.*?)```", text, re.S).group(1)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK:" in res.stdout and "conv" in res.stdout
    assert (tmp_path / "net.engine").stat().st_size > 10_000
    assert (tmp_path / "net.engine.json").exists()
