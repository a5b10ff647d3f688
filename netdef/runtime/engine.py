"""Engine: check a plan fits this machine, deserialize it, and run it on torch or numpy data."""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import numpy as np

from netdef import backend
from netdef.errors import EngineError
from netdef.plan import Plan, load_plan
from netdef.runtime import cache as runtime_cache
from netdef.runtime.checks import check_metadata, check_plan_bytes, explain_validity, runtime
from netdef.runtime.context import Context, logged_errors, shape_of
from netdef.runtime.device import Device, check_device, cuda_device
from netdef.runtime.specs import (InputError, TensorSpec, check_input_dtype, check_input_shapes,
                                  specs_from_metadata)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class Engine:
    """A deserialized TensorRT engine, callable like a module.

    `engine(x)` / `engine(**named)` returns the output itself when the engine has
    one output, else a dict name -> output (`engine.run` always returns the dict).
    torch CUDA tensors are bound zero-copy and results are torch CUDA tensors;
    numpy arrays in give numpy arrays out. Torch outputs are the engine's
    reused buffers for that input shape: `.clone()` one to keep it past the next call.
    `close()` (or a `with` block) writes TensorRT-RTX's runtime cache and frees the engine.
    """

    def __init__(self, plan: Plan | bytes, *, path: str | None = None, cuda_graph: bool = False,
                 deserialize: bool = True) -> None:
        if not isinstance(plan, (bytes, bytearray, memoryview)) or len(plan) == 0:
            raise EngineError(f"Engine() takes a non-empty netdef Plan or bytes, got {type(plan).__name__}")
        self.plan = plan if isinstance(plan, Plan) else Plan(bytes(plan))
        self.path = path
        self.where = repr(path) if path else f"<{self.plan.metadata.get('network', 'plan')}: {len(plan)} bytes>"
        self.cuda_graph = bool(cuda_graph)
        self.inputs, self.outputs = specs_from_metadata(self.plan.metadata)
        # without a sidecar the inputs are unknown until TensorRT reads the plan
        self._specs_known = bool(self.plan.metadata.get("inputs"))
        self.device: Device | None = None
        self.trt_engine: Any = None
        self.runtime_cache: runtime_cache.RuntimeCache | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer: weakref.finalize | None = None
        check_metadata(self.plan.metadata, self.where, self.plan)
        self._diagnostics = check_plan_bytes(self.plan, self.where)
        if deserialize:
            self.deserialize()

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> "Engine":
        """Load a saved plan; `deserialize=False` gives inputs/outputs from the sidecar without a GPU."""
        path = os.fspath(path)
        return cls(load_plan(path), path=path, **kwargs)

    @property
    def runtime_cache_path(self) -> str | None:
        return self.path + runtime_cache.SUFFIX if self.path and backend.capabilities().runtime_cache else None

    def deserialize(self) -> None:
        """Check the GPU, then deserialize (once, whichever thread gets here first); every failure
        is an EngineError naming the plan."""
        if self.trt_engine is not None:
            return
        with self._lock:
            if self._closed:
                raise EngineError(f"engine {self.where} was closed")
            if self.trt_engine is None:
                self._deserialize()

    def _deserialize(self) -> None:
        device = cuda_device()
        check_device(device, self.plan.metadata, self.where)
        problems = explain_validity(self._diagnostics)
        if problems:
            raise EngineError(f"engine {self.where} cannot run on {device}: " + "; ".join(problems))
        if device.via == "torch":
            import torch

            torch.cuda.set_device(device.index)  # TensorRT uses the current (primary) context
        with backend.capture() as sink:
            engine = runtime().deserialize_cuda_engine(self.plan)  # a bytes subclass: no copy
        if engine is None:
            raise EngineError(f"engine {self.where} could not be deserialized by {backend.name()} "
                              f"{backend.version()} (corrupted, or built for another version or GPU):\n  "
                              + logged_errors(sink))
        inputs, outputs = self._specs_from_engine(engine)
        if self.cuda_graph and any(s.is_dynamic for s in inputs):
            dyn = [s.name for s in inputs if s.is_dynamic]
            raise EngineError(f"engine {self.where}: cuda_graph=True needs static shapes, but inputs "
                              f"{dyn} are dynamic; rebuild with static shapes or load with cuda_graph=False")
        caps = backend.capabilities()
        if self.cuda_graph and not caps.builtin_cuda_graphs and device.via != "torch":
            raise EngineError("cuda_graph=True with classic TensorRT captures through torch.cuda.CUDAGraph: "
                              "install a CUDA build of torch, or load with cuda_graph=False")
        if caps.runtime_cache:
            self.runtime_cache = runtime_cache.RuntimeCache(engine, self.runtime_cache_path)
            self._finalizer = weakref.finalize(self, self.runtime_cache.save_quietly)  # on GC and at exit
        self.inputs, self.outputs, self._specs_known = inputs, outputs, True
        self.device, self.trt_engine = device, engine

    @staticmethod
    def _specs_from_engine(eng: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
        from netdef import dtypes

        t = backend.trt()
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            dtype = dtypes.name(eng.get_tensor_dtype(name))
            shape = tuple(eng.get_tensor_shape(name))
            if eng.get_tensor_mode(name) == t.TensorIOMode.INPUT:
                lo, opt, hi = (tuple(s) for s in eng.get_tensor_profile_shape(name, 0)) if -1 in shape \
                    else (shape, shape, shape)
                inputs.append(TensorSpec(name, dtype, shape, lo, opt, hi))
            else:
                outputs.append(TensorSpec(name, dtype, shape))
        return inputs, outputs

    def save_runtime_cache(self) -> bool:
        """Write TensorRT-RTX's kernel cache beside the engine now (it is also written every
        `netdef.runtime.cache.SAVE_EVERY` new input shapes, on close() and at exit). True if written."""
        return self.runtime_cache.save() if self.runtime_cache is not None else False

    def close(self) -> None:
        """Write the runtime cache and release the engine and its contexts; later calls raise."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # writes the runtime cache (a failed write warns), once
            self._closed = True
            self._local = threading.local()
            self.runtime_cache = self.trt_engine = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- execution ----
    def _context(self) -> Context:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = Context(self)
        return ctx

    def run(self, *args: Any, **named: Any) -> dict[str, Any]:
        """Run the engine; returns dict output name -> output (numpy for numpy inputs)."""
        if self._closed:
            raise EngineError(f"engine {self.where} was closed")
        if not self._specs_known:  # a plan without a sidecar: TensorRT says what its inputs are
            self.deserialize()
        if args and named:
            raise InputError("pass inputs either positionally or by name, not both")
        if args:
            if len(args) != len(self.inputs):
                raise InputError(f"engine takes {len(self.inputs)} inputs {[s.name for s in self.inputs]}, "
                                 f"got {len(args)} positional")
            named = {s.name: a for s, a in zip(self.inputs, args)}
        for name, v in named.items():
            if not (isinstance(v, np.ndarray) or _is_torch(v)):
                raise InputError(f"input {name!r} must be a torch tensor or numpy array, got {type(v).__name__}")
        check_input_shapes(self.inputs, {k: shape_of(v) for k, v in named.items()})
        for spec in self.inputs:
            check_input_dtype(spec, named[spec.name].dtype)
        self.deserialize()
        as_numpy = not any(_is_torch(v) for v in named.values())
        ctx = self._context()
        feeds = {s.name: ctx.mem.to_device(named[s.name]) for s in self.inputs}
        outputs = ctx.run(feeds)
        if as_numpy:
            return {k: ctx.mem.to_host(v) for k, v in outputs.items()}
        return dict(outputs)

    def __call__(self, *args: Any, **named: Any) -> Any:
        out = self.run(*args, **named)
        return next(iter(out.values())) if len(out) == 1 else out

    def __repr__(self) -> str:
        ins = "; ".join(str(s) for s in self.inputs)
        outs = "; ".join(str(s) for s in self.outputs)
        state = "closed" if self._closed else f"on {self.device}" if self.device else "not deserialized"
        return f"Engine({self.where}, inputs=[{ins}], outputs=[{outs}], {state})"
