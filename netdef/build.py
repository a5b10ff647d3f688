"""build(): Network -> serialized Plan, with TensorRT's errors raised, never swallowed."""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from netdef import __version__, backend, dtypes
from netdef.errors import BuildError
from netdef.fileio import atomic_file
from netdef.fold import fold_batchnorm as fold
from netdef.network import Input, Network
from netdef.plan import Plan
from netdef.trace import trace


def _progress_monitor(stream: Any) -> Any:
    """An IProgressMonitor that draws TensorRT's build phases as nested bars."""
    t = backend.trt()

    class Monitor(t.IProgressMonitor):
        def __init__(self) -> None:
            t.IProgressMonitor.__init__(self)
            self.phases: dict[str, list] = {}
            self.order: list[str] = []

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.phases[phase_name] = [0, max(num_steps, 1), parent_phase]
            self.order.append(phase_name)
            self._draw()

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in self.phases:
                self.phases[phase_name][0] = step + 1
                self._draw()
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            self.phases.pop(phase_name, None)
            self.order.remove(phase_name)
            self._draw()

        def _draw(self) -> None:
            parts = []
            for name in self.order[-3:]:
                done, total, _ = self.phases[name]
                filled = int(20 * done / total)
                parts.append(f"{name[:28]} [{'#' * filled}{'.' * (20 - filled)}] {done}/{total}")
            stream.write("\r\033[K" + " | ".join(parts))
            if not self.order:
                stream.write("\r\033[K")
            stream.flush()

    return Monitor()


def build(model: Network | Any, *inputs: Input, dtype: Any = "float32",
          workspace: int | None = None, optimization_level: int | None = None,
          timing_cache: str | os.PathLike | None = None, progress: bool | None = None,
          fold_batchnorm: bool | None = None, **trace_kwargs: Any) -> Plan:
    """Trace `model` (unless it is already a Network) and build a serialized engine.

    `model` may also be a raw INetworkDefinition created with netdef.backend.builder();
    then `inputs` give the shape ranges of its inputs.

    workspace: bytes for TensorRT's scratch memory pool; optimization_level: 0-5
    (builder effort); timing_cache: a file read before and written after the build
    where the backend supports one; progress: show build phases (default: on a terminal);
    fold_batchnorm: fold eval BatchNorm scale layers into the convolutions before them
    (netdef.fold; default on when build traces the model itself, off for a given network,
    because folding rewrites that network in place).
    """
    t = backend.trt()
    if isinstance(model, Network):
        if inputs:
            raise BuildError("build(network, ...) takes no Inputs: the network already has them")
        net = model
    elif isinstance(model, t.INetworkDefinition):  # written with the raw API
        net = Network.wrap(model, inputs)
    else:
        net = trace(model, *inputs, dtype=dtype, **trace_kwargs)
        fold_batchnorm = True if fold_batchnorm is None else fold_batchnorm
    # identify the weights as loaded and traced, before folding derives new arrays from them
    weights_sha256, weight_bytes = net.weights_digest, net.weight_bytes
    folded = fold(net) if fold_batchnorm else 0
    builder = net.builder
    config = builder.create_builder_config()
    if workspace is not None:
        config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, int(workspace))
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    if any(i.is_dynamic for i in net.inputs):
        profile = builder.create_optimization_profile()
        for i in net.inputs:
            profile.set_shape(i.name, i.min_shape, i.opt_shape, i.max_shape)
        config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        blob = b""
        if os.path.exists(timing_cache):
            with open(timing_cache, "rb") as f:
                blob = f.read()
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        config.progress_monitor = _progress_monitor(sys.stderr)
    backend.logger().take_errors()
    start = time.perf_counter()
    serialized = builder.build_serialized_network(net.network, config)
    seconds = time.perf_counter() - start
    errors = backend.logger().take_errors()
    if serialized is None or errors:
        raise BuildError(f"TensorRT could not build network {net.name!r} ({backend.name()} "
                         f"{backend.version()}):\n  " + "\n  ".join(errors or ["no engine was returned"]))
    # one copy out of TensorRT's buffer, which is freed before Plan (a bytes subclass) copies it
    # again: Plan(serialized) would hold three copies of the engine at once
    data, serialized = bytes(serialized), None
    if cache is not None:
        with atomic_file(timing_cache) as f:
            f.write(memoryview(config.get_timing_cache().serialize()))
    meta = {
        "netdef_version": __version__,
        "backend": backend.name(),
        "backend_version": backend.version(),
        "network": net.name,
        "dtype": net.dtype,
        "dtype_overrides": dict(net.dtype_overrides),
        "quantization": _quantization_spec(net),
        "inputs": [i.to_json() for i in net.inputs],
        "outputs": [_output_spec(net.network, name) for name in net.outputs],
        "weights_sha256": weights_sha256,
        "weight_bytes": weight_bytes,
        "layers": net.network.num_layers,
        "folded_batchnorms": folded,
        "build_seconds": round(seconds, 3),
    }
    if backend.is_rtx() and config.num_compute_capabilities:
        meta["compute_capabilities"] = [config.get_compute_capability(i).name
                                        for i in range(config.num_compute_capabilities)]
    return Plan(data, meta)


def _quantization_spec(net: Network) -> dict | None:
    """The Q/DQ type and the quantized module paths, so a sidecar says which layers run in 8 bits."""
    config = net.quantization
    return None if config is None else {"dtype": config.dtype, "modules": sorted(config.scales)}


def _output_spec(network: Any, name: str) -> dict:
    """Name, dtype and shape (-1 = dynamic) of an output, so a plan can be described without a GPU."""
    for i in range(network.num_outputs):
        out = network.get_output(i)
        if out.name == name:
            return {"name": name, "dtype": dtypes.name(out.dtype), "shape": list(out.shape)}
    raise BuildError(f"network has no output named {name!r}")
