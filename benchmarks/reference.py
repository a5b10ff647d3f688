"""Reference runner vs torch eager on torchvision ResNet-50 (random weights), CPU.

The TensorRT network comes from NVIDIA's ONNX parser (a stand-in for any network;
netdef itself never parses). Prints a markdown table: compile time, then the median
of several runs of each. Usage: python benchmarks/reference.py [--batch 8] [--runs 5]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

import torch
import torchvision

import netdef
import netdef.reference
from _machine import cpu_model


def parse_onnx(model: torch.nn.Module, x: torch.Tensor, tmp: str):
    t = netdef.backend.trt()
    path = os.path.join(tmp, "resnet50.onnx")
    torch.onnx.export(model, (x,), path, input_names=["x"], opset_version=17, dynamo=False)
    network = netdef.backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = t.OnnxParser(network, netdef.backend.logger().impl)
    if not parser.parse_from_file(path):
        raise SystemExit("ONNX parser failed: " + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    return network, parser


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        network, _parser = parse_onnx(model, x, tmp)
        start = time.perf_counter()
        program = netdef.reference.compile(network)
        compile_s = time.perf_counter() - start

    with torch.inference_mode():
        eager = median_time(lambda: model(x), args.runs)
        expected = model(x)
    ref = median_time(lambda: program({"x": x}), args.runs)
    got = next(iter(program({"x": x}).values()))
    err = (got - expected).abs().max().item()

    print(f"ResNet-50, batch {args.batch}, {args.size}x{args.size}, CPU, median of {args.runs} runs; "
          f"{datetime.date.today()}, nproc {os.cpu_count()}, {cpu_model()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {netdef.backend.name()} {netdef.backend.version()}")
    print()
    print("| what | time | vs eager |")
    print("| --- | ---: | ---: |")
    print(f"| torch eager | {eager * 1e3:.0f} ms | 1.00x |")
    print(f"| reference runner | {ref * 1e3:.0f} ms | {ref / eager:.2f}x |")
    print(f"| reference compile (once) | {compile_s * 1e3:.0f} ms | |")
    print()
    print(f"layers: {network.num_layers}, max |reference - eager| = {err:.2e}")


if __name__ == "__main__":
    main()
