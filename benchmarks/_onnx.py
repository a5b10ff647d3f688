"""The ONNX route the benchmarks measure netdef against: an exported .onnx -> NVIDIA's OnnxParser -> plan.

One copy for every benchmark (netdef itself never parses). It uses its own logger and builder, so
the child process that runs it measures the route alone.
"""
from __future__ import annotations

import importlib
import os
from typing import Any


def build_plan(onnx_path: str, out: str, quiet_info: bool = True) -> int:
    """Parse `onnx_path` into a strongly typed network, build it with the default config, write the
    plan to `out`; returns the plan's size in bytes. The backend module is NETDEF_BENCH_BACKEND."""
    t = importlib.import_module(os.environ["NETDEF_BENCH_BACKEND"])

    class Logger(t.ILogger):
        def __init__(self) -> None:
            t.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if not quiet_info or severity <= t.ILogger.Severity.WARNING:
                print(f"[TensorRT {severity.name}] {msg}")

    logger = Logger()
    builder = t.Builder(logger)
    network = builder.create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = t.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise RuntimeError("OnnxParser: " + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    if plan is None:
        raise RuntimeError("TensorRT returned no engine for the ONNX network")
    with open(out, "wb") as f:
        f.write(plan)
    return plan.nbytes
