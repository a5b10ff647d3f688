"""Hugging Face checkpoint -> serialized engine for GPT-2 and Llama: netdef against the ONNX route.

Each measurement is a FRESH subprocess timed by wall clock, its peak RSS the child's ru_maxrss
from wait4 (as benchmarks/build.py). The checkpoint is a `save_pretrained` directory
(config.json + model.safetensors) of a transformers model with random weights, written once.

  netdef        netdef.weights.load(model.safetensors) -> netdef.models.{gpt2,llama} port -> netdef.build
  onnx-default  transformers from_pretrained -> torch.onnx.export (default exporter) -> OnnxParser -> build
  onnx-legacy   the same with torch.onnx.export(..., dynamo=False)

Both routes build the plain forward pass (input_ids (1, SEQ) -> logits) with the same backend and
default builder config; the ONNX route exports a .half() model for float16 (a strongly typed network
takes its precision from the graph). netdef uses its default emissions (the backend's attention and
rotary layers); the ONNX exporters decompose attention into primitive operators.

Run: python benchmarks/llm_build.py [--models gpt2 llama] [--dtypes float16] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from _machine import describe
from _onnx import build_plan

SEQ = 64
CONFIGS = {  # a few hundred MB of float32 weights, so weights handling shows next to the fixed costs
    "gpt2": {"vocab_size": 32000, "n_positions": 1024, "n_embd": 768, "n_layer": 6, "n_head": 12,
             "bos_token_id": 0, "eos_token_id": 0},
    "llama": {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 6,
              "num_attention_heads": 12, "num_key_value_heads": 4, "max_position_embeddings": 1024},
}
ROUTES = ("netdef", "onnx-legacy", "onnx-default")


def child_netdef(model: str, dtype: str, path: str, out: str) -> dict:
    t0 = time.perf_counter()
    import netdef
    from netdef.models import gpt2, llama

    cls = gpt2.GPT2LMHeadModel if model == "gpt2" else llama.LlamaForCausalLM
    port = cls.from_pretrained(path)
    t1 = time.perf_counter()
    plan = netdef.build(port, netdef.Input("input_ids", (1, SEQ), "int64"), dtype=dtype, progress=False)
    t2 = time.perf_counter()
    with open(out, "wb") as f:
        f.write(plan)
    assert "torch" not in sys.modules, "the netdef route imported torch"
    return {"load_s": t1 - t0, "build_s": t2 - t1, "plan_bytes": len(plan)}


def child_onnx(model: str, dtype: str, path: str, out: str, dynamo: bool) -> dict:

    t0 = time.perf_counter()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    cls = transformers.GPT2LMHeadModel if model == "gpt2" else transformers.LlamaForCausalLM
    hf = cls.from_pretrained(path).eval()
    hf.config.use_cache = False

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf

        def forward(self, input_ids: Any) -> Any:
            return self.model(input_ids, use_cache=False).logits

    wrapped = Logits().eval()
    if dtype == "float16":
        wrapped = wrapped.half()
    ids = torch.randint(0, 100, (1, SEQ), generator=torch.Generator().manual_seed(0))
    onnx_path = out + ".onnx"
    t1 = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(wrapped, (ids,), onnx_path, input_names=["input_ids"], output_names=["logits"],
                          dynamo=dynamo)
    t2 = time.perf_counter()
    plan_bytes = build_plan(onnx_path, out, quiet_info=True)
    t3 = time.perf_counter()
    return {"load_s": t1 - t0, "export_s": t2 - t1, "build_s": t3 - t2, "plan_bytes": plan_bytes}


def make_checkpoint(model: str, path: str) -> None:
    """A random-weight transformers model saved as Hugging Face saves one (own process: see build.py)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config_cls = transformers.GPT2Config if model == "gpt2" else transformers.LlamaConfig
    cls = transformers.GPT2LMHeadModel if model == "gpt2" else transformers.LlamaForCausalLM
    cls(config_cls(**CONFIGS[model])).save_pretrained(path)


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "NETDEF_BENCH_BACKEND": _backend_module(), "OMP_NUM_THREADS": "2"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"child {args} failed:\n{output[-3000:]}")
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    result.update(wall_s=wall, rss_mib=usage.ru_maxrss / 1024, cpu_s=usage.ru_utime + usage.ru_stime)
    return result


def _backend_module() -> str:
    from netdef import backend

    return backend.trt().__name__.split(".")[0].replace("_bindings", "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        route, model, dtype, path, out = argv[1:]
        if route == "make":
            make_checkpoint(model, path)
            result = {}
        elif route == "netdef":
            result = child_netdef(model, dtype, path, out)
        else:
            result = child_onnx(model, dtype, path, out, dynamo=route == "onnx-default")
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--dtypes", nargs="+", default=["float16"], choices=["float32", "float16"])
    p.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    print(f"Machine: {describe()}; medians of {args.repeats} fresh-subprocess run(s); sequence {SEQ}, batch 1.")
    rows = ["| model | dtype | route | wall s | CPU s | export s | parse+build s (netdef: trace+build) | peak RSS MiB "
            "| plan MiB |", "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            ckpt = os.path.join(tmp, model)
            run_child(["make", model, "-", ckpt, "-"])
            for dtype in args.dtypes:
                for route in args.routes:
                    try:
                        runs = [run_child([route, model, dtype, ckpt, os.path.join(tmp, f"{model}.{route}.plan")])
                                for _ in range(args.repeats)]
                    except RuntimeError as exc:  # an exporter that cannot export the model is a result too
                        last = [ln for ln in str(exc).splitlines() if ln.strip()][-1]
                        rows.append(f"| {model} | {dtype} | {route} | fails: {last[:120]} |||||||")
                        print(rows[-1], flush=True)
                        continue

                    def med(key: str) -> str:
                        vals = [r[key] for r in runs if key in r]
                        return f"{statistics.median(vals):.2f}" if vals else "-"
                    plan = statistics.median(r["plan_bytes"] for r in runs) / 2**20
                    rows.append(f"| {model} | {dtype} | {route} | {med('wall_s')} | {med('cpu_s')} | {med('export_s')} "
                                f"| {med('build_s')} | {med('rss_mib')} | {plan:.1f} |")
                    print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
