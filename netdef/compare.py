"""compare(): every module's output in the netdef port against the torch original, by module path.

The torch side records each submodule's outputs with forward hooks; the netdef side
traces the port (which names tensors after module paths) and executes it with the
reference runner. Rows come in execution order (a module completes after its
children), so the first failing row is the innermost module where the port diverges.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from netdef import dtypes, feeds, tolerance
from netdef.errors import NetdefError, TraceError
from netdef.network import Input, Network
from netdef.quantize import QuantConfig
from netdef.trace import trace


@dataclass
class Row:
    """One module call: its output compared with the torch original's."""

    path: str
    module: str
    call: int
    shape: tuple
    torch_shape: tuple
    dtype: str
    status: str  # "ok", "FAIL", "shape" (shapes differ) or "missing" (no netdef counterpart)
    stats: tolerance.Stats | None = None

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "missing")

    @property
    def label(self) -> str:
        return self.path if self.call == 0 else f"{self.path}#{self.call}"

    def to_dict(self) -> dict:
        d = {"path": self.path, "module": self.module, "call": self.call, "shape": list(self.shape),
             "torch_shape": list(self.torch_shape), "dtype": self.dtype, "status": self.status}
        if self.stats is not None:
            s = self.stats
            d.update(max_abs=s.max_abs, max_rel=s.max_rel, cosine=s.cosine, atol=s.atol, rtol=s.rtol,
                     atol_that_would_pass=s.needed_atol)
        return d


@dataclass
class Report:
    """The per-module comparison; `ok` only if every matched module and output passes."""

    dtype: str
    backend: str
    rows: list[Row] = field(default_factory=list)
    trace_error: str | None = None
    quantization: str | None = None  # the Q/DQ type ("int8", ...) when compared with a QuantConfig

    @property
    def precision(self) -> str:
        return self.dtype if self.quantization is None else f"{self.dtype} + {self.quantization} Q/DQ"

    @property
    def ok(self) -> bool:
        return self.trace_error is None and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def first_failure(self) -> Row | None:
        return next(iter(self.failures), None)

    def to_json(self) -> str:
        first = self.first_failure
        return json.dumps({"ok": self.ok, "dtype": self.dtype, "quantization": self.quantization,
                           "backend": self.backend,
                           "first_failure": first.label if first else None,
                           "trace_error": self.trace_error,
                           "rows": [r.to_dict() for r in self.rows]}, indent=2)

    def summary(self) -> str:
        first = self.first_failure
        n = sum(r.status != "missing" for r in self.rows)
        if self.ok:
            worst = max((r.stats.max_abs for r in self.rows if r.stats), default=0.0)
            return f"OK: {n} module outputs match ({self.precision}, {self.backend}); worst max|a-b| = {worst:.3g}"
        lines = [f"FAIL: {len(self.failures)} of {n} module outputs differ ({self.precision}, {self.backend})"]
        if first is not None:
            detail = (f"shape {first.shape} vs torch {first.torch_shape}" if first.status == "shape"
                      else f"{first.stats}; atol >= {first.stats.needed_atol:.3g} would pass")
            lines.append(f"first divergent module: {first.label} ({first.module}): {detail}")
        if self.trace_error:
            lines.append("tracing stopped early: " + self.trace_error.splitlines()[0])
        return "\n".join(lines)

    def table(self) -> str:
        head = ("#", "module", "type", "shape", "dtype", "max|a-b|", "max rel", "cosine", "status")
        body = []
        for i, r in enumerate(self.rows):
            s = r.stats
            body.append((str(i), r.label, r.module, "x".join(map(str, r.shape)) or "scalar", r.dtype,
                         f"{s.max_abs:.3g}" if s else "-", f"{s.max_rel:.3g}" if s else "-",
                         f"{s.cosine:.6f}" if s else "-", r.status))
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'>' if i in (0, 5, 6, 7) else '<'}{w}}}" for i, w in enumerate(widths))
        return "\n".join(fmt.format(*row) for row in [head, *body])

    def __str__(self) -> str:
        return self.table() + "\n" + self.summary()


def _torch_records(torch_model: Any, args: Sequence[Any]) -> tuple[list[tuple[str, str, int, list]], list]:
    """Run the torch model with forward hooks: [(path, type, call, outputs)] in completion order."""
    import torch

    records: list[tuple[str, str, int, list]] = []
    calls: dict[str, int] = {}
    handles = []

    def hook_for(path: str):
        def hook(module: Any, _inp: Any, output: Any) -> None:
            n = calls.get(path, 0)
            calls[path] = n + 1
            # clone: a later in-place op (torchvision's ReLU(inplace=True)) would overwrite it
            records.append((path, type(module).__name__, n, [t.detach().clone() for t in _flatten_torch(output)]))
        return hook

    for path, m in torch_model.named_modules():
        if path:
            handles.append(m.register_forward_hook(hook_for(path)))
    try:
        with torch.no_grad():
            out = torch_model(*args)
    finally:
        for h in handles:
            h.remove()
    return records, _flatten_torch(out)


def _flatten_torch(obj: Any) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flatten_torch(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flatten_torch(o)]
    return []


def _tolerance_for(path: str, dtype: str, atol: float | None, rtol: float | None,
                   per_module: Mapping[str, tuple[float, float]] | None) -> tuple[float, float]:
    d_atol, d_rtol = tolerance.for_dtype(dtype)
    a, r = (d_atol if atol is None else atol), (d_rtol if rtol is None else rtol)
    if per_module:  # the longest matching module-path prefix wins
        best = max((k for k in per_module if path == k or path.startswith(k + ".") or k == ""),
                   key=len, default=None)
        if best is not None:
            a, r = per_module[best]
    return a, r


def compare(torch_model: Any, model: Any, inputs: Sequence[Any], dtype: Any = "float32", *,
            atol: float | None = None, rtol: float | None = None,
            tolerances: Mapping[str, tuple[float, float]] | None = None,
            backend: str = "reference", device: str = "cpu", input_names: Sequence[str] | None = None,
            dtype_overrides: Mapping[str, Any] | None = None,
            quantization: QuantConfig | None = None) -> Report:
    """Compare every module's output of `model` (netdef) with `torch_model` on `inputs`.

    dtype: the port's compute precision; the torch original always runs in float32,
    so the report shows the port's drift. Tolerances default by dtype
    (netdef.tolerance.DEFAULT); override with atol/rtol, or per module path prefix
    with tolerances={"layer4": (atol, rtol)}. dtype_overrides and quantization (a
    netdef.quantize.QuantConfig) go to trace; with quantization the default tolerances are
    those of its 8-bit type, so the report shows each module's quantization error.
    backend="engine" runs a built engine instead of the reference runner (needs a GPU
    the TensorRT backend supports).
    """
    from netdef import reference

    if backend not in ("reference", "engine"):
        raise ValueError(f"backend must be 'reference' or 'engine', got {backend!r}")
    dtype = dtypes.name(dtype)
    args = feeds.to_torch(inputs)
    names = list(input_names) if input_names else feeds.input_names(len(args))
    if hasattr(torch_model, "eval"):
        torch_model.eval()
    records, torch_outputs = _torch_records(torch_model, [a.float() if a.is_floating_point() else a
                                                          for a in args])
    specs = [Input(n, tuple(a.shape), dtypes.name(a.dtype)) for n, a in zip(names, args)]
    report = Report(dtype=dtype, backend=backend, quantization=quantization.dtype if quantization else None)
    tol_dtype = report.quantization or dtype
    try:
        net: Network = trace(model, *specs, dtype=dtype, dtype_overrides=dict(dtype_overrides or {}),
                             quantization=quantization)
    except TraceError as exc:
        if getattr(exc, "network", None) is None:
            raise
        net = exc.network
        report.trace_error = str(exc)
    named = dict(zip(names, args))
    if backend == "engine":
        values = _run_engine(net, named, report.trace_error)
    else:
        values = reference.run(net, named, all_tensors=True, device=device, partial=report.trace_error is not None)
    for path, kind, call, touts in records:
        calls = net.module_outputs.get(path, [])
        if call >= len(calls):
            for t in touts:
                report.rows.append(Row(path, kind, call, (), tuple(t.shape), dtype, "missing"))
            continue
        for tname, t in zip(calls[call], touts):
            report.rows.append(_row(path, kind, call, values.get(tname), t, dtype,
                                    _tolerance_for(path, tol_dtype, atol, rtol, tolerances)))
    if report.trace_error is None:
        for oname, t in zip(net.outputs, torch_outputs):
            report.rows.append(_row(f"<output {oname}>", type(torch_model).__name__, 0, values[oname], t,
                                    dtype, _tolerance_for("", tol_dtype, atol, rtol, tolerances)))
    return report


def _row(path: str, kind: str, call: int, ours: Any, theirs: Any, dtype: str,
         tol: tuple[float, float]) -> Row:
    if ours is None:  # the tensor was never computed (the network stopped before it)
        return Row(path, kind, call, (), tuple(theirs.shape), dtype, "missing")
    shape, tshape = tuple(ours.shape), tuple(theirs.shape)
    if shape != tshape:
        return Row(path, kind, call, shape, tshape, dtypes.name(ours.dtype), "shape")
    stats = tolerance.compare_arrays(ours, theirs, *tol)
    return Row(path, kind, call, shape, tshape, dtypes.name(ours.dtype), "ok" if stats.passed else "FAIL", stats)


def _run_engine(net: Network, named: Mapping[str, Any], trace_error: str | None) -> dict:
    """Build an engine whose outputs include every module output, and run it."""
    if trace_error is not None:
        raise NetdefError("backend='engine' needs a network that traces completely:\n" + trace_error)
    from netdef.build import build
    from netdef.runtime import Engine

    marked = set(net.outputs)
    for calls in net.module_outputs.values():
        for call in calls:
            for tname in call:
                layer = net.producer(tname)
                if tname not in marked and layer is not None:
                    net.network.mark_output(next(layer.get_output(i) for i in range(layer.num_outputs)
                                                 if layer.get_output(i).name == tname))
                    marked.add(tname)
    engine = Engine(build(net, progress=False))
    return engine.run(**named)
