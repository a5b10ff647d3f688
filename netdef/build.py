"""build(): Network -> serialized Plan, with TensorRT's errors raised, never swallowed."""
from __future__ import annotations

import math
import os
import re
import sys
import time
from typing import Any

import numpy as np

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


def prepare(model: Any, *inputs: Input, dtype: Any = "float32", fold_batchnorm: bool = True,
            **trace_kwargs: Any) -> Network:
    """The network `build` hands TensorRT for `model`: traced, then BatchNorm folded.

    compare() runs this same network in its precision stage, so what is compared is what is built.
    """
    net = trace(model, *inputs, dtype=dtype, **trace_kwargs)
    _identify_and_fold(net, fold_batchnorm)
    return net


def _identify_and_fold(net: Network, fold_batchnorm: bool) -> None:
    """Record the weights as loaded and traced, before folding derives new arrays from them; fold."""
    net.weights_sha256, net.traced_weight_bytes = net.weights_digest, net.weight_bytes
    with backend.capture():  # folding's own TensorRT errors, not ones logged earlier in this thread
        net.folded_batchnorms = fold(net) if fold_batchnorm else 0


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*([-+]?[0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([KMGT]?)(I?B)?\s*", re.I)


def memory_size(value: int | str) -> int:
    """Bytes from an int or a string such as '4G', '512M', '1.5GiB', '4096'.

    Units are binary, as in trtexec's --memPoolSize and TensorRT's own pool sizes: K, M, G, T
    with an optional 'B' or 'iB' (4G = 4GB = 4GiB = 4 * 2**30). Negative sizes are refused.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = int(value)
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        exact = float(m.group(1)) * _UNITS[m.group(2).upper()]
        if not math.isfinite(exact):
            raise BuildError(f"memory size {value!r} is too large")
        if not m.group(2) and not exact.is_integer():
            raise BuildError(f"memory size {value!r}: a byte count is a whole number (or give a unit: 1.5G)")
        size = int(exact)
    else:
        raise BuildError(f"memory size {value!r}: expected bytes or a number with a unit, e.g. 4G, 512M, 1.5GiB")
    if size < 0:
        raise BuildError(f"memory size {value!r} is negative")
    return size


def build(model: Network | Any, *inputs: Input, dtype: Any = "float32",
          workspace: int | str | None = None, optimization_level: int | None = None,
          timing_cache: str | os.PathLike | None = None, progress: bool | None = None,
          fold_batchnorm: bool | None = None, tf32: bool = True, **trace_kwargs: Any) -> Plan:
    """Trace `model` (unless it is already a Network) and build a serialized engine.

    `model` may also be a raw INetworkDefinition created with netdef.backend.builder();
    then `inputs` give the shape ranges of its inputs.

    workspace: TensorRT's scratch memory pool limit, bytes or a size such as "4G" (memory_size);
    optimization_level: 0-5
    (builder effort); timing_cache: a file read before and written after the build
    where the backend supports one; progress: show build phases (default: on a terminal);
    fold_batchnorm: fold eval BatchNorm scale layers into the convolutions before them
    (netdef.fold; default on when build traces the model itself, off for a given network,
    because folding rewrites that network in place); tf32: let TensorRT compute float32
    convolutions and matrix multiplies in TF32 (its default; `compare` models it).
    """
    t = backend.trt()
    workspace = None if workspace is None else memory_size(workspace)
    if isinstance(model, Network):
        if inputs:
            raise BuildError("build(network, ...) takes no Inputs: the network already has them")
        net = model
    elif isinstance(model, t.INetworkDefinition):  # written with the raw API
        net = Network.wrap(model, inputs)
    else:
        net = prepare(model, *inputs, dtype=dtype, fold_batchnorm=fold_batchnorm is not False, **trace_kwargs)
    if net.weights_sha256 is None:
        _identify_and_fold(net, bool(fold_batchnorm))
    builder = net.builder
    with backend.BUILDER_LOCK:  # an IBuilder is used by one thread at a time
        config = builder.create_builder_config()
    if not tf32:
        config.clear_flag(t.BuilderFlag.TF32)
    if workspace is not None:
        config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, workspace)
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    if any(i.is_dynamic for i in net.inputs):
        with backend.BUILDER_LOCK:
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
    with backend.building() as sink:  # this build's errors, not another thread's
        start = time.perf_counter()
        serialized = builder.build_serialized_network(net.network, config)
        seconds = time.perf_counter() - start
    errors = sink.take()
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
        "weights_sha256": net.weights_sha256,
        "weight_bytes": net.traced_weight_bytes,
        "layers": net.network.num_layers,
        "folded_batchnorms": net.folded_batchnorms,
        "tf32": bool(config.get_flag(t.BuilderFlag.TF32)),
        "build_seconds": round(seconds, 3),
    }
    if backend.capabilities().compute_capabilities:
        if config.num_compute_capabilities:
            meta["compute_capabilities"] = [config.get_compute_capability(i).name
                                            for i in range(config.num_compute_capabilities)]
    elif (gpu := _building_gpu()) is not None:
        meta["gpu"] = gpu  # classic plans run only on the building GPU's architecture
    return Plan(data, meta)


def _building_gpu() -> dict | None:
    """The GPU a classic TensorRT build ran on, for netdef.runtime.check_device."""
    from netdef.errors import EngineError
    from netdef.runtime.device import cuda_device

    try:
        device = cuda_device()
    except EngineError:
        return None
    return {"name": device.name, "compute_capability": f"{device.capability[0]}.{device.capability[1]}"}


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
