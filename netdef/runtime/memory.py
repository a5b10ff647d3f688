"""Device memory for engines: torch's caching allocator, or cudaMalloc through cuda-python where
torch is absent (never pycuda: it makes its own CUDA context, which clashes with the primary
context torch and TensorRT use). Also the output allocator for data-dependent output shapes."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from netdef import arrays, backend, dtypes
from netdef.errors import EngineError
from netdef.runtime.device import Device, cuda_check, cudart
from netdef.runtime.specs import InputError


def nbytes_of(shape: Sequence[int], dtype: str) -> int:
    """Bytes of a dense tensor of `shape` and `dtype` (int64: no overflow for large shapes)."""
    return int(np.prod(shape, dtype=np.int64)) * dtypes.to_numpy(dtype).itemsize


class TorchMemory:
    """Buffers are torch tensors; torch's caching allocator owns the memory."""

    def __init__(self, device: Device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device.index)
        self.stream = torch.cuda.Stream(self.device)  # non-default: never serializes with other work
        self.handle = self.stream.cuda_stream

    def empty(self, shape: Sequence[int], dtype: str) -> Any:
        # allocated on the engine's stream, so torch reuses the memory only after that stream's work
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(tuple(shape), dtype=dtypes.to_torch(dtype), device=self.device)

    def raw(self, nbytes: int) -> Any:
        return self.empty((max(int(nbytes), 1),), "uint8")

    @staticmethod
    def ptr(buf: Any) -> int:
        return buf.data_ptr()

    @staticmethod
    def nbytes(buf: Any) -> int:
        return buf.numel() * buf.element_size()

    def view(self, raw: Any, shape: Sequence[int], dtype: str) -> Any:
        """The first bytes of a raw buffer as a tensor of `shape` and `dtype` (no copy)."""
        return raw[:nbytes_of(shape, dtype)].view(dtypes.to_torch(dtype)).reshape(tuple(shape))

    def to_device(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            x = arrays.numpy_to_torch(x)  # bfloat16/float8 bits kept; 0-d stays 0-d
        if x.device != self.device:
            x = x.to(self.device)
        return x.contiguous()

    @staticmethod
    def to_host(buf: Any) -> np.ndarray:
        return arrays.to_numpy(buf)  # bfloat16/float8 as ml_dtypes arrays

    def copy(self, dst: Any, src: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            dst.copy_(src)

    def begin(self, inputs: Sequence[Any]) -> None:
        """The engine's stream waits for the caller's, which produced the inputs."""
        self.stream.wait_stream(self.torch.cuda.current_stream(self.device))
        for x in inputs:
            x.record_stream(self.stream)  # not freed for reuse while the engine still reads it

    def end(self) -> None:
        self.torch.cuda.current_stream(self.device).wait_stream(self.stream)


class CudartMemory:
    """Raw cudaMalloc buffers for numpy callers when torch is not installed."""

    class Buffer:
        def __init__(self, ptr: int, shape: tuple[int, ...], dtype: str, nbytes: int, owner: Any = None) -> None:
            self.ptr, self.shape, self.dtype, self.nbytes = ptr, shape, dtype, nbytes
            self.owner = owner  # a view keeps the buffer it points into alive, and frees nothing

        def __del__(self) -> None:
            if self.owner is None:
                cudart().cudaFree(self.ptr)

    def __init__(self, device: Device) -> None:
        self.cudart = cudart()
        cuda_check(self.cudart.cudaSetDevice(device.index), "cudaSetDevice")
        self.stream_obj = cuda_check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream_obj)

    def empty(self, shape: Sequence[int], dtype: str) -> "CudartMemory.Buffer":
        nbytes = nbytes_of(shape, dtype)
        ptr = cuda_check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
        return self.Buffer(int(ptr), tuple(shape), dtype, nbytes)

    def raw(self, nbytes: int) -> "CudartMemory.Buffer":
        return self.empty((max(int(nbytes), 1),), "uint8")

    @staticmethod
    def ptr(buf: Any) -> int:
        return buf.ptr

    @staticmethod
    def nbytes(buf: Any) -> int:
        return buf.nbytes

    def view(self, raw: "CudartMemory.Buffer", shape: Sequence[int], dtype: str) -> "CudartMemory.Buffer":
        return self.Buffer(raw.ptr, tuple(int(d) for d in shape), dtype, nbytes_of(shape, dtype), owner=raw)

    def to_device(self, x: np.ndarray) -> "CudartMemory.Buffer":
        if not isinstance(x, np.ndarray):
            raise InputError(f"without torch the engine takes numpy arrays, got {type(x).__name__}")
        x = np.require(x, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
        buf = self.empty(x.shape, dtypes.name(x.dtype))
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_check(self.cudart.cudaMemcpyAsync(buf.ptr, x.ctypes.data, x.nbytes, kind, self.handle),
                   "cudaMemcpyAsync")
        return buf

    def to_host(self, buf: "CudartMemory.Buffer") -> np.ndarray:
        out = np.empty(buf.shape, dtypes.to_numpy(buf.dtype))
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(self.cudart.cudaMemcpyAsync(out.ctypes.data, buf.ptr, buf.nbytes, kind, self.handle),
                   "cudaMemcpyAsync")
        cuda_check(self.cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")
        return out

    def copy(self, dst: Any, src: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        cuda_check(self.cudart.cudaMemcpyAsync(dst.ptr, src.ptr, dst.nbytes, kind, self.handle),
                   "cudaMemcpyAsync")

    def begin(self, inputs: Sequence[Any]) -> None:
        pass  # inputs were copied on this same stream

    def end(self) -> None:
        pass


def memory(device: Device) -> TorchMemory | CudartMemory:
    return TorchMemory(device) if device.via == "torch" else CudartMemory(device)


# ---- data-dependent output shapes -----------------------------------------------------------------
GROWTH = 2  # a reallocation at least doubles the capacity: a growing output reallocates O(log n) times


class OutputBuffer:
    """One output whose shape depends on the data (NonZero, NMS): TensorRT asks for its memory
    during execution, once it knows the size, then reports its shape. The buffer is kept and
    reused while it is large enough, like the fixed-shape outputs' buffers."""

    def __init__(self, mem: Any, name: str, dtype: str) -> None:
        self.mem, self.name, self.dtype = mem, name, dtype
        self.buffer: Any = None
        self.capacity = 0
        self.shape: tuple[int, ...] | None = None
        self.failure: str | None = None

    def reallocate(self, size: int, alignment: int) -> int | None:
        """A device address with room for `size` bytes (None tells TensorRT the allocation failed;
        TensorRT callbacks must not raise, so the reason is kept in `failure`)."""
        size = max(int(size), 1)
        if self.buffer is None or size > self.capacity:
            capacity = max(size, self.capacity * GROWTH)
            try:
                buffer = self.mem.raw(capacity)
            except Exception as exc:  # noqa: BLE001 - reported after execution, not through TensorRT
                self.failure = f"allocating {capacity:,} bytes for output {self.name!r} failed: {exc}"
                return None
            self.buffer, self.capacity = buffer, self.mem.nbytes(buffer)
        ptr = self.mem.ptr(self.buffer)
        if alignment and ptr % int(alignment):
            self.failure = f"output {self.name!r} needs {alignment}-byte alignment; the allocator gave {ptr:#x}"
            return None
        return ptr

    def begin(self) -> None:
        """Before each execution: this run's shape comes with notify()."""
        self.shape = None

    def notify(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(d) for d in shape)

    def output(self) -> Any:
        """This run's output: a view of the first bytes of the buffer, in the notified shape."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise EngineError(failure)
        if self.shape is None or self.buffer is None:
            raise EngineError(f"TensorRT did not report the shape of data-dependent output {self.name!r}")
        need = nbytes_of(self.shape, self.dtype)
        if need > self.capacity:
            raise EngineError(f"data-dependent output {self.name!r} has shape {self.shape} ({need:,} bytes) "
                              f"but TensorRT asked for {self.capacity:,}")
        return self.mem.view(self.buffer, self.shape, self.dtype)


@functools.lru_cache(maxsize=None)
def _allocator_class(trt: Any) -> type:
    class OutputAllocator(trt.IOutputAllocator):
        """TensorRT's IOutputAllocator over an OutputBuffer."""

        def __init__(self, buffer: OutputBuffer) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffer = buffer

        def reallocate_output(self, tensor_name: str, memory: Any, size: int, alignment: int) -> int | None:
            return self.buffer.reallocate(size, alignment)

        def reallocate_output_async(self, tensor_name: str, memory: Any, size: int, alignment: int,
                                    stream: Any) -> int | None:
            return self.buffer.reallocate(size, alignment)  # allocated on the engine's stream already

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.buffer.notify(shape)

    return OutputAllocator


def output_allocator(buffer: OutputBuffer) -> Any:
    """An IOutputAllocator (of the active backend) that hands TensorRT `buffer`'s memory."""
    return _allocator_class(backend.trt())(buffer)
