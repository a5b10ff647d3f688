"""A compare report as one self-contained HTML page (`Report.to_html()`, `netdef compare --html`).

The page needs nothing from the network to be viewed (inline CSS and an inline SVG chart, no
script, font or stylesheet fetched): a summary, the error of every module in execution order on
a log scale (stage one's err/tol and stage two's drift/budget, a tolerance line at 1, the first
failure marked), the per-module table with the first failure highlighted, and the port's module
tree coloured by each module's result. Each point of the chart links to its table row and has a
tooltip (an SVG <title>).
"""
from __future__ import annotations

import html
import math
from typing import Any

# the chart's colours (tests/test_htmlreport.py counts their pixels in a screenshot)
STAGE_ONE = "#1f77b4"
STAGE_TWO = "#ff7f0e"
TOLERANCE = "#d62728"
_STATUS_CLASS = {"ok": "ok", "folded": "ok", "DRIFT": "drift"}

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: 600; }
.badge.ok { background: #2ca02c; } .badge.fail { background: #d62728; }
.meta { color: #555; } .summary { white-space: pre-wrap; background: #f6f6f6; padding: 8px 12px; border-radius: 4px; }
table { border-collapse: collapse; font: 12px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { position: sticky; top: 0; background: #fafafa; } td.l, th.l { text-align: left; }
tr.fail td { background: #fde8e8; } tr.drift td { background: #fff2e0; }
tr.first td { background: #f9c6c6; font-weight: 600; } tr:target td { outline: 2px solid #1f77b4; }
.st-ok { color: #2ca02c; } .st-fail { color: #d62728; font-weight: 600; } .st-drift { color: #e67e00; font-weight: 600; }
.tree ul { list-style: none; margin: 0; padding-left: 18px; border-left: 1px dotted #ccc; }
.tree li { margin: 1px 0; font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
.tree summary { cursor: pointer; } .tree .cls { color: #777; } .tree .first { background: #f9c6c6; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; }
.dot.ok { background: #2ca02c; } .dot.fail { background: #d62728; } .dot.drift { background: #ff7f0e; }
.dot.none { background: #ccc; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.scroll { overflow-x: auto; max-height: 70vh; overflow-y: auto; border: 1px solid #eee; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _css_class(row: Any) -> str:
    return _STATUS_CLASS.get(row.status, "fail")


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def chart(report: Any, width: int = 1000, height: int = 330) -> str:
    """The error-per-module chart as inline SVG: one point per row in execution order."""
    rows = report.rows
    left, right, top, bottom = 56, 16, 30, height - 34
    ones = [r.stats.ratio for r in rows if r.stats is not None]
    twos = [r.drift.ratio for r in rows if r.drift is not None]
    positive = [v for v in ones + twos if _finite(v) and v > 0]
    lo_exp = max(-8, min(-2, math.floor(math.log10(min(positive))) if positive else -2))
    hi_exp = min(8, max(1, math.ceil(math.log10(max(positive))) if positive else 1))
    n = max(len(rows), 1)
    step = (width - left - right) / n
    radius = max(1.5, min(4.0, step / 2.5))

    def x(i: int) -> float:
        return left + (i + 0.5) * step

    def y(v: float | None) -> float:
        if v is None or not math.isfinite(v):
            return float(top)  # off the scale (inf, nan): drawn at the top
        e = math.log10(v) if v > 0 else lo_exp
        e = min(max(e, lo_exp), hi_exp)
        return bottom - (e - lo_exp) / (hi_exp - lo_exp) * (bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
           f'style="max-width:{width}px" role="img" aria-label="error per module, log scale">']
    first = report.first_failure
    if first is not None and first in rows:
        i = rows.index(first)
        out.append(f'<rect x="{x(i) - max(step / 2, 3):.1f}" y="{top}" width="{max(step, 6):.1f}" '
                   f'height="{bottom - top}" fill="{TOLERANCE}" fill-opacity="0.18"/>')
        anchor = "end" if x(i) > width * 0.7 else "start"
        out.append(f'<text x="{x(i) + (-6 if anchor == "end" else 6):.1f}" y="{top + 12}" text-anchor="{anchor}" '
                   f'style="fill:{TOLERANCE};font-weight:600">first failure: {_e(first.label)}</text>')
    for e in range(lo_exp, hi_exp + 1):  # decades
        yy = y(10.0 ** e)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e6e6e6"/>')
        tick = f"{10.0 ** e:g}" if -3 <= e <= 3 else f"1e{e}"
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{tick}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#999"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" stroke="{TOLERANCE}" '
               f'stroke-width="2" stroke-dasharray="7 4"/>')
    out.append(f'<text x="{width - right - 4}" y="{y(1.0) - 5:.1f}" text-anchor="end" style="fill:{TOLERANCE}">'
               'tolerance / budget = 1</text>')
    out.append(f'<text x="{left}" y="{height - 8}">modules in execution order ({len(rows)} rows) \u2192</text>')
    for series, color, shape, dash in ((lambda r: r.stats.ratio if r.stats else None, STAGE_ONE, "circle", ""),
                                       (lambda r: r.drift.ratio if r.drift else None, STAGE_TWO, "square",
                                        ' stroke-dasharray="4 3"')):
        points = [(i, series(r)) for i, r in enumerate(rows) if series(r) is not None]
        if len(points) > 1:
            path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>')
        for i, v in points:
            r = rows[i]
            tip = _e(f"{r.label} ({r.module}): {'err/tol' if shape == 'circle' else 'drift/budget'} "
                     f"{v:.3g}, {r.status}")
            ring = f' stroke="{TOLERANCE}" stroke-width="2"' if not r.passed else ""
            mark = (f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{radius:.1f}" fill="{color}"{ring}/>'
                    if shape == "circle" else
                    f'<rect x="{x(i) - radius:.1f}" y="{y(v) - radius:.1f}" width="{2 * radius:.1f}" '
                    f'height="{2 * radius:.1f}" fill="{color}"{ring}/>')
            out.append(f'<a href="#row-{i}"><title>{tip}</title>{mark}</a>')
    for i, r in enumerate(rows):  # failures without numbers (shape, unmatched, ...) at the top
        if r.stats is None and not r.passed:
            out.append(f'<a href="#row-{i}"><title>{_e(r.label)}: {_e(r.status)} {_e(r.note)}</title>'
                       f'<text x="{x(i):.1f}" y="{top - 4}" text-anchor="middle" '
                       f'style="fill:{TOLERANCE};font-weight:700">\u00d7</text></a>')
    legend = [(f'<circle cx="{{x}}" cy="11" r="5" fill="{STAGE_ONE}"/>', "stage one: err/tol (float32 port vs torch)"),
              (f'<rect x="{{x}}" y="6" width="10" height="10" fill="{STAGE_TWO}" transform="translate(-5,0)"/>',
               f"stage two: drift/budget ({report.precision} vs float32 port)")]
    lx = left + 5
    for mark, text in legend:
        out.append(mark.format(x=lx) + f'<text x="{lx + 10}" y="15">{_e(text)}</text>')
        lx += 26 + 6.2 * len(text)
    out.append("</svg>")
    return "\n".join(out)


def _table(report: Any) -> str:
    head = ["#", "module", "type", "shape", "dtype", "max|a-b|", "err/tol", "cosine", "SNR dB", "drift/budget",
            "status", "note"]
    left_cols = {1, 2, 11}
    out = ["<table><thead><tr>" + "".join(f'<th class="{"l" if i in left_cols else ""}">{_e(h)}</th>'
                                          for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    first = report.first_failure
    for i, r in enumerate(report.rows):
        cells = [str(i), *r.cells(), r.note]
        cls = [] if r.passed else [_css_class(r)]
        if r is first:
            cls.append("first")
        status_cls = {"ok": "st-ok", "drift": "st-drift"}.get(_css_class(r), "st-fail")
        tds = []
        for j, c in enumerate(cells):
            klass = "l" if j in left_cols else ""
            if j == 10:
                klass = status_cls
            tds.append(f'<td class="{klass}">{_e(c)}</td>')
        out.append(f'<tr id="row-{i}" class="{" ".join(cls)}">' + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _tree(report: Any) -> str:
    """The port's module tree, each module with the worst result of its rows."""
    modules = list(getattr(report, "modules", None) or [])
    if not modules:
        return "<p>(the module tree is not known for this report)</p>"
    rank = {"ok": 0, "none": 0, "drift": 1, "fail": 2}
    result: dict[str, str] = {}
    rows_of: dict[str, int] = {}
    for i, r in enumerate(report.rows):
        path = r.port_path or r.path
        c = "ok" if r.passed else _css_class(r)
        if rank[c] >= rank.get(result.get(path, "none"), 0):
            result[path] = c
        rows_of.setdefault(path, i)
    outputs = [r for r in report.rows if r.path.startswith("<output")]  # the whole model's result
    if outputs:
        result[""] = max(("ok" if r.passed else _css_class(r) for r in outputs), key=rank.__getitem__)
    first = report.first_failure
    first_path = (first.port_path or first.path) if first is not None else None
    children: dict[str, list[str]] = {}
    classes = dict(modules)
    for path, _ in modules:
        if path:
            parent = path.rpartition(".")[0]
            children.setdefault(parent, []).append(path)

    def on_first_path(path: str) -> bool:
        return first_path is not None and (path == "" or first_path == path or first_path.startswith(path + "."))

    def node(path: str, depth: int) -> str:
        name = path.rpartition(".")[2] if path else "(model)"
        status = result.get(path, "none")
        link = f' <a href="#row-{rows_of[path]}">row {rows_of[path]}</a>' if path in rows_of else ""
        mark = ' class="first"' if path and path == first_path else ""
        label = (f'<span class="dot {status}"></span><span{mark}>{_e(name)}</span> '
                 f'<span class="cls">{_e(classes.get(path, ""))}</span>{link}')
        kids = children.get(path, [])
        if not kids:
            return f"<li>{label}</li>"
        opened = " open" if depth < 2 or on_first_path(path) else ""
        inner = "".join(node(k, depth + 1) for k in kids)
        return f"<li><details{opened}><summary>{label}</summary><ul>{inner}</ul></details></li>"
    return f'<div class="tree"><ul>{node("", 0)}</ul></div>'


def render(report: Any, title: str | None = None) -> str:
    """The whole page."""
    from netdef.compare import LEGEND

    ok = report.ok
    title = title or "netdef compare"
    badge = f'<span class="badge {"ok" if ok else "fail"}">{"OK" if ok else "FAIL"}</span>'
    meta = (f"precision of stage two: {_e(report.precision)}; stage one: float32 port against torch; "
            f"runner: {_e(report.backend)}; {report.compared} outputs compared")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}: {'OK' if ok else 'FAIL'}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)} {badge}</h1>", f'<p class="meta">{meta}</p>',
        f'<div class="summary">{_e(report.summary())}</div>',
        "<h2>Error per module, in execution order (log scale)</h2>", chart(report),
        "<h2>Modules</h2>", f'<div class="scroll">{_table(report)}</div>',
        f'<details><summary>Legend</summary><pre>{_e(LEGEND)}</pre></details>',
        "<h2>Module tree of the port</h2>", _tree(report),
        "</body></html>", ""])
