"""Report.to_html(): a self-contained page that renders in a real browser and shows the chart.

The page is rendered by headless Chromium (Debian's `chromium` package; .ci/run installs it, the
test is skipped with the reason where it is absent) and the screenshot must not be blank and must
show the chart: pixels of the stage-one, stage-two and tolerance colours.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import netdef
from netdef import htmlreport
from netdef.models import MODELS, create

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def failing_report():
    """LeNet-5 with one planted mistake (conv2's bias off by 0.05), compared in float16: rows before
    conv2 pass both stages, conv2 is the first failure."""
    original = MODELS["lenet5"].original().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in original.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    port = create("lenet5")
    port.load_state_dict({k: v.numpy() for k, v in original.state_dict().items()})
    port.conv2.bias.data = port.conv2.bias.data + np.float32(0.05)
    x = torch.randn(2, 1, 28, 28, generator=gen)
    report = netdef.compare(original, port, x, dtype="float16")
    assert not report.ok and report.first_failure.path == "conv2"
    return report


def test_page_is_self_contained_and_marks_the_first_failure(failing_report):
    page = failing_report.to_html("lenet5 with a planted mistake")
    # nothing is fetched: no script, stylesheet, image or font from anywhere (the SVG namespace is a name)
    assert not re.search(r"<script|<link|<img|@import|url\(", page)
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]
    first = failing_report.rows.index(failing_report.first_failure)
    assert re.search(rf'<tr id="row-{first}" class="fail first">', page)
    assert "first failure: conv2" in page
    assert page.count('<a href="#row-') >= len(failing_report.rows)  # every point links to its row
    for path, cls in failing_report.modules:  # the module tree lists every module of the port
        assert f">{path.rpartition('.')[2] or '(model)'}</span>" in page and f">{cls}</span>" in page
    assert 'class="dot fail"' in page and 'class="dot ok"' in page


def _browser() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _pixels(png: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(np.int32)


def _near(img: np.ndarray, color: str, tol: int = 40) -> int:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - rgb).sum(-1) < tol).sum())


def test_page_renders_in_headless_chromium_with_the_chart(failing_report, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
    pytest.importorskip("PIL")
    page = tmp_path / "report.html"
    page.write_text(failing_report.to_html("lenet5 with a planted mistake"))
    shot = tmp_path / "report.png"
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900",
                          f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.exists(), res.stdout[-2000:] + res.stderr[-2000:]
    img = _pixels(str(shot))
    assert img.shape[:2] == (900, 1100)
    assert (img.sum(-1) < 3 * 235).mean() > 0.03  # not blank: text, table and chart
    # the chart: both series and the tolerance line (the highlighted first-failure band is a pale red)
    assert _near(img, htmlreport.STAGE_ONE) > 300
    assert _near(img, htmlreport.STAGE_TWO) > 50
    assert _near(img, htmlreport.TOLERANCE) > 300
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900",
                    f"--screenshot={tmp_path / 'blank.png'}", blank.as_uri()], capture_output=True, timeout=180)
    empty = _pixels(str(tmp_path / "blank.png"))  # the checks above fail on an empty page
    assert _near(empty, htmlreport.STAGE_ONE) == 0 and (empty.sum(-1) < 3 * 235).mean() < 0.001


def test_cli_compare_writes_the_page(tmp_path, capsys):
    from netdef.cli import main
    from netdef.models.lenet import WEIGHTS_DIR

    out = tmp_path / "report.html"
    code = main(["compare", "lenet5", "lenet5", "-w", os.path.join(WEIGHTS_DIR, "lenet5.safetensors"),
                 "--dtype", "float16", "--html", str(out)])
    assert code == 0, capsys.readouterr().err
    page = out.read_text()
    assert "<svg" in page and "badge ok" in page and "netdef compare lenet5 lenet5" in page
