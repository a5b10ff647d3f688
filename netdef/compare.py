"""compare(): is the port right, and how far does its precision drift? Module by module.

Stage one proves the port: it traces the port in float32 and checks every module's output
against the torch original's (recorded with forward hooks) at float32 tolerance: a few times
the port's own float32 rounding at that tensor (measured by running the port once more in
float64) plus a small floor (netdef.tolerance.FLOAT32). That checks structure and weights
whatever the target precision, so a reduced-precision tolerance can never hide a porting
mistake.

Stage two measures precision: it runs the network `build` makes (the target dtype, dtype
overrides, 8-bit Q/DQ, folded BatchNorm, TF32 math) against stage one's float32 values of
the same port, per module, against a drift budget per precision (netdef.tolerance).

Modules are matched by module path (the port's path, mapped through `name_map`/`prefix`),
calls of a module called several times by their inputs, outputs by structure. A port module
that produced layers but has no counterpart in the original fails; so does a comparison
that compared nothing. Rows come in execution order (a module completes after its children),
so the first failing row is the innermost module where the port diverges.
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from netdef import dtypes, feeds, tolerance
from netdef.errors import TraceError
from netdef.network import Input, Network
from netdef.quantize import QuantConfig
from netdef.trace import trace

LEGEND = """\
columns: module = module path (#k: its k-th call); type = the torch module's class;
  max|a-b| = stage one's largest absolute difference, the float32 port against torch;
  err/tol = that error as a fraction of the float32 tolerance, factor x the port's own float32 rounding
            (its float32 run against its float64 run) + atol*RMS(torch) (<= 1 passes);
  cosine = cosine similarity of the port's and torch's outputs;
  SNR dB = stage two's signal-to-noise ratio of the network as built (its precision) against the float32 port;
  drift/budget = stage two's drift as a fraction of the precision's budget (<= 1 passes);
  status = ok | FAIL (stage one) | DRIFT (stage two) | shape | nonfinite | unmatched | calls | folded"""


@dataclass
class Row:
    """One module call (or network output): stage one against torch, stage two against stage one."""

    path: str
    module: str
    call: int
    shape: tuple
    torch_shape: tuple
    dtype: str
    status: str  # see LEGEND
    stats: tolerance.Stats | None = None
    drift: tolerance.Drift | None = None
    note: str = ""  # why a row without numbers failed, or what it stands for
    port_path: str = ""  # the port's module path, when name mapping made it differ from `path`

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "folded")

    @property
    def port_ok(self) -> bool:
        """Whether stage one passed here: numbers compared within the float32 tolerance (a row
        without numbers that fails is a port fault: shape, missing, unmatched, calls)."""
        return self.stats.passed if self.stats is not None else self.passed

    @property
    def label(self) -> str:
        return self.path if self.call == 0 else f"{self.path}#{self.call}"

    @property
    def shown_label(self) -> str:
        """The label, with the port's module path where name mapping made it differ."""
        return self.label if not self.port_path or self.port_path == self.path else f"{self.label} (port {self.port_path})"

    def cells(self) -> list[str]:
        """The row as the report's table shows it (columns after "#"; see LEGEND)."""
        s, d = self.stats, self.drift
        return [self.shown_label, self.module, "x".join(map(str, self.shape)) or "scalar", self.dtype,
                f"{s.max_abs:.3g}" if s else "-", f"{s.ratio:.3g}" if s else "-", f"{s.cosine:.6f}" if s else "-",
                f"{d.snr_db:.1f}" if d else "-", f"{d.ratio:.3g}" if d else "-", self.status]

    def to_dict(self) -> dict:
        d = {"path": self.path, "port_path": self.port_path or self.path, "module": self.module,
             "call": self.call, "shape": list(self.shape), "torch_shape": list(self.torch_shape),
             "dtype": self.dtype, "status": self.status, "note": self.note}
        if self.stats is not None:
            s = self.stats
            d.update(max_abs=s.max_abs, err_over_tol=s.ratio, cosine=s.cosine, atol=s.atol, rtol=s.rtol,
                     rounding_allowance_rms=s.noise, atol_that_would_pass=s.needed_atol, nonfinite=s.nonfinite)
        if self.drift is not None:
            r = self.drift
            d["drift"] = {"snr_db": r.snr_db, "max_abs": r.max_abs, "max_err_rms": r.err,
                          "cosine": r.cosine, "drift_over_budget": r.ratio, "nonfinite": r.nonfinite,
                          "budget": {"min_snr_db": r.budget.min_snr_db, "max_err": r.budget.max_err}}
        return d


def _json_safe(v: Any) -> Any:
    """Infinite and NaN numbers as the strings "inf", "-inf", "nan": strict JSON has no such numbers."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


@dataclass
class Report:
    """The per-module comparison; `ok` only if both stages pass and something was compared."""

    dtype: str
    backend: str
    rows: list[Row] = field(default_factory=list)
    trace_error: str | None = None
    quantization: str | None = None  # the Q/DQ type ("int8", ...) when compared with a QuantConfig
    precision: str = "float32"  # what stage two ran: e.g. "float16", "float32 + TF32", "float16 + int8 Q/DQ"
    drift_checked: bool = False  # whether stage two ran
    unmatched_torch: list[str] = field(default_factory=list)  # torch modules the port never matched
    ignored: list[str] = field(default_factory=list)
    uncalled: list[str] = field(default_factory=list)  # port modules whose torch twin exists but never runs
    in_loops: list[str] = field(default_factory=list)  # modules the port calls inside a loop body
    nested: list[str] = field(default_factory=list)  # modules torch ran on nested tensors
    modules: list[tuple[str, str]] = field(default_factory=list)  # the port's (module path, class) tree

    @property
    def compared(self) -> int:
        """Module and network outputs compared in stage one."""
        return sum(r.stats is not None for r in self.rows)

    @property
    def ok(self) -> bool:
        return self.trace_error is None and self.compared > 0 and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def first_failure(self) -> Row | None:
        """The first row that fails stage one (the port is wrong there), else the first that fails
        stage two (drift, or NaN/inf in the reduced-precision run)."""
        fails = self.failures
        return next((r for r in fails if not r.port_ok), None) or next(iter(fails), None)

    def to_json(self) -> str:
        first = self.first_failure
        return json.dumps(_json_safe({"ok": self.ok, "dtype": self.dtype, "quantization": self.quantization,
                           "precision": self.precision, "backend": self.backend,
                           "compared": self.compared, "first_failure": first.label if first else None,
                           "trace_error": self.trace_error, "unmatched_torch_modules": self.unmatched_torch,
                           "ignored": self.ignored, "uncalled_torch_modules": self.uncalled,
                           "modules_in_loops": self.in_loops, "modules_on_nested_tensors": self.nested, "rows": [r.to_dict() for r in self.rows]}),
                          indent=2, allow_nan=False)

    def summary(self) -> str:
        lines = []
        if self.unmatched_torch:
            shown = ", ".join(self.unmatched_torch[:8]) + (" ..." if len(self.unmatched_torch) > 8 else "")
            lines.append(f"{len(self.unmatched_torch)} torch module(s) have no port counterpart "
                         f"(not compared): {shown}")
        if self.uncalled:
            lines.append(f"{len(self.uncalled)} module(s) not compared because the torch original never calls "
                         f"them (it reads their weights directly): {', '.join(self.uncalled[:8])}")
        if self.in_loops:
            lines.append(f"{len(self.in_loops)} module(s) not compared call by call because the port calls them "
                         f"inside a loop body (the modules holding the loops are compared): {', '.join(self.in_loops[:8])}")
        if self.nested:
            lines.append(f"{len(self.nested)} module(s) not compared call by call because torch ran them on nested "
                         f"tensors (TransformerEncoder's inference fast path; the encoder's output is compared): "
                         f"{', '.join(self.nested[:8])}")
        stage2 = f"; drift of {self.precision} checked" if self.drift_checked else ""
        what = f"{self.compared} outputs compared (float32 port vs torch{stage2}; {self.backend})"
        if self.trace_error:
            lines.append("tracing stopped early: " + self.trace_error.splitlines()[0])
        if self.compared == 0:
            lines.append("FAIL: nothing was compared: no port module or output matched the torch model's "
                         "(align names with name_map=, prefix= or ignore=)")
            return "\n".join(lines)
        first = self.first_failure
        if self.ok:
            worst = max((r.stats.ratio for r in self.rows if r.stats), default=0.0)
            worst_drift = max((r.drift.ratio for r in self.rows if r.drift), default=None)
            drift = "" if worst_drift is None else f", worst drift/budget {worst_drift:.3g}"
            lines.append(f"OK: {what}; worst err/tol {worst:.3g}{drift}")
            return "\n".join(lines)
        lines.append(f"FAIL: {len(self.failures)} row(s) fail; {what}")
        if first is not None:
            lines.append(f"first divergent module: {first.label} ({first.module}): {_detail(first)}")
        return "\n".join(lines)

    def table(self) -> str:
        head = ("#", "module", "type", "shape", "dtype", "max|a-b|", "err/tol", "cosine", "SNR dB",
                "drift/budget", "status")
        body = []
        for i, r in enumerate(self.rows):
            body.append((str(i), *r.cells()))
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'>' if i in (0, 5, 6, 7, 8, 9) else '<'}{w}}}" for i, w in enumerate(widths))
        return "\n".join(fmt.format(*row) for row in [head, *body])

    def __str__(self) -> str:
        return self.table() + "\n" + LEGEND + "\n" + self.summary()

    def to_html(self, title: str | None = None) -> str:
        """The report as one self-contained HTML page: the error chart, the table and the module
        tree (netdef/htmlreport.py)."""
        from netdef import htmlreport

        return htmlreport.render(self, title)


def _detail(row: Row) -> str:
    if row.note and row.stats is None:
        return row.note
    if row.port_ok and row.drift is not None and not row.drift.passed:
        return f"precision drift: {row.drift}"
    if row.stats is not None:
        return f"{row.stats}; atol >= {row.stats.needed_atol:.3g} would pass"
    return row.note or row.status


# ---- the torch side ------------------------------------------------------------------------------
@dataclass
class _Call:
    path: str
    kind: str
    call: int
    inputs: list
    outputs: list


def _leaves(obj: Any, is_leaf: Callable[[Any], bool], prefix: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, leaf) for the leaves of nested tuples/lists/dicts (ModelOutput is a dict); None skipped."""
    if is_leaf(obj):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _leaves(v, is_leaf, (*prefix, k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, is_leaf, (*prefix, i))


def _torch_tensors(obj: Any) -> list:
    import torch

    return [t for _, t in _leaves(obj, lambda o: isinstance(o, torch.Tensor))]


def _record_torch(torch_model: Any, args: Sequence[Any]) -> tuple[list[_Call], Any, set[str]]:
    """Run the torch model with forward hooks: every submodule call in completion order, the output,
    and the paths of modules torch ran on nested tensors (TransformerEncoder's inference fast path:
    their padded positions hold no values, so they are not compared call by call).
    The model runs in eval mode; every module's train/eval flag is restored afterwards."""
    import torch

    records: list[_Call] = []
    calls: dict[str, int] = {}
    nested: set[str] = set()

    def hook_for(path: str):
        def hook(module: Any, inp: Any, kwargs: Any, output: Any) -> None:
            tensors_in, tensors_out = _torch_tensors((inp, kwargs)), _torch_tensors(output)
            if any(t.is_nested for t in (*tensors_in, *tensors_out)):
                nested.add(path)
                return
            n = calls.get(path, 0)
            calls[path] = n + 1
            # clone: a later in-place op (torchvision's ReLU(inplace=True)) would overwrite it
            records.append(_Call(path, type(module).__name__, n, [t.detach().clone() for t in tensors_in],
                                 [t.detach().clone() for t in tensors_out]))
        return hook

    modes = [(m, m.training) for m in torch_model.modules()] if hasattr(torch_model, "modules") else []
    if hasattr(torch_model, "eval"):
        torch_model.eval()
    handles = [m.register_forward_hook(hook_for(path), with_kwargs=True)
               for path, m in torch_model.named_modules() if path] if hasattr(torch_model, "named_modules") else []
    try:
        with torch.no_grad():
            out = torch_model(*args)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return records, out, nested


# ---- names ----------------------------------------------------------------------------------------
class _Names:
    """Port module path -> torch module path, and which paths to ignore."""

    def __init__(self, name_map: Mapping[str, str] | Callable[[str], str | None] | None, prefix: str | None,
                 ignore: Sequence[str] | str | None) -> None:
        if name_map is not None and not callable(name_map) and not isinstance(name_map, Mapping):
            raise TypeError(f"name_map must be a dict or a callable, got {type(name_map).__name__}")
        self.name_map, self.prefix = name_map, prefix or ""
        self.ignore = [ignore] if isinstance(ignore, str) else list(ignore or ())

    def torch_path(self, port_path: str) -> str | None:
        path: str | None = port_path
        if callable(self.name_map):
            path = self.name_map(port_path)
        elif self.name_map:  # the longest matching prefix (whole path components) is replaced
            best = max((k for k in self.name_map if _under(port_path, k)), key=len, default=None)
            if best is not None:
                target = self.name_map[best]
                rest = port_path[len(best):].lstrip(".")
                path = ".".join(p for p in (target, rest) if p)
        return None if path is None else self.prefix + path

    def ignored(self, *paths: str | None) -> bool:
        return any(p is not None and any(_under(p, pat) or fnmatch.fnmatchcase(p, pat) for pat in self.ignore)
                   for p in paths)


def _under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + ".")


def _produced_layers(net: Network, path: str) -> bool:
    return any(_under(p, path) and layers for p, layers in net.module_layers.items() if p)


# ---- matching calls ---------------------------------------------------------------------------------
def _pair_calls(torch_calls: list[_Call], port_inputs: list[list], value: Callable[[str], Any]) -> list:
    """Pair torch calls with port calls of one module by their inputs (a shared module may be called
    in another order by a correct port); falls back to call order when inputs say nothing."""
    if len(torch_calls) == 1 and len(port_inputs) == 1:
        return [(0, 0)]

    def cost(i: int, j: int) -> float:
        theirs, ours = torch_calls[i].inputs, [value(name) for name in port_inputs[j]]
        if not theirs or len(theirs) != len(ours) or any(o is None for o in ours):
            return 0.0 if i == j else 1.0
        total = 0.0
        for t, o in zip(theirs, ours):
            if tuple(t.shape) != tuple(o.shape):
                return float("inf")
            t, o = t.double().cpu(), o.double().cpu()
            total += float((t - o).norm() / (t.norm() + 1e-30))
        return total

    costs = [[cost(i, j) for j in range(len(port_inputs))] for i in range(len(torch_calls))]
    m, k = len(torch_calls), len(port_inputs)
    if max(m, k) <= 6:  # exhaustive: the assignment of least total input distance, call order on ties
        if m <= k:
            options = [list(zip(range(m), p)) for p in itertools.permutations(range(k), m)]
        else:
            options = [sorted(zip(q, range(k))) for q in itertools.permutations(range(m), k)]
        return min(options, key=lambda pairs: (sum(costs[i][j] for i, j in pairs), pairs))
    pairs, used_t, used_p = [], set(), set()  # greedy for many calls
    for _, i, j in sorted((costs[i][j], i, j) for i in range(m) for j in range(k)):
        if i not in used_t and j not in used_p:
            pairs.append((i, j))
            used_t.add(i)
            used_p.add(j)
    return sorted(pairs)


# ---- compare ------------------------------------------------------------------------------------------
def compare(torch_model: Any, model: Any, inputs: Any, dtype: Any = "float32", *,
            atol: float | None = None, rtol: float | None = None, noise_factor: float | None = None,
            tolerances: Mapping[str, tuple[float, float]] | None = None,
            drift: tolerance.Budget | Mapping[str, tolerance.Budget] | None = None,
            name_map: Mapping[str, str] | Callable[[str], str | None] | None = None,
            prefix: str | None = None, ignore: Sequence[str] | str | None = None,
            backend: str = "reference", device: str = "cpu", input_names: Sequence[str] | None = None,
            dtype_overrides: Mapping[str, Any] | None = None, quantization: QuantConfig | None = None,
            fold_batchnorm: bool = True, tf32: bool = True) -> Report:
    """Compare every module of `model` (netdef) with `torch_model`, on `inputs` (a tensor or a tuple).

    Stage one: the port in float32 against torch, at float32 tolerance (netdef.tolerance.FLOAT32:
    noise_factor x the port's own float32 rounding + atol x RMS + rtol x |torch|; override
    noise_factor/atol/rtol, or atol/rtol per module path prefix with tolerances={"layer4": (atol, rtol)}).
    Stage two: the network as `build` makes it (dtype, dtype_overrides, quantization, BatchNorm
    folding, TF32 math as TensorRT's default) against stage one's float32 port, per module,
    against the precision's drift budget (netdef.tolerance.DRIFT; override with drift=Budget(...)
    or {module path prefix: Budget}).

    Names: the port's module path P is compared with torch's `prefix + name_map(P)` (name_map: a
    dict of path prefixes, or a callable returning the torch path or None); `ignore` lists module
    paths (prefixes or fnmatch patterns, port's or torch's) not to compare, also network outputs
    ("<output logits>"). backend="engine" runs stage two on a built engine (needs a GPU the
    TensorRT backend supports).
    """
    from netdef import reference
    from netdef.build import prepare

    if backend not in ("reference", "engine"):
        raise ValueError(f"backend must be 'reference' or 'engine', got {backend!r}")
    dtype = dtypes.name(dtype)
    if quantization is not None and not isinstance(quantization, QuantConfig):
        raise TypeError(f"quantization must be a netdef.quantize.QuantConfig, got {type(quantization).__name__}")
    names_of = _Names(name_map, prefix, ignore)
    args = feeds.to_torch(_as_tuple(inputs))
    names = list(input_names) if input_names else feeds.input_names(len(args))
    records, torch_out, nested = _record_torch(torch_model, [a.float() if a.is_floating_point() else a for a in args])
    torch_modules = {p for p, _ in torch_model.named_modules()} if hasattr(torch_model, "named_modules") else set()
    specs = [Input(n, tuple(a.shape), dtypes.name(a.dtype)) for n, a in zip(names, args)]
    named = dict(zip(names, args))
    overrides = dict(dtype_overrides or {})
    precision = _precision(dtype, overrides, quantization, tf32)
    report = Report(dtype=dtype, backend=backend, quantization=quantization.dtype if quantization else None,
                    precision=precision)
    if hasattr(model, "named_modules"):
        report.modules = [(path, type(m).__name__) for path, m in model.named_modules()]

    # stage one: the port in float32 against torch
    try:
        net = trace(model, *specs, dtype="float32")
    except TraceError as exc:
        if getattr(exc, "network", None) is None:
            raise
        net = exc.network
        report.trace_error = str(exc)
    values = reference.run(net, named, all_tensors=True, device=device, partial=report.trace_error is not None)
    # the port's own float32 rounding at every tensor: its float32 run against its float64 run
    import torch

    wide = reference.run(net, named, all_tensors=True, device=device, partial=report.trace_error is not None,
                         compute_dtype=torch.float64)
    factor = tolerance.FLOAT32.factor if noise_factor is None else noise_factor

    # stage two: the network as built, against stage one's values of the same port
    built = built_values = None
    engine = backend == "engine"
    if report.trace_error is None and (precision != "float32" or fold_batchnorm or engine):
        built = prepare(model, *specs, dtype=dtype, fold_batchnorm=fold_batchnorm, dtype_overrides=overrides,
                        quantization=quantization)
        if precision == "float32" and built.folded_batchnorms == 0 and not engine:
            built = None  # nothing differs from stage one
    folded_into = {conv: bn for bn, conv in built.aliases.items()} if built is not None else {}
    if built is not None:
        report.drift_checked = True
        if engine:
            built_values = _run_engine(built, named, tf32)
        else:
            built_values = reference.run(built, named, all_tensors=True, device=device, tf32=tf32)

    def stage_one_tol(path: str) -> tuple[float, float]:
        best = _longest(path, tolerances)
        if best is not None:
            return tolerances[best]
        return (tolerance.FLOAT32.atol if atol is None else atol, tolerance.FLOAT32.rtol if rtol is None else rtol)

    def noise(name: str) -> float:
        return factor * tolerance.rounding(values.get(name), wide.get(name))

    def budget(path: str) -> tolerance.Budget:
        if isinstance(drift, tolerance.Budget):
            return drift
        best = _longest(path, drift)
        return drift[best] if best is not None else tolerance.DRIFT[_budget_key(precision)]

    # modules: torch records in completion order, matched to port calls by path, then by inputs
    torch_calls: dict[str, list[_Call]] = {}
    for rec in records:
        torch_calls.setdefault(rec.path, []).append(rec)
    port_of: dict[str, str] = {}  # torch path -> port path
    for ppath in net.module_outputs:
        tpath = names_of.torch_path(ppath)
        if names_of.ignored(ppath, tpath):
            report.ignored.append(ppath)
            continue
        if tpath in torch_calls and tpath not in port_of:
            port_of[tpath] = ppath
        elif tpath in nested:
            report.nested.append(tpath)
        elif tpath in torch_modules:  # the original has it but never calls it (torch's MHA reads
            report.uncalled.append(tpath)  # out_proj.weight directly): nothing to compare against
        elif _produced_layers(net, ppath) and report.trace_error is None:
            note = (f"port module {ppath!r} produced layers but the torch original has no module "
                    f"{tpath!r}" if tpath is not None else f"name_map gives no torch module for {ppath!r}")
            report.rows.append(Row(tpath or ppath, "?", 0, (), (), "-", "unmatched", note=note, port_path=ppath))
    pairs: dict[tuple[str, int], int] = {}
    for tpath, ppath in port_of.items():
        tcalls, pin = torch_calls[tpath], net.module_inputs.get(ppath, [])
        pin = pin[:len(net.module_outputs[ppath])]
        for i, j in _pair_calls(tcalls, pin, values.get):
            pairs[(tpath, i)] = j
    in_loops = {names_of.torch_path(p) for p in net.loop_module_outputs}
    seen_unmatched: set[str] = set()
    for rec in records:
        ppath = port_of.get(rec.path)
        if ppath is None:
            if not names_of.ignored(rec.path) and rec.path not in seen_unmatched:
                seen_unmatched.add(rec.path)
                (report.in_loops if rec.path in in_loops else report.unmatched_torch).append(rec.path)
            continue
        j = pairs.get((rec.path, rec.call))
        mapped = ppath if ppath != rec.path else ""
        if j is None:
            if report.trace_error is None:
                n_port = len(net.module_outputs[ppath])
                report.rows.append(Row(rec.path, rec.kind, rec.call, (), (), "-", "calls", port_path=mapped,
                                       note=f"torch calls {rec.path!r} {len(torch_calls[rec.path])} time(s), "
                                            f"the port {n_port} time(s)"))
            continue
        ours = net.module_outputs[ppath][j]
        theirs = rec.outputs
        if len(ours) != len(theirs):
            report.rows.append(Row(rec.path, rec.kind, rec.call, (), (), "-", "shape", port_path=mapped,
                                   note=f"the port's module returns {len(ours)} tensor(s), torch's {len(theirs)}"))
            continue
        built_names = built.module_outputs.get(ppath, []) if built is not None else []
        for k, (tname, t) in enumerate(zip(ours, theirs)):
            row = _row(rec.path, rec.kind, rec.call, values.get(tname), t, stage_one_tol(rec.path), noise(tname),
                       mapped)
            if built_values is not None and row.status == "ok" and j < len(built_names):
                _stage_two(row, built, folded_into, built_values, built_names[j][k], values[tname],
                           budget(rec.path))
            report.rows.append(row)
    if report.trace_error is None:
        for row in _output_rows(net, values, built, folded_into, built_values, torch_out, type(torch_model).__name__,
                                names_of, stage_one_tol(""), noise, budget("")):
            report.rows.append(row)
    return report


def _as_tuple(inputs: Any) -> tuple:
    """compare's inputs: a tuple or list of tensors/arrays, or one bare tensor/array."""
    if isinstance(inputs, (list, tuple)):
        return tuple(inputs)
    if isinstance(inputs, Mapping):
        raise TypeError("compare() takes the model's positional inputs as a tensor or a tuple of tensors, "
                        "not a dict")
    return (inputs,)


def _longest(path: str, table: Mapping[str, Any] | None) -> str | None:
    if not table or not isinstance(table, Mapping):
        return None
    return max((k for k in table if _under(path, k)), key=len, default=None)


def _precision(dtype: str, overrides: Mapping[str, Any], quantization: QuantConfig | None, tf32: bool) -> str:
    """What stage two runs, in words: the least precise of the network's dtypes, Q/DQ and TF32."""
    floats = {dtype, *(dtypes.name(d) for d in overrides.values())}
    low = next((d for d in ("bfloat16", "float16") if d in floats), "float32")
    parts = [low]
    if low == "float32" and tf32:
        parts.append("TF32")
    if quantization is not None:
        parts.append(f"{quantization.dtype} Q/DQ")
    return " + ".join(parts)


def _budget_key(precision: str) -> str:
    """The drift budget of a precision: the loss of its least precise part."""
    if "Q/DQ" in precision:
        return precision.split(" + ")[-1].removesuffix(" Q/DQ")
    if precision.startswith("float32"):
        return "tf32" if "TF32" in precision else "float32"
    return precision.split(" + ")[0]


def _row(path: str, kind: str, call: int, ours: Any, theirs: Any, tol: tuple[float, float], noise: float = 0.0,
         port_path: str = "") -> Row:
    if ours is None:  # the tensor was never computed (the network stopped before it)
        return Row(path, kind, call, (), tuple(theirs.shape), "-", "missing", port_path=port_path,
                   note="the port stopped before computing this module (see the tracing error)")
    shape, tshape = tuple(ours.shape), tuple(theirs.shape)
    if shape != tshape:
        return Row(path, kind, call, shape, tshape, dtypes.name(ours.dtype), "shape", port_path=port_path,
                   note=f"shape {shape} vs torch {tshape}")
    stats = tolerance.compare_arrays(ours, theirs, *tol, noise=noise)
    status = "ok" if stats.passed else ("nonfinite" if stats.nonfinite else "FAIL")
    return Row(path, kind, call, shape, tshape, dtypes.name(ours.dtype), status, stats, port_path=port_path)


def _stage_two(row: Row, built: Network, folded_into: Mapping[str, str], values: Mapping[str, Any], name: str,
               reference: Any, budget: tolerance.Budget) -> None:
    """Drift of the built network's value of tensor `name` against stage one's value
    (`folded_into`: convolution output -> the BatchNorm folded into it)."""
    if name in folded_into:  # this convolution now computes its BatchNorm's output
        row.status, row.note = "folded", f"folded with its BatchNorm ({folded_into[name]}) at build time"
        return
    ours = values.get(built.aliases.get(name, name))
    if ours is None:
        return
    row.dtype = dtypes.name(ours.dtype)
    row.drift = tolerance.drift(ours, reference, budget)
    if not row.drift.passed:
        row.status = "nonfinite" if row.drift.nonfinite else "DRIFT"


def _output_rows(net: Network, values: Mapping[str, Any], built: Network | None, folded_into: Mapping[str, str],
                 built_values: Any,
                 torch_out: Any, kind: str, names_of: _Names, tol: tuple[float, float],
                 noise: Callable[[str], float], budget: tolerance.Budget) -> Iterator[Row]:
    """Network outputs matched to the torch model's outputs by structure; every output is checked."""
    import torch

    theirs = list(_leaves(torch_out, lambda o: isinstance(o, torch.Tensor)))
    ours = list(_leaves(net.output_tree, lambda o: isinstance(o, str)))
    if len(ours) == 1 and ours[0][0] == () and theirs:
        pairs = [(ours[0], theirs[0])]  # one tensor: torch's output, or its first element (HF's logits)
    elif ours and all(isinstance(k[0], int) for k, _ in ours) and isinstance(torch_out, Mapping):
        # a tuple from the port against a dict (ModelOutput): its values in order, as ModelOutput[i]
        by_top: dict[Any, list] = {}
        for key, t in theirs:
            by_top.setdefault(key[0], []).append((key, t))
        tops = list(by_top)
        pairs = [(o, next((t for t in by_top[tops[o[0][0]]] if t[0][1:] == o[0][1:]), None))
                 if o[0][0] < len(tops) else (o, None) for o in ours]
    else:
        index = dict(theirs)
        pairs = [(o, (o[0], index[o[0]]) if o[0] in index else None) for o in ours]
    matched = {id(t[1]) for _, t in pairs if t is not None}
    for (okey, oname), t in pairs:
        label = _output_label(okey if t is None else t[0])
        if names_of.ignored(label):
            continue
        if t is None:
            yield Row(label, kind, 0, (), (), "-", "unmatched", note=f"the port's output {oname!r} has no "
                      "counterpart in the torch model's output")
            continue
        row = _row(label, kind, 0, values.get(oname), t[1], tol, noise(oname))
        if built_values is not None and row.status == "ok" and oname in built_values:
            _stage_two(row, built, folded_into, built_values, oname, values[oname], budget)
        yield row
    for key, t in theirs:
        label = _output_label(key)
        if id(t) not in matched and not names_of.ignored(label):
            yield Row(label, kind, 0, (), tuple(t.shape), "-", "unmatched",
                      note="the torch model returns this output; the port does not")


def _output_label(key: tuple) -> str:
    """`<output>` for a single output, else `<output logits>`, `<output 0>`, `<output 1.boxes>`..."""
    path = ".".join(map(str, key))
    return f"<output {path}>" if path else "<output>"


def _run_engine(net: Network, named: Mapping[str, Any], tf32: bool) -> dict:
    """Build an engine whose outputs include every module output, and run it."""
    from netdef.build import build
    from netdef.runtime import Engine

    marked = set(net.outputs)
    for calls in net.module_outputs.values():
        for call in calls:
            for tname in call:
                tname = net.aliases.get(tname, tname)
                layer = net.producer(tname)
                if tname not in marked and layer is not None:
                    net.network.mark_output(next(layer.get_output(i) for i in range(layer.num_outputs)
                                                 if layer.get_output(i).name == tname))
                    marked.add(tname)
    engine = Engine(build(net, progress=False, tf32=tf32))
    return engine.run(**named)


__all__ = ["LEGEND", "Report", "Row", "compare"]
