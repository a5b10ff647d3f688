"""The network being built: an INetworkDefinition plus what netdef knows about it.

`Network` is the "net guard" of TensorRT-LLM: while it is active (a `with` block,
entered by `netdef.trace`), every functional op adds its layers to it. It names
each layer after the module path that produced it, keeps weight arrays alive
until the build ends (TensorRT keeps only pointers), and turns TensorRT's logged
errors into exceptions that name the module and the user's line.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from netdef import backend, dtypes
from netdef.errors import TraceError, user_frame

_ACTIVE: contextvars.ContextVar["Network | None"] = contextvars.ContextVar("netdef_network", default=None)

DimSpec = tuple  # (name | None, min, opt, max)


_INT64_MAX = (1 << 63) - 1


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _parse_dim(d: Any, where: str) -> DimSpec:
    """A static dimension is >= 1: a 0 would make every run of the engine an empty tensor, so it is
    always a typo. 0 keeps its meaning only as the *minimum* of a dynamic range (an input that may
    be empty at run time, such as zero detections); opt and max must still be >= 1."""
    if _is_int(d):
        if d < 1:
            raise ValueError(f"{where}: a static dimension must be >= 1, got {d} (an input that may be empty "
                             f"at run time is a dynamic range with min 0, e.g. (0, 1, 64))")
        return (None, int(d), int(d), int(d))
    if isinstance(d, (tuple, list)):
        dname, rest = (d[0], d[1:]) if d and isinstance(d[0], str) else (None, d)
        if len(rest) == 3 and all(_is_int(v) for v in rest):
            lo, opt, hi = (int(v) for v in rest)
            if not 0 <= lo <= opt <= hi:
                raise ValueError(f"{where}: dynamic dimension {tuple(d)} needs 0 <= min <= opt <= max")
            if opt < 1:
                raise ValueError(f"{where}: dynamic dimension {tuple(d)} needs opt >= 1 (TensorRT tunes "
                                 f"kernels for opt; only min may be 0)")
            return (dname, lo, opt, hi)
    raise ValueError(f"{where}: a dimension is an int, (min, opt, max) or (name, min, opt, max); got {d!r}")


@dataclass(frozen=True)
class Input:
    """A network input: name, shape (ints or dynamic ranges) and dtype."""

    name: str
    shape: tuple
    dtype: str = "float32"
    dims: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", dtypes.name(self.dtype))
        where = f"Input {self.name!r}"
        object.__setattr__(self, "dims", tuple(_parse_dim(d, where) for d in self.shape))
        volume = 1
        for d in self.max_shape:
            volume *= d
        if volume > _INT64_MAX:
            raise ValueError(f"{where}: shape {self.max_shape} has {volume:.3g} elements: the count "
                             "overflows 64 bits")

    @property
    def is_dynamic(self) -> bool:
        return any(lo != hi for _, lo, _, hi in self.dims)

    @property
    def trt_shape(self) -> tuple[int, ...]:
        return tuple(-1 if lo != hi else lo for _, lo, _, hi in self.dims)

    @property
    def min_shape(self) -> tuple[int, ...]:
        return tuple(d[1] for d in self.dims)

    @property
    def opt_shape(self) -> tuple[int, ...]:
        return tuple(d[2] for d in self.dims)

    @property
    def max_shape(self) -> tuple[int, ...]:
        return tuple(d[3] for d in self.dims)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.trt_shape),
                "min": list(self.min_shape), "opt": list(self.opt_shape), "max": list(self.max_shape),
                "dim_names": [d[0] for d in self.dims]}


def shape_mismatch(name: str, shape: Sequence[int], declared: Sequence[int], lo: Sequence[int] | None = None,
                   hi: Sequence[int] | None = None, opt: Sequence[int] | None = None,
                   what: str = "the network") -> str | None:
    """Why a concrete input `shape` does not fit `declared` (-1 = dynamic) and the lo..hi range;
    None if it fits. Shared by the reference runner and the engine runtime."""
    shape, declared = tuple(int(d) for d in shape), tuple(int(d) for d in declared)
    if len(shape) != len(declared):
        return f"input {name!r} has rank {len(shape)} (shape {shape}) but {what} declares rank {len(declared)}: {declared}"
    for d, (got, want) in enumerate(zip(shape, declared)):
        if want >= 0 and got != want:
            return f"input {name!r} dim {d} is {got} but {what} was built for {want}; shape {shape}, declared {declared}"
        if want < 0 and lo is not None and hi is not None and not lo[d] <= got <= hi[d]:
            hint = f" (opt {opt[d]})" if opt is not None else ""
            return (f"input {name!r} dim {d} is {got}, outside the range [{lo[d]}, {hi[d]}]{hint} {what} was "
                    f"built for; rebuild with a wider netdef.Input range")
    return None


def check_shared_dims(inputs: Sequence[Input]) -> None:
    """Inputs that share a named dimension must agree on its range."""
    seen: dict[str, tuple[str, DimSpec]] = {}
    for inp in inputs:
        for d in inp.dims:
            if d[0] is None:
                continue
            if d[0] in seen and seen[d[0]][1][1:] != d[1:]:
                other = seen[d[0]][0]
                raise ValueError(f"dimension {d[0]!r} is {seen[d[0]][1][1:]} in input {other!r} "
                                 f"but {d[1:]} in input {inp.name!r}")
            seen.setdefault(d[0], (inp.name, d))


class Network:
    """An INetworkDefinition under construction, with module-path bookkeeping."""

    def __init__(self, name: str = "network", dtype: str = "float32", network: Any = None) -> None:
        t = backend.trt()
        self.name = name
        self.dtype = dtypes.name(dtype)  # compute dtype for floating-point weights and activations
        # TensorRT's errors from calls made while this network is active (`with net:`) land here,
        # never in another thread's network (netdef.backend routes them per thread and context)
        self.errors = backend.ErrorSink()
        self.builder = backend.builder()
        if network is None:
            with backend.BUILDER_LOCK, backend.capture(self.errors):
                network = self.builder.create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            network.name = name
        self.network = network
        self.inputs: list[Input] = []
        self.outputs: list[str] = [network.get_output(i).name for i in range(network.num_outputs)]
        # module path -> one list of output tensor names per call, in call order
        self.module_outputs: dict[str, list[list[str]]] = {}
        # module path -> one list of input tensor names per call (calibration reads these)
        self.module_inputs: dict[str, list[list[str]]] = {}
        # module path -> output tensor names of calls traced inside a loop body (netdef.functional.scan):
        # they run once per iteration, so they are kept apart from module_outputs' one-call entries
        self.loop_module_outputs: dict[str, list[list[str]]] = {}
        self._loop_depth = 0
        # module path -> names of the layers created directly in it
        self.module_layers: dict[str, list[str]] = {}
        # module path -> dtype override for that subtree
        self.dtype_overrides: dict[str, str] = {}
        self.quantization: Any = None  # a netdef.quantize.QuantConfig, set by trace
        # the model's return value with each output tensor replaced by its output name (set by trace)
        self.output_tree: Any = None
        # tensor name -> the tensor that now carries its value, after an in-place rewrite
        # (BatchNorm folding: the BatchNorm's output is the folded convolution's output)
        self.aliases: dict[str, str] = {}
        # set once by build.prepare (or build): the weights as traced, before folding derives new ones
        self.weights_sha256: str | None = None
        self.traced_weight_bytes = 0
        self.folded_batchnorms = 0
        self.revision = 0  # bumped by in-place edits (netdef.fold), so cached reference programs recompile
        self._keepalive: list[Any] = []
        self._owned: set[int] = set()
        # one kept array per (source memory, dtype), so a weight used N times is stored once:
        # key -> (weakref to the source's memory owner, kept array); id(kept) -> uses
        self._shared: dict[tuple, tuple[Any, np.ndarray, bool]] = {}
        self._uses: dict[int, int] = {}
        self._constants: dict[tuple, Any] = {}  # (id(kept), shape) -> the constant layer's ITensor
        # convolution layer index -> (kernel, bias or None) arrays as given to TensorRT,
        # so build-time BatchNorm folding reads them without copying them back out
        self.conv_arrays: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._scope: list[str] = []
        self._dtype_stack: list[str] = []
        self._used_names: set[str] = set()
        self._producer: dict[str, Any] = {}
        self._entered: list[tuple[contextvars.Token, contextlib.ExitStack]] = []
        # id(cast Tensor) -> (cast Tensor, the override module's own output), see Module.__call__
        self.override_casts: dict[int, tuple[Any, Any]] = {}

    @classmethod
    def wrap(cls, network: Any, inputs: Sequence[Input]) -> "Network":
        """A Network over an INetworkDefinition written with the raw API (created with
        `netdef.backend.builder()`); `inputs` give each input's shape range for the build."""
        net = cls(network.name or "network", network=network)
        declared = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
        for inp in inputs:
            if inp.name not in declared:
                raise TraceError(f"Input {inp.name!r} is not an input of network {network.name!r} "
                                 f"(its inputs: {sorted(declared)})")
            if len(declared[inp.name].shape) != len(inp.shape):
                raise TraceError(f"Input {inp.name!r} has rank {len(inp.shape)} but the network declares "
                                 f"{tuple(declared[inp.name].shape)}")
        check_shared_dims(inputs)
        net.inputs = list(inputs)
        return net

    def add_input(self, inp: Input) -> Any:
        """Declare `inp` as a network input; the ITensor, or a TraceError that says why not."""
        if any(i.name == inp.name for i in self.inputs):
            raise TraceError(f"two inputs are named {inp.name!r}: each netdef.Input needs its own name")
        itensor = self.network.add_input(inp.name, dtypes.to_trt(inp.dtype), inp.trt_shape)
        errors = backend.logger().take_errors()
        if itensor is None or errors:
            raise TraceError(f"TensorRT rejected input {inp.name!r} of shape {inp.max_shape}: "
                             + "; ".join(errors or ["no tensor was returned"]))
        self.inputs.append(inp)
        return itensor

    # ---- activation -------------------------------------------------------
    def __enter__(self) -> "Network":
        sink = contextlib.ExitStack()
        sink.enter_context(backend.capture(self.errors))
        self._entered.append((_ACTIVE.set(self), sink))
        return self

    def __exit__(self, *exc: Any) -> None:
        active, sink = self._entered.pop()
        sink.close()
        _ACTIVE.reset(active)

    # ---- scopes and names --------------------------------------------------
    @property
    def scope(self) -> str:
        """Module path of the module currently being traced ('' at top level)."""
        return self._scope[-1] if self._scope else ""

    @contextlib.contextmanager
    def module_scope(self, path: str) -> Iterator[None]:
        self._scope.append(path)
        try:
            yield
        finally:
            self._scope.pop()

    @contextlib.contextmanager
    def loop_body(self) -> Iterator[None]:
        """While a loop body is traced: modules called in it run once per iteration."""
        self._loop_depth += 1
        try:
            yield
        finally:
            self._loop_depth -= 1

    @contextlib.contextmanager
    def compute_dtype(self, dtype: str | None) -> Iterator[None]:
        """Within the block, floating weights and constants use `dtype` (None: unchanged)."""
        if dtype is None:
            yield
            return
        self._dtype_stack.append(self.dtype)
        self.dtype = dtype
        try:
            yield
        finally:
            self.dtype = self._dtype_stack.pop()

    def dtype_stack_outer(self) -> str:
        """The compute dtype outside the innermost override."""
        return self._dtype_stack[-1] if self._dtype_stack else self.dtype

    def unique_name(self, base: str, sep: str = "_") -> str:
        name, i = base, 0
        while name in self._used_names:
            i += 1
            name = f"{base}{sep}{i}"
        self._used_names.add(name)
        return name

    def _name_outputs(self, layer: Any) -> None:
        n = layer.num_outputs
        for i in range(n):
            out = layer.get_output(i)
            out.name = layer.name if n == 1 else f"{layer.name}:{i}"
            self._producer[out.name] = layer

    def add(self, layer: Any, op: str) -> Any:
        """Register a freshly added layer: check for errors, name it and its outputs."""
        errors = self.errors.take()
        if layer is None or errors:
            self.fail(f"TensorRT rejected the {op} layer", errors)
        scope = self.scope
        layer.name = self.unique_name(f"{scope}/{op}" if scope else op)
        self.module_layers.setdefault(scope, []).append(layer.name)
        self._name_outputs(layer)
        try:
            for i in range(layer.num_outputs):
                _ = layer.get_output(i).shape  # forces shape inference, so errors surface here
        except RuntimeError as exc:
            errors = self.errors.take() or [str(exc)]
        else:
            errors = self.errors.take()
        if errors:
            self.fail(f"TensorRT rejected the {op} layer", errors)
        return layer

    def fail(self, what: str, details: Sequence[str] = (), exc: type[Exception] = TraceError):
        where = f"in module '{self.scope}'" if self.scope else "at top level"
        msg = f"{what} {where}\n  at {user_frame()}"
        if details:
            msg += "\n  TensorRT: " + "\n  TensorRT: ".join(details)
        raise exc(msg)

    def finish_module(self, path: str, outputs: Sequence[Any]) -> None:
        """Name the layer that produced each module output after the module path."""
        names = []
        input_names = {i.name for i in self.inputs}
        for t in outputs:
            tname = t.trt.name
            layer = self._producer.get(tname)
            if (layer is not None and tname not in input_names and layer.num_outputs == 1
                    and layer.name.startswith(path + "/")):
                old = layer.name
                self._used_names.discard(old)
                layer.name = self.unique_name(path, sep="#")
                layers = self.module_layers[path]
                layers[layers.index(old)] = layer.name
                del self._producer[tname]
                self._name_outputs(layer)
                tname = layer.get_output(0).name
            names.append(tname)
        (self.loop_module_outputs if self._loop_depth else self.module_outputs).setdefault(path, []).append(names)

    # ---- weights ----------------------------------------------------------
    def keep(self, array: np.ndarray) -> np.ndarray:
        """Keep `array` alive until the build ends (TensorRT holds only its pointer)."""
        return self.keep_as(array)

    def keep_as(self, array: np.ndarray, dtype: Any = None) -> np.ndarray:
        """`array` as `dtype` (cast into a copy the network owns), kept alive until the build ends.

        The same memory read as the same dtype is kept once (a Parameter used N times, or tied
        weights, is stored, counted and digested once): later calls return the first call's
        array. A cast is reused only while its source is alive and still holds the same values.
        """
        array = np.asarray(array)
        target = np.dtype(array.dtype if dtype is None else dtypes.to_numpy(dtype))
        key = _memory_key(array, target)
        if key is not None and key in self._shared:
            source, kept, view = self._shared[key]
            if source() is not None and (view or _same_bits(array.astype(target), kept)):
                self._uses[id(kept)] += 1
                return kept
        if array.dtype != target:
            kept = np.require(array.astype(target), requirements="C")
            self._owned.add(id(kept))
        else:
            kept = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
        self._keepalive.append(kept)
        self._uses[id(kept)] = self._uses.get(id(kept), 0) + 1
        if key is not None:
            try:  # a view of the source needs no check on reuse; a copy is compared first
                self._shared[key] = (weakref.ref(_memory_owner(array)), kept, kept is array)
            except TypeError:  # an owner without weak references (bytes): not shared
                pass
        return kept

    def release(self, array: np.ndarray) -> None:
        """One use of a kept array is over (e.g. folding replaced a kernel): after the last one the
        network stops holding it, and pages it maps from a safetensors file may leave memory."""
        uses = self._uses.get(id(array), 0) - 1
        if uses > 0:
            self._uses[id(array)] = uses
            return
        self._uses.pop(id(array), None)
        self._keepalive = [a for a in self._keepalive if a is not array]
        self._shared = {k: v for k, v in self._shared.items() if v[1] is not array}
        self._constants = {k: v for k, v in self._constants.items() if k[0] != id(array)}
        self._owned.discard(id(array))
        from netdef.weights.safetensors import release_pages

        release_pages(array)

    def owns(self, array: np.ndarray) -> bool:
        """True for arrays the network made itself (casts) and uses once, which it may rewrite in place."""
        return id(array) in self._owned and self._uses.get(id(array)) == 1

    def shared_constant(self, kept: np.ndarray, shape: tuple, make: Any) -> Any:
        """The constant layer output holding `kept` as `shape`: made once by `make()`, then reused."""
        key = (id(kept), tuple(shape))
        if key not in self._constants:
            self._constants[key] = make()
        return self._constants[key]

    @staticmethod
    def as_weights(array: np.ndarray):
        """trt.Weights over a kept array (TensorRT keeps only the pointer)."""
        t = backend.trt()
        if array.size == 0:
            return t.Weights(dtypes.to_trt(array.dtype))
        return t.Weights(dtypes.to_trt(array.dtype), array.ctypes.data, array.size)

    def weights(self, array: np.ndarray, dtype: Any = None):
        """trt.Weights over `array` (cast to `dtype`), valid for the network's lifetime."""
        return self.as_weights(self.keep_as(array, dtype))

    @property
    def weights_digest(self) -> str:
        """sha256 of every weight array, in the order added; computed on demand (build records it)."""
        digest = hashlib.sha256()
        for array in self._keepalive:
            digest.update(memoryview(array.reshape(-1).view(np.uint8)))
        return digest.hexdigest()

    def producer(self, tensor_name: str) -> Any:
        """The layer that outputs the tensor named `tensor_name` (None for inputs and unknown names)."""
        return self._producer.get(tensor_name)

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self._keepalive)

    # ---- outputs ----------------------------------------------------------
    def mark_output(self, tensor: Any, name: str) -> None:
        itensor = tensor.trt
        if itensor.is_network_input or itensor.is_network_output:
            from netdef import functional as F

            itensor = F.identity(tensor).trt
        old = itensor.name
        itensor.name = name
        if old in self._producer:
            self._producer[name] = self._producer.pop(old)
        for table in (self.module_outputs, self.module_inputs):  # both still name the tensor by its old name
            for calls in table.values():
                for call in calls:
                    call[:] = [name if n == old else n for n in call]
        self.network.mark_output(itensor)
        self.outputs.append(name)

    # ---- reading back -------------------------------------------------------
    @property
    def layers(self) -> list[Any]:
        return [self.network.get_layer(i) for i in range(self.network.num_layers)]

    def __repr__(self) -> str:
        return (f"Network({self.name!r}, dtype={self.dtype}, layers={self.network.num_layers}, "
                f"inputs={[i.name for i in self.inputs]}, outputs={self.outputs})")


def _memory_owner(array: np.ndarray) -> Any:
    """The object that owns `array`'s memory (an ndarray, mmap, memoryview, ...)."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


def _memory_key(array: np.ndarray, target: np.dtype) -> tuple | None:
    """What makes two arrays the same weight: the same memory, layout and dtype, read as `target`."""
    if array.size == 0:
        return None
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype, target)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.require(a, requirements="C")
    return a.shape == b.shape and np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))


def current() -> Network:
    """The active Network; ops outside `netdef.trace` get a clear error."""
    net = _ACTIVE.get()
    if net is None:
        raise TraceError("netdef ops build TensorRT layers and must run inside netdef.trace(...) "
                         f"(or `with netdef.Network() as net:`)\n  at {user_frame()}")
    return net
