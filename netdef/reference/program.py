"""Compile an INetworkDefinition once into a list of torch steps, then run it.

The network is read only through TensorRT's API (layers, attributes, weights,
tensor names/shapes/dtypes). This file is the one place of the dtype policy:

* every floating tensor is stored in its network dtype (float16 stays float16);
* a layer computes in float32: its floating inputs are upcast, and each output is
  rounded to the output tensor's dtype — fp16/bf16 layers round once per layer,
  which mirrors TensorRT's fp32 accumulation;
* `compute_dtype=torch.float64` stores and computes every floating tensor in
  float64 (casts to narrower floats are not rounded), for a high-precision reference;
* float32 is IEEE float32 on every device: on CUDA, torch's TF32 convolutions and matmuls
  are switched off while a program runs (the caller's settings are restored after);
  `tf32=True` instead models a backend that computes float32 convolution and matrix
  multiply layers in TF32, by rounding their operands (inputs and kernels) to TF32.
"""
from __future__ import annotations

import contextlib
import heapq
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from netdef import backend, dtypes
from netdef.arrays import numpy_to_torch
from netdef.errors import RunnerError
from netdef.network import shape_mismatch
from netdef.reference import layers as _layers  # noqa: F401  (registers every builder)
from netdef.reference.registry import LAYERS, Context, round_tf32

# layer type -> input positions that are multiplication operands (rounded when modelling TF32)
_TF32_OPERANDS = {"CONVOLUTION": (0, 1), "DECONVOLUTION": (0, 1), "MATRIX_MULTIPLY": (0, 1), "EINSUM": None}


@dataclass
class Step:
    name: str
    kind: str
    fn: Callable
    inputs: tuple  # value slots (None = optional input absent)
    upcast: tuple  # positions of inputs to cast to the compute dtype
    tf32: tuple  # positions of float32 multiplication operands to round to TF32
    outputs: tuple  # value slots
    out_dtypes: tuple  # torch dtypes outputs are stored in
    out_shapes: tuple  # TensorRT's declared shapes (-1 = dynamic)
    free: tuple = ()  # slots whose last reader is this step


@dataclass
class InputSpec:
    name: str
    slot: int
    dtype: Any  # torch dtype the caller must pass
    storage: Any  # torch dtype it is held in
    shape: tuple  # declared (-1 = free)
    bounds: tuple | None  # (min, max) shapes for a netdef.Network Input


def _network_of(net: Any) -> tuple[Any, dict]:
    """The INetworkDefinition, and the Input ranges when `net` is a netdef.Network."""
    inner = getattr(net, "network", None)
    if inner is not None and hasattr(net, "inputs"):
        return inner, {i.name: (i.min_shape, i.max_shape) for i in net.inputs}
    return net, {}


def _dtype_name(t: Any, what: str) -> str:
    try:
        return dtypes.name(t)
    except TypeError:
        raise RunnerError(f"{what} has dtype {t}, which the reference runner does not support") from None


def _to_torch(value: Any, name: str, device: Any):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (np.ndarray, np.generic)):  # numpy scalars (np.float32(1)) are 0-d inputs
        return numpy_to_torch(np.asarray(value)).to(device)
    raise RunnerError(f"input {name!r} must be a torch.Tensor or numpy array, got {type(value).__name__}")


class Program:
    """A compiled network: call it with {input name: tensor or array}."""

    def __init__(self, net: Any, device: str = "cpu", compute_dtype: Any = None, partial: bool = False,
                 tf32: bool = False) -> None:
        import torch

        network, bounds = _network_of(net)
        t = backend.trt()
        if not isinstance(network, t.INetworkDefinition):
            raise RunnerError(f"expected a netdef.Network or a TensorRT INetworkDefinition, "
                              f"got {type(net).__name__}")
        if compute_dtype not in (None, torch.float32, torch.float64):
            raise RunnerError(f"compute_dtype must be None, torch.float32 or torch.float64, got {compute_dtype}")
        self.device = torch.device(device)
        self.float_dtype = compute_dtype or torch.float32
        wide = self.float_dtype == torch.float64

        def storage(trt_dtype: Any, what: str = "a tensor") -> Any:
            name = _dtype_name(trt_dtype, what)
            return torch.float64 if wide and dtypes.is_floating(name) else dtypes.to_torch(name)

        if tf32 and wide:
            raise RunnerError("tf32=True models float32 math; it cannot be combined with compute_dtype=float64")
        self.tf32 = tf32
        ctx = Context(self.device, self.float_dtype, storage, tf32)
        self.names: list[str] = []
        slots: dict[str, int] = {}
        floating: list[bool] = []

        def slot(itensor: Any) -> int:
            name = itensor.name
            if name not in slots:
                slots[name] = len(self.names)
                self.names.append(name)
                floating.append(dtypes.is_floating(_dtype_name(itensor.dtype, f"tensor {name!r}")))
            return slots[name]

        self.inputs: list[InputSpec] = []
        for i in range(network.num_inputs):
            x = network.get_input(i)
            name = _dtype_name(x.dtype, f"input {x.name!r}")
            self.inputs.append(InputSpec(x.name, slot(x), dtypes.to_torch(name),
                                         storage(x.dtype), tuple(x.shape), bounds.get(x.name)))
        produced = {s.name for s in self.inputs}

        layers = []
        for i in range(network.num_layers):
            raw = network.get_layer(i)
            kind = raw.type.name  # read before downcast: activation/pooling shadow `type`
            layers.append((kind, backend.downcast(raw)))
        # an unsupported layer type is named before any graph check (a loop is a cycle otherwise)
        unsupported = [(kind, layer.name) for kind, layer in layers if kind not in LAYERS]
        if unsupported and not partial:
            kinds = sorted({k for k, _ in unsupported})
            raise RunnerError(f"layer {unsupported[0][1]!r} has type {unsupported[0][0]}, which the reference "
                              f"runner does not support ({len(unsupported)} such layers, types {', '.join(kinds)}; "
                              f"supported: {', '.join(sorted(LAYERS))})")
        for _, layer in layers:
            for j in range(layer.num_outputs):
                name = layer.get_output(j).name
                if name in produced:
                    raise RunnerError(f"tensor name {name!r} (output of layer {layer.name!r}) is not "
                                      "unique; the reference runner identifies tensors by name")
                produced.add(name)
        self.partial = partial
        self.steps = []
        for kind, layer in self._ordered(layers):
            try:
                self.steps.append(self._compile(kind, layer, ctx, slots, slot, floating, storage))
            except (RunnerError, RuntimeError):
                if not partial:
                    raise
                break  # a network whose tracing failed: run what precedes the broken layer
        backend.logger().take_errors()  # shape queries on a broken network log errors of their own
        self.outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        self.output_slots = [slots[n] for n in self.outputs]
        self._plan_frees()

    @staticmethod
    def _ordered(layers: list) -> list:
        """Layers in dependency order (set_input may point a layer at a later layer's output)."""
        producer = {}
        for i, (_, layer) in enumerate(layers):
            for j in range(layer.num_outputs):
                producer[layer.get_output(j).name] = i
        deps = []
        users: list[list[int]] = [[] for _ in layers]
        for i, (_, layer) in enumerate(layers):
            d = {producer[x.name] for x in (layer.get_input(k) for k in range(layer.num_inputs))
                 if x is not None and x.name in producer}
            deps.append(len(d))
            for p in d:
                users[p].append(i)
        ready = [i for i, n in enumerate(deps) if n == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(layers[i])
            for u in users[i]:
                deps[u] -= 1
                if deps[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(layers):
            stuck = next(layers[i][1].name for i, n in enumerate(deps) if n > 0)
            raise RunnerError(f"the network has a cycle through layer {stuck!r}")
        return order

    def _compile(self, kind: str, layer: Any, ctx: Context, slots: dict, slot: Callable, floating: list,
                 storage: Callable) -> Step:
        builder = LAYERS.get(kind)
        if builder is None:
            raise RunnerError(f"layer {layer.name!r} has type {kind}, which the reference runner does "
                              f"not support (supported: {', '.join(sorted(LAYERS))})")
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        while inputs and inputs[-1] is None:
            inputs.pop()
        for x in inputs:
            if x is not None and x.name not in slots:
                raise RunnerError(f"layer {layer.name!r} reads tensor {x.name!r}, which no layer or "
                                  "network input produces")
        in_slots = tuple(None if x is None else slot(x) for x in inputs)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        out_slots = tuple(slot(o) for o in outs)
        upcast = tuple(k for k, s in enumerate(in_slots) if s is not None and floating[s])
        operands = _TF32_OPERANDS.get(kind, ()) if self.tf32 else ()
        tf32 = tuple(k for k in upcast if operands is None or k in operands)
        try:
            fn = builder(layer, ctx)
        except RunnerError as exc:
            raise RunnerError(f"layer {layer.name!r} ({kind}): {exc}") from None
        return Step(layer.name, kind, fn, in_slots, upcast, tf32, out_slots,
                    tuple(storage(o.dtype, f"output {o.name!r} of layer {layer.name!r}") for o in outs),
                    tuple(tuple(o.shape) for o in outs))

    def _plan_frees(self) -> None:
        last: dict[int, int] = {}
        for i, st in enumerate(self.steps):
            for s in st.inputs:
                if s is not None:
                    last[s] = i
        keep = set(self.output_slots)
        for s, i in last.items():
            if s not in keep:
                self.steps[i].free += (s,)

    # ---- execution -------------------------------------------------------------------------------
    def _bind(self, inputs: Mapping[str, Any], values: list) -> None:
        if not isinstance(inputs, Mapping):
            raise RunnerError(f"inputs must be a dict of name -> tensor, got {type(inputs).__name__}")
        expected = {s.name for s in self.inputs}
        unknown = [k for k in inputs if k not in expected]
        if unknown:
            raise RunnerError(f"unknown input {unknown[0]!r}; the network's inputs are {sorted(expected)}")
        for spec in self.inputs:
            if spec.name not in inputs:
                raise RunnerError(f"missing input {spec.name!r}; the network's inputs are {sorted(expected)}")
            x = _to_torch(inputs[spec.name], spec.name, self.device)
            if x.dtype != spec.dtype:
                raise RunnerError(f"input {spec.name!r} has dtype {x.dtype} but the network declares "
                                  f"{spec.dtype}")
            lo, hi = spec.bounds if spec.bounds is not None else (None, None)
            problem = shape_mismatch(spec.name, x.shape, spec.shape, lo, hi)
            if problem:
                raise RunnerError(problem)
            values[spec.slot] = x.to(spec.storage)

    def __call__(self, inputs: Mapping[str, Any], all_tensors: bool = False) -> dict:
        import torch

        values: list = [None] * len(self.names)
        self._bind(inputs, values)
        compute = self.float_dtype
        with torch.inference_mode(), _ieee_float32(self.device):
            for st in self.steps:
                args = [None if s is None else values[s] for s in st.inputs]
                for k in st.upcast:
                    if args[k].dtype != compute:
                        args[k] = args[k].to(compute)
                for k in st.tf32:
                    args[k] = round_tf32(args[k])
                try:
                    result = st.fn(*args)
                except Exception as exc:  # noqa: BLE001 - name the layer that failed
                    if self.partial:
                        break
                    if isinstance(exc, RunnerError):
                        raise
                    shapes = [None if a is None else tuple(a.shape) for a in args]
                    raise RunnerError(f"layer {st.name!r} ({st.kind}) failed on inputs of shapes "
                                      f"{shapes}: {type(exc).__name__}: {exc}") from exc
                if not isinstance(result, tuple):
                    result = (result,)
                for s, y, dt, want in zip(st.outputs, result, st.out_dtypes, st.out_shapes):
                    if y.dtype != dt:
                        y = y.to(dt)
                    if len(y.shape) != len(want) or any(w >= 0 and g != w for g, w in zip(y.shape, want)):
                        raise RunnerError(f"layer {st.name!r} ({st.kind}) produced shape {tuple(y.shape)} "
                                          f"but TensorRT declares {want} for {self.names[s]!r}")
                    values[s] = y
                if not all_tensors:
                    for s in st.free:
                        values[s] = None
        outs = {name: values[s] for name, s in zip(self.outputs, self.output_slots)}
        if all_tensors:
            for name, v in zip(self.names, values):
                outs.setdefault(name, v)
        return outs


@contextlib.contextmanager
def _ieee_float32(device: Any):
    """float32 convolutions and matmuls in IEEE float32 on CUDA (torch's cuDNN default is TF32),
    restoring the caller's settings afterwards."""
    import torch

    if device.type != "cuda":
        yield
        return
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        knobs = [(torch.backends.cuda.matmul, "fp32_precision", "ieee"),
                 (torch.backends.cudnn.conv, "fp32_precision", "ieee")]
    else:
        knobs = [(torch.backends.cuda.matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in knobs]
    for obj, attr, value in knobs:
        setattr(obj, attr, value)
    try:
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def compile(net: Any, device: str = "cpu", compute_dtype: Any = None,  # noqa: A001
            partial: bool = False, tf32: bool = False) -> Program:
    """Read `net` (netdef.Network or INetworkDefinition) once into a callable Program.

    partial=True is for networks whose tracing failed: execution stops quietly at the
    first layer that cannot be compiled or run, and what was computed before it is returned.
    tf32=True models float32 convolution/matrix-multiply layers computed in TF32.
    """
    return Program(net, device=device, compute_dtype=compute_dtype, partial=partial, tf32=tf32)


def _signature(net: Any, network: Any) -> tuple:
    """What a cached program depends on: the layers and how they are wired, the inputs and outputs,
    and the revision netdef bumps when it edits a network in place (BatchNorm folding)."""
    ins = tuple((network.get_input(i).name, tuple(network.get_input(i).shape))
                for i in range(network.num_inputs))
    outs = tuple(network.get_output(i).name for i in range(network.num_outputs))
    wiring = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        wiring.append(tuple(None if x is None else x.name
                            for x in (layer.get_input(j) for j in range(layer.num_inputs))))
    return getattr(net, "revision", 0), network.num_layers, ins, outs, tuple(wiring)


def run(net: Any, inputs: Mapping[str, Any], all_tensors: bool = False, device: str = "cpu",
        compute_dtype: Any = None, partial: bool = False, tf32: bool = False) -> dict:
    """Execute `net` on `inputs` with torch; returns {tensor name: torch.Tensor}.

    The compiled program is cached per network object and recompiled when layers, inputs or
    outputs are added, a layer's inputs are rewired, or netdef edits the network in place
    (`Network.revision`); after changing a layer's attributes through the raw API, call
    `compile` anew.
    """
    network, _ = _network_of(net)
    key = (str(device), compute_dtype, partial, tf32, _signature(net, network))
    try:
        per_net = _CACHE.setdefault(net, {})
    except TypeError:  # not weak-referenceable: compile every time
        per_net = {}
    program = per_net.get(key)
    if program is None:
        per_net.clear()
        program = per_net[key] = compile(net, device=device, compute_dtype=compute_dtype, partial=partial,
                                         tf32=tf32)
    return program(inputs, all_tensors=all_tensors)
