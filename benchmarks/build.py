"""Weights file -> serialized engine: netdef against the ONNX route, side by side in one run.

Each measurement is a FRESH subprocess (interpreter start, imports, weights load,
export/trace, build, plan written), timed by wall clock; its peak RSS is the
child's ru_maxrss from wait4. Reported values are medians over --repeats runs.

Routes, with the same backend and builder settings (strongly typed network,
default builder config, one static input shape):
  netdef        netdef.weights.load(safetensors) -> netdef model -> netdef.build; must not import torch
  onnx-default  torch model + safetensors -> torch.onnx.export (default exporter) -> OnnxParser -> build
  onnx-legacy   same, with torch.onnx.export(..., dynamo=False) (TorchScript exporter)
For float16 the ONNX route exports a .half() model: a strongly typed network takes
its precision from the ONNX graph, and TensorRT has no FP16 flag for it. netdef
builds with dtype="float16" (float32 I/O cast at the boundary, float16 inside).

TensorRT's own account of each engine (weights/activation memory) is parsed from the
builder's log, which the children print in full. Latency/throughput against torch
eager and torch.compile is measured only on a GPU the backend supports.

Run: python benchmarks/build.py [--models lenet resnet50] [--dtypes float32 float16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from _machine import cpu_model
from _onnx import build_plan

ROUTES = ("netdef", "onnx-default", "onnx-legacy")
SHAPES = {"lenet": (1, 1, 28, 28), "resnet50": (1, 3, 224, 224)}
MEMORY_LINES = {  # builder log line -> metric
    "weights": re.compile(r"Total Weights Memory: (\d+) bytes"),
    "activations": re.compile(r"Total Activation Memory: (\d+) bytes"),
    "device_persistent": re.compile(r"Total Device Persistent Memory: (\d+) bytes"),
}


# ---- children ------------------------------------------------------------------------------------
def _torch_model(model: str) -> Any:
    if model == "lenet":
        from netdef.models.originals import LeNet5

        return LeNet5()
    import torchvision

    return torchvision.models.resnet50(weights=None)


def child_netdef(model: str, dtype: str, weights: str, out: str) -> dict:
    t0 = time.perf_counter()
    import netdef

    if model == "lenet":
        from netdef.models.lenet import LeNet5 as ctor
    else:
        from netdef.models.resnet import resnet50 as ctor
    net = ctor()
    net.load_state_dict(netdef.weights.load(weights))
    t1 = time.perf_counter()
    plan = netdef.build(net, netdef.Input("x", SHAPES[model]), dtype=dtype, progress=False)
    t2 = time.perf_counter()
    with open(out, "wb") as f:
        f.write(plan)
    assert "torch" not in sys.modules, "the netdef route imported torch"
    return {"load_s": t1 - t0, "build_s": t2 - t1, "plan_bytes": len(plan)}


def child_onnx(model: str, dtype: str, weights: str, out: str, dynamo: bool | None) -> dict:

    t0 = time.perf_counter()
    import torch
    from safetensors.torch import load_file

    tm = _torch_model(model)
    tm.load_state_dict(load_file(weights))
    tm.eval()
    x = torch.randn(SHAPES[model], generator=torch.Generator().manual_seed(0))
    if dtype == "float16":
        tm, x = tm.half(), x.half()
    onnx_path = out + ".onnx"
    kwargs = {} if dynamo is None else {"dynamo": dynamo}
    t1 = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(tm, (x,), onnx_path, input_names=["x"], output_names=["output"], **kwargs)
    t2 = time.perf_counter()
    plan_bytes = build_plan(onnx_path, out, quiet_info=False)
    t3 = time.perf_counter()
    return {"load_s": t1 - t0, "export_s": t2 - t1, "parse_build_s": t3 - t2, "plan_bytes": plan_bytes}


def child_main(argv: list[str]) -> int:
    route, model, dtype, weights, out = argv
    if route == "netdef":
        result = child_netdef(model, dtype, weights, out)
    else:
        result = child_onnx(model, dtype, weights, out, None if route == "onnx-default" else False)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---- parent ----------------------------------------------------------------------------------------
def make_weights(model: str, path: str) -> None:
    """A seeded random state_dict (random BatchNorm statistics too) as safetensors.

    Runs in its own process: a child's ru_maxrss includes the RSS of the process that
    spawned it (exec keeps the old high-water mark), so the parent must stay small.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tm = _torch_model(model).eval()
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, path)


def run_child(route: str, model: str, dtype: str, weights: str, out: str) -> dict:
    """One fresh interpreter; wall time around it, peak RSS from wait4 (so Popen must not reap it)."""
    env = dict(os.environ, NETDEF_VERBOSE="1", NETDEF_BENCH_BACKEND=_backend_name())
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", route, model, dtype,
                                 weights, out], stdout=out_f, stderr=err_f, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{route} {model} {dtype} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    result["wall_s"] = wall
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # less sensitive than wall time to a busy machine
    result["rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    for key, rx in MEMORY_LINES.items():
        found = rx.findall(stdout)
        result[key] = int(found[-1]) if found else None
    return result


def _backend_name() -> str:
    from netdef import backend

    return backend.name()


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "not reported"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def gpu_section(models: list[str], dtypes: list[str], plans: dict) -> list[str]:
    """Latency/throughput of the netdef engine vs torch eager and torch.compile, on a supported GPU."""
    from netdef.runtime import Engine, check_device, cuda_device
    from netdef.errors import EngineError

    try:
        device = cuda_device()
        check_device(device, {}, "benchmark")
    except EngineError as exc:
        return ["", f"Latency/throughput: not measured: no supported GPU ({str(exc).split('. ')[0]})."]
    import torch

    lines = ["", f"Latency (median ms, batch 1) on {device}:", "",
             "| model | dtype | netdef engine | torch eager | torch.compile |", "|---|---|---|---|---|"]
    for model in models:
        for dtype in dtypes:
            x = torch.randn(SHAPES[model], device="cuda")
            tm = _torch_model(model).eval().cuda()
            if dtype == "float16":
                tm = tm.half()
            xt = x.half() if dtype == "float16" else x
            engine = Engine.load(plans[(model, dtype)])
            times = [_time_cuda(lambda: engine(x)),
                     _time_cuda(lambda: tm(xt)),
                     _time_cuda(lambda f=torch.compile(tm): f(xt))]
            lines.append(f"| {model} | {dtype} | " + " | ".join(f"{t:.3f}" for t in times) + " |")
    return lines


def _time_cuda(fn: Any, warmup: int = 10, iters: int = 100) -> float:
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    p.add_argument("--json", help="also write every run's numbers here")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="netdef-bench-")
    all_runs: dict[str, list[dict]] = {}
    plans: dict[tuple, str] = {}
    lines = [f"Machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} {platform.release()}; "
             f"Python {platform.python_version()}; backend {_backend_name()} {_backend_version()}; "
             f"torch {_torch_version()}, onnxscript {_version('onnxscript')}. "
             f"Date: {datetime.date.today().isoformat()}; load average at start {os.getloadavg()[0]:.1f}. "
             f"Medians of {args.repeats} fresh-subprocess runs.", "",
             "| model | dtype | route | wall s | CPU s | export s | parse+build s (netdef: trace+build) | peak RSS MiB "
             "| plan | weights mem | activation mem |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ratio_lines = ["", "Ratios (netdef / ONNX route; targets: wall <= 0.5x legacy and <= 0.15x default, "
                   "RSS <= 0.5x, engine metrics <= 1x):", "",
                   "| model | dtype | vs | wall | CPU | peak RSS | plan | weights mem | activation mem |",
                   "|---|---|---|---|---|---|---|---|---|"]
    for model in args.models:
        weights = os.path.join(work, f"{model}.safetensors")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--make-weights", model, weights], check=True)
        for dtype in args.dtypes:
            med: dict[str, dict] = {}
            for route in args.routes:
                runs = []
                for i in range(args.repeats):
                    out = os.path.join(work, f"{model}-{dtype}-{route}-{i}.engine")
                    runs.append(run_child(route, model, dtype, weights, out))
                    print(f"  {model} {dtype} {route} run {i + 1}: {runs[-1]['wall_s']:.2f} s, "
                          f"{runs[-1]['rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
                    if route == "netdef":
                        plans[(model, dtype)] = out
                all_runs[f"{model}/{dtype}/{route}"] = runs
                m = {k: median(runs, k) for k in ("wall_s", "cpu_s", "export_s", "parse_build_s", "build_s", "rss_mib",
                                                 "plan_bytes", *MEMORY_LINES)}
                med[route] = m
                inner = m["build_s"] if route == "netdef" else m["parse_build_s"]
                lines.append(f"| {model} | {dtype} | {route} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
                             f"{_num(m['export_s'])} | {inner:.2f} | "
                             f"{m['rss_mib']:.0f} | {fmt_bytes(m['plan_bytes'])} | {fmt_bytes(m['weights'])} | "
                             f"{fmt_bytes(m['activations'])} |")
            if "netdef" in med:
                for route in (r for r in args.routes if r != "netdef"):
                    a, b = med["netdef"], med[route]
                    cells = [_ratio(a[k], b[k]) for k in ("wall_s", "cpu_s", "rss_mib", "plan_bytes", "weights",
                                                                   "activations")]
                    ratio_lines.append(f"| {model} | {dtype} | {route} | " + " | ".join(cells) + " |")
    lines.insert(1, f"Parent process peak RSS before the last child: {_self_rss():.0f} MiB (a floor under "
                    "every child's figure; see make_weights).")
    lines += ratio_lines + gpu_section(args.models, args.dtypes, plans)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_runs, f, indent=1)
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "not reported" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _self_rss() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _backend_version() -> str:
    from netdef import backend

    return backend.version()


def _torch_version() -> str:
    return _version("torch")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(child_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--make-weights":
        raise SystemExit(make_weights(*sys.argv[2:]))
    raise SystemExit(main())
