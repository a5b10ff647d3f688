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

Loops and conditionals: netdef/reference/structure.py places every layer in a region (the
top level, a loop body, a branch); each region compiles to its own list of steps, and a
`LoopStep` / `CondStep` runs its body or taken branch with the same step executor, so the
policy above holds inside them too. Boundary layers only move values (no rounding).
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
from netdef.reference import structure
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


Meta = tuple  # (slot, torch dtype it is stored in, TensorRT's declared shape)


class _Stopped(Exception):
    """partial=True: the network stops at the first layer that cannot run."""


@dataclass
class LoopStep:
    """A loop: the body's steps run once per iteration (TensorRT's formal loop semantics,
    docs/reference.md): recurrences start at their initial values and take their next values
    after each iteration; a WHILE condition is computed from the iteration's values before
    the rest of the body runs."""

    name: str
    count: tuple | None  # (slot, fn) of the COUNT trip limit
    condition: tuple | None  # (slot, fn) of the WHILE trip limit
    iterators: list  # (input slot, fn, meta, needed by the condition)
    recurrences: list  # (initial slot, next slot, fn, meta)
    outputs: list  # (input slot, length slot (None: LAST_VALUE), fn, element shape, meta)
    head: list  # body steps the WHILE condition needs
    body: list  # the other body steps
    inputs: tuple  # slots it reads from outside
    produces: tuple  # slots of its outputs
    interior: tuple  # slots computed inside, dropped after the loop (unless all_tensors)
    kind: str = "LOOP"
    free: tuple = ()

    def run(self, program: "Program", values: list, all_tensors: bool) -> None:
        count = self.count[1](values[self.count[0]]) if self.count else None
        for init, _, fn, meta in self.recurrences:
            program._store(values, meta, fn(values[init]), self.name, self.kind)
        sequences: list[list] = [[] for _ in self.outputs]
        i = 0
        while count is None or i < count:
            self._slice_iterators(program, values, i, count, for_condition=True)
            if self.condition is not None:
                program._run(self.head, values, all_tensors)
                if not self.condition[1](values[self.condition[0]]):
                    break
            self._slice_iterators(program, values, i, count, for_condition=False)
            program._run(self.body, values, all_tensors)
            for seq, (src, length, *_) in zip(sequences, self.outputs):
                if length is not None:
                    seq.append(values[src])
            nexts = [values[nxt] for _, nxt, _, _ in self.recurrences]
            for (_, _, fn, meta), value in zip(self.recurrences, nexts):
                program._store(values, meta, fn(value), self.name, self.kind)
            i += 1
        for seq, (src, length, fn, element_shape, meta) in zip(sequences, self.outputs):
            y = fn(values[src]) if length is None else fn(seq, values[length], element_shape)
            program._store(values, meta, y, self.name, self.kind)
        if not all_tensors:
            for s in self.interior:
                values[s] = None

    def _slice_iterators(self, program: "Program", values: list, i: int, count: int | None,
                         for_condition: bool) -> None:
        for src, fn, meta, needed in self.iterators:
            if needed == for_condition:
                program._store(values, meta, fn(values[src], i, count), self.name, self.kind)


@dataclass
class CondStep:
    """A conditional: only the taken branch's steps run (TensorRT's conditionals are lazy)."""

    name: str
    condition: tuple  # (slot, fn)
    branches: tuple  # (true steps, false steps)
    outputs: list  # ((true slot, false slot), fn, meta)
    inputs: tuple
    produces: tuple  # slots of its outputs
    interior: tuple
    kind: str = "IF"
    free: tuple = ()

    def run(self, program: "Program", values: list, all_tensors: bool) -> None:
        side = 0 if self.condition[1](values[self.condition[0]]) else 1
        program._run(self.branches[side], values, all_tensors)
        for sources, fn, meta in self.outputs:
            program._store(values, meta, fn(values[sources[side]]), self.name, self.kind)
        if not all_tensors:
            for s in self.interior:
                values[s] = None


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
        self._ctx, self._storage, self._slots, self._slot, self._floating = ctx, storage, slots, slot, floating
        self._index = {id(layer): i for i, (_, layer) in enumerate(layers)}  # layers stay alive while compiling
        outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        root = structure.analyze(layers, set(outputs))
        self.steps = self._compile_region(root, top=True)
        backend.logger().take_errors()  # shape queries on a broken network log errors of their own
        self.outputs = outputs
        # slot(): in partial mode an output's layer may be past the stop and have no slot yet
        self.output_slots = [slot(network.get_output(i)) for i in range(network.num_outputs)]
        # what the outputs and assertions need: layers nothing reads (a BatchNorm folded away) run only
        # for all_tensors, as TensorRT prunes them; an assertion is kept, as TensorRT keeps it
        checks = [st for st in self.steps if isinstance(st, Step) and st.kind == "ASSERTION"]
        roots = [*self.output_slots, *(x for st in checks for x in st.inputs if x is not None)]
        needed = {id(st) for st in _split_needed(self.steps, *roots)[0] + checks}
        self.live = [st for st in self.steps if id(st) in needed]
        self._plan_frees()

    # ---- compilation -----------------------------------------------------------------------------
    def _compile_region(self, region: structure.Region, top: bool = False) -> list:
        steps = []
        for kind, obj in self._ordered(region):
            try:
                if kind == "LOOP":
                    steps.append(self._compile_loop(obj))
                elif kind == "IF":
                    steps.append(self._compile_conditional(obj))
                else:
                    steps.append(self._compile(kind, obj))
            except (RunnerError, RuntimeError):
                if not (top and self.partial):
                    raise
                break  # a network whose tracing failed: run what precedes the broken layer
        return steps

    def _ordered(self, region: structure.Region) -> list:
        """A region's layers, loops and conditionals in dependency order, network order among
        equals (set_input may point a layer at a later layer's output)."""
        items = [(self._index[id(layer)], kind, layer) for kind, layer in region.layers]
        items += [(node.first, "LOOP", node) for node in region.loops]
        items += [(node.first, "IF", node) for node in region.conditionals]
        items.sort(key=lambda item: item[0])
        producer: dict[str, int] = {}
        reads = []
        for n, (_, kind, obj) in enumerate(items):
            made, read = _made_and_read(obj.all_layers() if kind in ("LOOP", "IF") else [(kind, obj)])
            if kind in ("LOOP", "IF"):
                made = {o.get_output(0).name for o in obj.outputs}
            for name in made:
                producer[name] = n
            reads.append(read)
        deps, users = [], [[] for _ in items]
        for n, read in enumerate(reads):
            d = {producer[x] for x in read if x in producer}
            deps.append(len(d))
            for p in d:
                users[p].append(n)
        ready = [n for n, k in enumerate(deps) if k == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(items[n][1:])
            for u in users[n]:
                deps[u] -= 1
                if deps[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(items):
            kind, obj = next(items[n][1:] for n, k in enumerate(deps) if k > 0)
            what = f"{'loop' if kind == 'LOOP' else 'conditional'} {obj.name!r}" if kind in ("LOOP", "IF") \
                else f"layer {obj.name!r}"
            raise RunnerError(f"the network has a cycle through {what}")
        return order

    def _read(self, layer: Any, x: Any) -> int:
        """The slot of a tensor `layer` reads, which an earlier step must produce."""
        if x.name not in self._slots:
            raise RunnerError(f"layer {layer.name!r} reads tensor {x.name!r}, which no layer or "
                              "network input produces")
        return self._slot(x)

    def _meta(self, kind: str, layer: Any, j: int = 0) -> Meta:
        o = layer.get_output(j)
        try:
            shape = tuple(o.shape)  # TensorRT raises RuntimeError on a shape it cannot infer
        except Exception as exc:  # noqa: BLE001 - name the layer
            raise RunnerError(f"layer {layer.name!r} ({kind}): output {o.name!r} has no shape: "
                              f"{type(exc).__name__}: {exc}") from exc
        return (self._slot(o), self._storage(o.dtype, f"output {o.name!r} of layer {layer.name!r}"), shape)

    def _build(self, kind: str, layer: Any) -> Callable:
        builder = LAYERS.get(kind)
        if builder is None:
            raise RunnerError(f"layer {layer.name!r} has type {kind}, which the reference runner does "
                              f"not support (supported: {', '.join(sorted(LAYERS))})")
        try:
            return builder(layer, self._ctx)
        except RunnerError as exc:
            raise RunnerError(f"layer {layer.name!r} ({kind}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a builder's slip still names the layer
            raise RunnerError(f"layer {layer.name!r} ({kind}): {type(exc).__name__}: {exc}") from exc

    def _compile(self, kind: str, layer: Any) -> Step:
        fn = self._build(kind, layer)
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        while inputs and inputs[-1] is None:
            inputs.pop()
        in_slots = tuple(None if x is None else self._read(layer, x) for x in inputs)
        metas = [self._meta(kind, layer, j) for j in range(layer.num_outputs)]
        upcast = tuple(k for k, s in enumerate(in_slots) if s is not None and self._floating[s])
        operands = _TF32_OPERANDS.get(kind, ()) if self.tf32 else ()
        tf32 = tuple(k for k in upcast if operands is None or k in operands)
        return Step(layer.name, kind, fn, in_slots, upcast, tf32, tuple(m[0] for m in metas),
                    tuple(m[1] for m in metas), tuple(m[2] for m in metas))

    def _compile_loop(self, node: structure.LoopNode) -> LoopStep:
        limits = {"COUNT": [], "WHILE": []}
        for layer in node.trip_limits:
            limits[layer.kind.name].append(layer)
        if len(limits["COUNT"]) > 1 or len(limits["WHILE"]) > 1 or not node.trip_limits:
            raise RunnerError(f"loop {node.name!r} needs one COUNT or WHILE trip limit, at most one of each "
                              f"(it has {len(limits['COUNT'])} and {len(limits['WHILE'])})")
        count = limits["COUNT"][0] if limits["COUNT"] else None
        for it in node.iterators:
            if it.reverse and count is None:
                raise RunnerError(f"iterator {it.name!r} iterates in reverse, which needs a COUNT trip limit "
                                  f"in loop {node.name!r}")
        recurrent = {r.get_output(0).name for r in node.recurrences}
        for out in node.outputs:
            if out.kind.name == "LAST_VALUE" and out.get_input(0).name not in recurrent:
                raise RunnerError(f"loop output {out.name!r} (LAST_VALUE) reads {out.get_input(0).name!r}, which "
                                  f"is not a recurrence of loop {node.name!r} (TensorRT requires one)")
            if out.kind.name != "LAST_VALUE" and out.get_input(1) is None:
                raise RunnerError(f"loop output {out.name!r} ({out.kind.name}) has no length input")
        for r in node.recurrences:
            if r.num_inputs < 2 or r.get_input(1) is None:
                raise RunnerError(f"recurrence {r.name!r} of loop {node.name!r} has no next value (set_input(1, ...))")
        # values from outside, then what the boundary makes inside, then the body
        count_step = (self._read(count, count.get_input(0)), self._build("TRIP_LIMIT", count)) if count else None
        iterators = [(self._read(it, it.get_input(0)), self._build("ITERATOR", it), self._meta("ITERATOR", it))
                     for it in node.iterators]
        recurrences = [(self._read(r, r.get_input(0)), r, self._build("RECURRENCE", r), self._meta("RECURRENCE", r))
                       for r in node.recurrences]
        lengths = [None if out.kind.name == "LAST_VALUE" else self._read(out, out.get_input(1))
                   for out in node.outputs]
        body = self._compile_region(node.body)
        condition = None
        head: list = []
        if limits["WHILE"]:
            w = limits["WHILE"][0]
            condition = (self._read(w, w.get_input(0)), self._build("TRIP_LIMIT", w))
            head, body = _split_needed(body, condition[0])
        needed = _needed_slots(head) | ({condition[0]} if condition else set())
        outputs = [(self._read(out, out.get_input(0)), length, self._build("LOOP_OUTPUT", out),
                    tuple(out.get_input(0).shape), self._meta("LOOP_OUTPUT", out))
                   for out, length in zip(node.outputs, lengths)]
        made, read = _made_and_read(node.all_layers())
        return LoopStep(
            node.name, count_step, condition,
            [(src, fn, meta, meta[0] in needed) for src, fn, meta in iterators],
            [(init, self._read(r, r.get_input(1)), fn, meta) for init, r, fn, meta in recurrences],
            outputs, head, body,
            inputs=tuple(self._slots[x] for x in sorted(read)),
            produces=tuple(o[4][0] for o in outputs),
            interior=tuple(self._slots[x] for x in sorted(made - {o.get_output(0).name for o in node.outputs})
                           if x in self._slots))

    def _compile_conditional(self, node: structure.CondNode) -> CondStep:
        cond = node.condition
        condition = (self._read(cond, cond.get_input(0)), self._build("CONDITION", cond))
        branches = tuple(self._compile_region(b) for b in node.branches)
        outputs = [((self._read(o, o.get_input(0)), self._read(o, o.get_input(1))),
                    self._build("CONDITIONAL_OUTPUT", o), self._meta("CONDITIONAL_OUTPUT", o)) for o in node.outputs]
        made, read = _made_and_read(node.all_layers())
        return CondStep(
            node.name, condition, branches, outputs,
            inputs=tuple(self._slots[x] for x in sorted(read)),
            produces=tuple(o[2][0] for o in outputs),
            interior=tuple(self._slots[x] for x in sorted(made - {o.get_output(0).name for o in node.outputs})
                           if x in self._slots))

    def _plan_frees(self) -> None:
        """Drop each top-level value after its last reader (a loop or conditional reads every
        outside value its body reads)."""
        last: dict[int, int] = {}
        for i, st in enumerate(self.live):
            for s in st.inputs:
                if s is not None:
                    last[s] = i
        keep = set(self.output_slots)
        for s, i in last.items():
            if s not in keep:
                self.live[i].free += (s,)

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
        with torch.inference_mode(), _ieee_float32(self.device):
            try:
                self._run(self.steps if all_tensors else self.live, values, all_tensors)
            except _Stopped:
                pass
        outs = {name: values[s] for name, s in zip(self.outputs, self.output_slots)}
        if all_tensors:
            for name, v in zip(self.names, values):
                outs.setdefault(name, v)
        return outs

    def _run(self, steps: list, values: list, all_tensors: bool) -> None:
        """Execute steps in order: the one place where layers compute (upcast, TF32, round on store)."""
        compute = self.float_dtype
        for st in steps:
            if not isinstance(st, Step):  # a loop or conditional runs its own steps through here
                try:
                    st.run(self, values, all_tensors)
                except _Stopped:
                    raise
                except Exception as exc:
                    if self.partial:
                        raise _Stopped from exc
                    if isinstance(exc, RunnerError):
                        raise
                    what = "loop" if st.kind == "LOOP" else "conditional"
                    raise RunnerError(f"{what} {st.name!r} failed: {type(exc).__name__}: {exc}") from exc
            else:
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
                        raise _Stopped from exc
                    if isinstance(exc, RunnerError):
                        raise
                    shapes = [None if a is None else tuple(a.shape) for a in args]
                    raise RunnerError(f"layer {st.name!r} ({st.kind}) failed on inputs of shapes "
                                      f"{shapes}: {type(exc).__name__}: {exc}") from exc
                if not isinstance(result, tuple):
                    result = (result,)
                for s, y, dt, want in zip(st.outputs, result, st.out_dtypes, st.out_shapes):
                    self._store(values, (s, dt, want), y, st.name, st.kind)
            if not all_tensors:
                for s in st.free:
                    values[s] = None

    def _store(self, values: list, meta: Meta, y: Any, name: str, kind: str) -> None:
        """Keep a layer's output in its tensor's storage dtype, after checking TensorRT's declared shape."""
        slot, dtype, want = meta
        if y.dtype != dtype:
            y = y.to(dtype)
        if len(y.shape) != len(want) or any(w >= 0 and g != w for g, w in zip(y.shape, want)):
            raise RunnerError(f"layer {name!r} ({kind}) produced shape {tuple(y.shape)} "
                              f"but TensorRT declares {want} for {self.names[slot]!r}")
        values[slot] = y


def _made_and_read(layers: Any) -> tuple[set[str], set[str]]:
    """Tensor names (kind, layer) pairs produce, and those they read from elsewhere."""
    made, read = set(), set()
    for _, layer in layers:
        made.update(layer.get_output(j).name for j in range(layer.num_outputs))
        read.update(x.name for x in (layer.get_input(k) for k in range(layer.num_inputs)) if x is not None)
    return made, read - made


def _needed_slots(steps: list) -> set[int]:
    return {s for st in steps for s in st.inputs if s is not None}


def _split_needed(steps: list, *slots: int) -> tuple[list, list]:
    """(the steps `slots` depend on, the others), each in order."""
    need, head = set(slots), set()
    for i in range(len(steps) - 1, -1, -1):
        st = steps[i]
        outs = st.outputs if isinstance(st, Step) else st.produces
        if need.intersection(outs):
            head.add(i)
            need.update(s for s in st.inputs if s is not None)
    return ([st for i, st in enumerate(steps) if i in head], [st for i, st in enumerate(steps) if i not in head])


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
