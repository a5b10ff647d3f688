"""One thread's execution state for an engine: its IExecutionContext, stream, scratch memory,
output buffers (the most recent OUTPUT_SIGNATURES input-shape signatures' worth), output
allocators for data-dependent shapes, and CUDA graphs."""
from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from netdef import backend
from netdef.errors import EngineError
from netdef.runtime.memory import OutputBuffer, memory, output_allocator
from netdef.runtime.specs import InputError

if TYPE_CHECKING:
    from netdef.runtime.engine import Engine

OUTPUT_SIGNATURES = 4  # input-shape signatures whose output buffers a context keeps (least recent dropped)


def shape_of(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def logged_errors(sink: backend.ErrorSink) -> str:
    """What TensorRT logged as errors while `sink` captured, one per indented line, for a message."""
    return "\n  ".join(sink.take() or ["(TensorRT logged no error)"])


class Context:
    """An IExecutionContext with everything it runs with; used by one thread only."""

    def __init__(self, engine: "Engine") -> None:
        t = backend.trt()
        caps = backend.capabilities()
        self.engine = engine
        self.caps = caps
        self.mem = memory(engine.device)
        strategy = t.ExecutionContextAllocationStrategy.USER_MANAGED  # device memory comes from us
        with backend.capture() as sink:
            if caps.runtime_config:  # TensorRT-RTX: the runtime cache and CUDA graphs live here
                config = engine.trt_engine.create_runtime_config()
                config.set_execution_context_allocation_strategy(strategy)
                if caps.runtime_cache and engine.runtime_cache is not None:
                    engine.runtime_cache.attach(config)
                if caps.builtin_cuda_graphs and engine.cuda_graph:
                    config.cuda_graph_strategy = t.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
                self.config = config  # must outlive the context
                self.ctx = engine.trt_engine.create_execution_context(config)
            else:
                self.ctx = engine.trt_engine.create_execution_context(strategy)
        if self.ctx is None:
            raise EngineError(f"engine {engine.where}: TensorRT could not create an execution context:\n  "
                              + logged_errors(sink))
        self.workspace: Any = None
        self.signature: tuple | None = None
        # input-shape signature -> output name -> buffer; least recently used first
        self.outputs: collections.OrderedDict[tuple, dict[str, Any]] = collections.OrderedDict()
        self.dynamic: dict[str, OutputBuffer] = {}  # data-dependent outputs, across signatures
        self._allocators: list[Any] = []  # TensorRT holds only pointers to them
        self.static_inputs: dict[str, Any] | None = None  # cuda_graph: inputs copied to fixed addresses
        self.graph: Any = None  # classic TensorRT with cuda_graph: a torch.cuda.CUDAGraph

    # ---- shapes, memory and buffers ----
    def _set_shapes(self, signature: tuple) -> dict[str, Any]:
        """Set input shapes, size the scratch memory and bind this signature's output buffers."""
        eng = self.engine
        with backend.capture() as sink:
            for spec, shape in zip(eng.inputs, signature):
                if not self.ctx.set_input_shape(spec.name, shape):
                    raise InputError(f"engine {eng.where}: TensorRT rejected shape {shape} for input "
                                     f"{spec.name!r}:\n  " + logged_errors(sink))
            size = self.ctx.update_device_memory_size_for_shapes()
            if self.workspace is None or self.mem.nbytes(self.workspace) < size:
                self.workspace = self.mem.raw(size)
            if self.caps.set_device_memory:
                self.ctx.set_device_memory(self.mem.ptr(self.workspace), self.mem.nbytes(self.workspace))
            else:  # classic TensorRT 10.0
                self.ctx.device_memory = self.mem.ptr(self.workspace)
            bufs = self.outputs.get(signature)
            if bufs is None:
                bufs = self.outputs[signature] = self._output_buffers()
                while len(self.outputs) > OUTPUT_SIGNATURES:
                    self.outputs.popitem(last=False)
            self.outputs.move_to_end(signature)
            for name, buf in bufs.items():
                self.ctx.set_tensor_address(name, self.mem.ptr(buf))
        self.signature = signature
        return bufs

    def _output_buffers(self) -> dict[str, Any]:
        """Buffers for outputs whose shape the input shapes fix; allocators for the others."""
        eng = self.engine
        bufs = {}
        for spec in eng.outputs:
            shape = tuple(self.ctx.get_tensor_shape(spec.name))
            if all(d >= 0 for d in shape):
                bufs[spec.name] = self.mem.empty(shape, spec.dtype)
            elif spec.name not in self.dynamic:  # data-dependent (NonZero, NMS): sized during execution
                if eng.cuda_graph:
                    raise EngineError(f"engine {eng.where}: output {spec.name!r} has a data-dependent shape "
                                      f"{shape}, which a CUDA graph cannot capture; load with cuda_graph=False")
                self.dynamic[spec.name] = OutputBuffer(self.mem, spec.name, spec.dtype)
                allocator = output_allocator(self.dynamic[spec.name])
                self._allocators.append(allocator)
                if not self.ctx.set_output_allocator(spec.name, allocator):
                    raise EngineError(f"engine {eng.where}: TensorRT refused an output allocator for "
                                      f"data-dependent output {spec.name!r}")
        return bufs

    # ---- execution ----
    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Execute on device-resident `feeds`; returns name -> output in the engine's output order."""
        eng = self.engine
        signature = tuple(shape_of(feeds[s.name]) for s in eng.inputs)
        new = signature not in self.outputs
        if signature != self.signature or new:
            bufs = self._set_shapes(signature)
        else:
            bufs = self.outputs[signature]
        if eng.cuda_graph:
            if self.static_inputs is None:
                self.static_inputs = {s.name: self.mem.empty(signature[i], s.dtype)
                                      for i, s in enumerate(eng.inputs)}
                for name, buf in self.static_inputs.items():
                    self.ctx.set_tensor_address(name, self.mem.ptr(buf))
            self.mem.begin(list(feeds.values()))
            for name, x in feeds.items():
                self.mem.copy(self.static_inputs[name], x)
        else:
            for name, x in feeds.items():
                self.ctx.set_tensor_address(name, self.mem.ptr(x))
            self.mem.begin(list(feeds.values()))
        for out in self.dynamic.values():
            out.begin()
        if self.graph is not None:
            with self.mem.torch.cuda.stream(self.mem.stream):
                self.graph.replay()
        else:
            self._execute()
            if eng.cuda_graph and not self.caps.builtin_cuda_graphs:
                self._capture()
        self.mem.end()
        if new and eng.runtime_cache is not None:
            eng.runtime_cache.note_shape(signature)
        return {s.name: bufs[s.name] if s.name in bufs else self.dynamic[s.name].output() for s in eng.outputs}

    def _execute(self) -> None:
        with backend.capture() as sink:
            ok = self.ctx.execute_async_v3(self.mem.handle)
        failed = [o.failure for o in self.dynamic.values() if o.failure]
        for o in self.dynamic.values():
            o.failure = None
        if not ok or failed:
            raise EngineError(f"engine {self.engine.where}: execution failed:\n  "
                              + "\n  ".join(failed) + ("\n  " if failed else "") + logged_errors(sink))

    def _capture(self) -> None:
        """Classic TensorRT: capture the (already warmed-up) enqueue into a torch CUDA graph."""
        torch = self.mem.torch
        self.mem.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.mem.stream):
            self._execute()
        self.graph = graph
