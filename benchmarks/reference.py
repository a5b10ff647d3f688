"""Reference runner vs torch eager on ResNet-50 (random weights), CPU.

Two networks: netdef's own ResNet-50 port, traced (BatchNorm as its own scale layer, as compare
runs it) and as `build` makes it (BatchNorm folded), and the network NVIDIA's ONNX parser makes
from torchvision's model (a stand-in for any network; netdef itself never parses; the export
folds BatchNorm). Prints a markdown table: compile time, then the median of several runs of
each. Usage: python benchmarks/reference.py [--batch 8] [--runs 5]
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
from netdef.build import prepare
from netdef.models.resnet import resnet50


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
    port = resnet50()
    port.load_state_dict(model.state_dict())
    spec = netdef.Input("x", tuple(x.shape))
    networks = {"netdef port, traced (as compare's stage one runs it)": netdef.trace(port, spec),
                "netdef port, BatchNorm folded (as built)": prepare(port, spec)}
    with tempfile.TemporaryDirectory() as tmp:
        parsed, _parser = parse_onnx(model, x, tmp)
        networks["ONNX parser's network"] = parsed
        programs = {}
        for name, net in networks.items():
            start = time.perf_counter()
            programs[name] = (netdef.reference.compile(net), time.perf_counter() - start)

    with torch.inference_mode():
        eager = median_time(lambda: model(x), args.runs)
        expected = model(x)

    print(f"ResNet-50, batch {args.batch}, {args.size}x{args.size}, CPU, median of {args.runs} runs; "
          f"{datetime.date.today()}, nproc {os.cpu_count()}, {cpu_model()}, load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{netdef.backend.name()} {netdef.backend.version()}")
    print()
    print("| network | layers | compile | run | vs eager | max abs error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| torch eager | | | {eager * 1e3:.0f} ms | 1.00x | |")
    for name, (program, compile_s) in programs.items():
        ref = median_time(lambda: program({"x": x}), args.runs)
        got = next(iter(program({"x": x}).values()))
        err = (got - expected).abs().max().item()
        layers = getattr(networks[name], "network", networks[name]).num_layers
        print(f"| {name} | {layers} | {compile_s * 1e3:.0f} ms | {ref * 1e3:.0f} ms | {ref / eager:.2f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
