"""Control flow: loops over TensorRT's ILoop, conditionals over IIfConditional, reverse_sequence.

The signatures are torch's structured control flow (`torch.cond`, and `scan` / `while_loop`
from `torch._higher_order_ops`): the body is a Python function over Tensors, traced once;
TensorRT runs it once per iteration, so a sequence length can be a dynamic dimension of the
engine (nothing is unrolled). Layers the body adds are named after the module path, like
every other layer. Carries, slices and operands may be Tensors or nested tuples, lists and
dicts of them. docs/recurrent.md has the semantics; the reference runner executes these
layers with TensorRT's formal loop semantics (netdef/reference/layers/control.py).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from netdef import backend, network
from netdef.functional._core import (
    axis_or_fail,
    cast,
    constant,
    out,
    reshape_to,
    shape_of,
    to_tensor,
    trt,
)
from netdef.tensor import Tensor

_LEAF = (Tensor, int, float, bool, np.number, np.ndarray)


# ---- nested structures (torch's pytrees, for tuples, lists and dicts) --------------------------------
def _flatten(obj: Any) -> list:
    if isinstance(obj, _LEAF):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [leaf for o in obj for leaf in _flatten(o)]
    if isinstance(obj, dict):
        return [leaf for o in obj.values() for leaf in _flatten(o)]
    return []  # None and other non-tensor values are kept in place, not carried


def _rebuild(template: Any, leaves: list) -> Any:
    it = iter(leaves)

    def go(obj: Any) -> Any:
        if isinstance(obj, _LEAF):
            return next(it)
        if isinstance(obj, (list, tuple)):
            items = [go(o) for o in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
        if isinstance(obj, dict):
            return {k: go(v) for k, v in obj.items()}
        return obj
    return go(template)


def _structure(obj: Any) -> Any:
    """What must match between an initial value and what the body returns."""
    if isinstance(obj, _LEAF):
        return "*"
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_structure(o) for o in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, _structure(v)) for k, v in obj.items()))
    return repr(obj)


def _tensors(leaves: list, what: str, like: list | None = None) -> list[Tensor]:
    """Leaves as Tensors: numbers and arrays become constants (in the dtype of `like`'s leaf)."""
    net = network.current()
    result = []
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, Tensor):
            result.append(leaf)
        elif isinstance(leaf, (int, float, bool, np.number, np.ndarray)):
            dtype = like[i].dtype if like is not None else None
            result.append(to_tensor(leaf, dtype=dtype))
        else:
            net.fail(f"{what}[{i}] is a {type(leaf).__name__}, not a Tensor")
    return result


def _check_same(what: str, got: list[Tensor], want: list[Tensor], got_name: str, want_name: str,
                ranks_only: bool = False) -> None:
    """TensorRT needs a recurrence's next value (a branch's output) to match its initial value
    (the other branch's) in dtype and shape; say which one differs, in the user's terms."""
    net = network.current()
    for i, (g, w) in enumerate(zip(got, want)):
        same_shape = g.ndim == w.ndim and (ranks_only or all(a == b or a < 0 or b < 0
                                                             for a, b in zip(g.shape, w.shape)))
        if g.dtype != w.dtype or not same_shape:
            net.fail(f"{what}: {got_name}[{i}] has shape {g.shape} and dtype {g.dtype} but {want_name}[{i}] has "
                     f"shape {w.shape} and dtype {w.dtype}; they must match")


def _set_next(layer: Any, value: Tensor, what: str) -> None:
    net = network.current()
    layer.set_input(1, value.trt)
    errors = backend.logger().take_errors()
    if errors:
        net.fail(f"TensorRT rejected the next value of {what}", errors)


def _close(op: str, recs: list, nxt: Any, init: Any, init_leaves: list[Tensor], returned: str, next_name: str,
           init_name: str) -> None:
    """Feed a loop body's next values back into its recurrences, after checking they are
    structured, shaped and typed like the initial values (named in the user's terms)."""
    if _structure(nxt) != _structure(init):
        network.current().fail(f"{op}: {returned} structured as {_structure(nxt)}, unlike {init_name}: "
                               f"{_structure(init)}")
    nexts = _tensors(_flatten(nxt), f"{op}: {next_name}", like=init_leaves)
    _check_same(op, nexts, init_leaves, next_name, init_name)
    for r, n in zip(recs, nexts):
        _set_next(r, n, f"a {op} carry")


def _count(n: Any, what: str) -> Tensor:
    """A trip count or concatenation length as a 0-d int64 tensor."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        if n < 0:
            network.current().fail(f"{what} must be >= 0, got {n}")
        return constant(np.array(int(n), dtype=np.int64), op="trip_count")
    if isinstance(n, Tensor) and n.dtype in ("int32", "int64") and all(d == 1 for d in n.shape):
        n = cast(n, "int64")
        return n if n.ndim == 0 else reshape_to(n, [], "trip_count")
    network.current().fail(f"{what} must be an int or a one-element int Tensor such as x.size(0), got {n!r}")


def _add(layer: Any, op: str) -> None:
    """Register a layer without outputs (a trip limit, a condition) with the active network."""
    network.current().add(layer, op)


def _new_loop(op: str) -> Any:
    net = network.current()
    loop = net.network.add_loop()
    loop.name = net.unique_name(f"{net.scope}/{op}" if net.scope else op)
    return loop


def _final(loop: Any, rec: Any) -> Tensor:
    return out(loop.add_loop_output(rec.get_output(0), trt().LoopOutput.LAST_VALUE), "final")


# ---- loops ---------------------------------------------------------------------------------------
def scan(combine_fn: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, *, dim: int = 0,
         reverse: bool = False, length: Any = None) -> tuple[Any, Any]:
    """torch's `scan`: `carry, y = combine_fn(carry, x)` for each slice x of `xs` along `dim`.

    Returns (final carry, ys): ys stacks each step's y along `dim` (along 0 for a y of fewer
    dimensions, as torch does), in the order of `xs`
    (with reverse=True the steps run from the last slice, ys still line up with xs).
    `xs=None` with `length` (an int or x.size(d)) runs a counted loop; combine_fn gets x=None.
    One ILoop: a COUNT trip limit, an ITERATOR per xs tensor, a RECURRENCE per carry tensor,
    a LAST_VALUE output per carry and a CONCATENATE (REVERSE) output per y. Modules called in
    combine_fn run once per iteration; they are recorded in Network.loop_module_outputs.
    """
    net = network.current()
    t = trt()
    x_leaves = _flatten(xs)
    if any(not isinstance(x, Tensor) for x in x_leaves):
        net.fail("scan: xs must be Tensors (or tuples, lists and dicts of them)")
    if not x_leaves and length is None:
        net.fail("scan: give xs to iterate over, or length= for a counted loop")
    axis = 0
    if x_leaves:
        # torch normalizes dim once, against the first leaf, and needs every leaf to have that axis
        axis = axis_or_fail(dim, x_leaves[0].ndim, "scan")
        for i, x in enumerate(x_leaves):
            if x.ndim <= axis:
                net.fail(f"scan: xs leaf {i} has shape {x.shape}, which has no dimension {axis} "
                         f"(dim={dim} of the first leaf's rank {x_leaves[0].ndim}); every xs tensor needs it")
        sizes = {x.shape[axis] for x in x_leaves if x.shape[axis] >= 0}
        if len(sizes) > 1:
            net.fail(f"scan: every xs tensor needs the same size in dimension {dim}, got shapes "
                     f"{[x.shape for x in x_leaves]}")
        if isinstance(length, (int, np.integer)) and sizes and length != next(iter(sizes)):
            net.fail(f"scan: length={length} but xs has {next(iter(sizes))} slices in dimension {dim}")
        first = x_leaves[0]
        steps = first.shape[axis]
        count = _count(steps if steps >= 0 else shape_of(first, axis), "scan length")
    else:
        count = _count(length, "scan length")
    init_leaves = _tensors(_flatten(init), "scan: init")

    loop = _new_loop("scan")
    _add(loop.add_trip_limit(count.trt, t.TripLimit.COUNT), "trip_limit")
    slices = [out(loop.add_iterator(x.trt, axis, reverse), "iterator") for x in x_leaves]
    recs = [loop.add_recurrence(c.trt) for c in init_leaves]
    carry = _rebuild(init, [out(r, "recurrence") for r in recs])
    with net.loop_body():
        result = combine_fn(carry, _rebuild(xs, slices) if x_leaves else None)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        net.fail(f"scan: combine_fn must return (next_carry, y), got {type(result).__name__}")
    next_carry, y = result
    _close("scan", recs, next_carry, init, init_leaves, "combine_fn returned a carry", "next carry", "init")
    finals = [_final(loop, r) for r in recs]
    ys = []
    kind = t.LoopOutput.REVERSE if reverse else t.LoopOutput.CONCATENATE
    for leaf in _tensors(_flatten(y), "scan: y"):
        # torch stacks on dim 0 and moves that to `dim` when the stack has that many dimensions
        layer = loop.add_loop_output(leaf.trt, kind, axis if axis <= leaf.ndim else 0)
        layer.set_input(1, count.trt)
        ys.append(out(layer, "scan_output"))
    return _rebuild(init, finals), _rebuild(y, ys)


def while_loop(cond_fn: Callable[..., Any], body_fn: Callable[..., Any], carried_inputs: Any) -> Any:
    """torch's `while_loop`: `while cond_fn(*carried): carried = body_fn(*carried)`.

    cond_fn returns a one-element bool Tensor computed from the carried values (a WHILE trip
    limit: checked before every iteration); body_fn returns the next values, structured,
    shaped and typed like `carried_inputs`. Returns the carried values after the last iteration.
    """
    net = network.current()
    if not isinstance(carried_inputs, (tuple, list)):
        net.fail(f"while_loop: carried_inputs must be a tuple or list, got {type(carried_inputs).__name__}")
    init_leaves = _tensors(_flatten(carried_inputs), "while_loop: carried_inputs")
    loop = _new_loop("while_loop")
    recs = [loop.add_recurrence(c.trt) for c in init_leaves]
    state = _rebuild(carried_inputs, [out(r, "recurrence") for r in recs])
    with net.loop_body():
        keep_going = cond_fn(*state)
    if not isinstance(keep_going, Tensor):
        net.fail(f"while_loop: cond_fn must return a bool Tensor computed from the carried values, got "
                 f"{type(keep_going).__name__} (a Python value would loop forever or never)")
    _add(loop.add_trip_limit(_scalar_bool(keep_going, "while_loop: cond_fn's result").trt,
                             trt().TripLimit.WHILE), "trip_limit")
    with net.loop_body():
        nxt = body_fn(*state)
    if len(carried_inputs) == 1 and not isinstance(nxt, (tuple, list)):
        nxt = type(carried_inputs)([nxt])
    _close("while_loop", recs, nxt, carried_inputs, init_leaves, "body_fn returned values", "body_fn's result",
           "carried_inputs")
    return _rebuild(carried_inputs, [_final(loop, r) for r in recs])


def _scalar_bool(pred: Tensor, what: str) -> Tensor:
    net = network.current()
    if pred.dtype != "bool":
        net.fail(f"{what} must be a bool Tensor, got {pred.dtype} (compare it, e.g. `x > 0`)")
    if any(d != 1 for d in pred.shape):
        net.fail(f"{what} must have one element, got shape {pred.shape}")
    return pred if pred.ndim == 0 else reshape_to(pred, [], "condition_scalar")


# ---- conditionals ------------------------------------------------------------------------------
def cond(pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], operands: Any = ()) -> Any:
    """torch.cond: `true_fn(*operands)` if pred else `false_fn(*operands)`, decided at run time.

    pred is a one-element bool Tensor (a Python bool picks the branch while tracing). Only the
    taken branch runs (IIfConditional is lazy). Both branches return the same structure of
    Tensors with matching dtypes and ranks; sizes may differ only where TensorRT can tell the
    condition at build time.
    """
    if isinstance(pred, (bool, int, float, np.bool_)):
        return (true_fn if pred else false_fn)(*operands)
    net = network.current()
    if not isinstance(pred, Tensor):
        net.fail(f"cond: pred must be a bool Tensor or a Python bool, got {type(pred).__name__}")
    if not isinstance(operands, (tuple, list)):
        net.fail(f"cond: operands must be a tuple or list, got {type(operands).__name__}")
    pred = _scalar_bool(pred, "cond: pred")
    conditional = net.network.add_if_conditional()
    conditional.name = net.unique_name(f"{net.scope}/cond" if net.scope else "cond")
    _add(conditional.set_condition(pred.trt), "condition")
    leaves = _flatten(operands)
    inside = [out(conditional.add_input(x.trt), "cond_input") if isinstance(x, Tensor) else x for x in leaves]
    args = _rebuild(operands, inside)
    results = [fn(*args) for fn in (true_fn, false_fn)]
    if _structure(results[0]) != _structure(results[1]):
        net.fail(f"cond: true_fn returned {_structure(results[0])} but false_fn returned {_structure(results[1])}")
    true_leaves = _tensors(_flatten(results[0]), "cond: true_fn's result")
    false_leaves = _tensors(_flatten(results[1]), "cond: false_fn's result", like=true_leaves)
    if not true_leaves:
        net.fail("cond: the branches return no Tensor")
    _check_same("cond", false_leaves, true_leaves, "false_fn's result", "true_fn's result", ranks_only=True)
    outs = [out(conditional.add_output(a.trt, b.trt), "cond_output") for a, b in zip(true_leaves, false_leaves)]
    return _rebuild(results[0], outs)


# ---- sequences ---------------------------------------------------------------------------------
def reverse_sequence(input: Tensor, lengths: Any, seq_dim: int = 0, batch_dim: int = 1) -> Tensor:
    """Reverse the first lengths[b] elements along `seq_dim` of each batch entry b (on
    `batch_dim`), leaving the rest in place: ONNX ReverseSequence / tf.reverse_sequence, e.g.
    the reverse direction of a padded batch of sequences. lengths: int32/int64, one per entry."""
    net = network.current()
    if input.ndim < 2:
        net.fail(f"reverse_sequence: input needs at least 2 dimensions, got shape {input.shape}")
    s, b = (axis_or_fail(d, input.ndim, "reverse_sequence") for d in (seq_dim, batch_dim))
    if s == b:
        net.fail(f"reverse_sequence: seq_dim and batch_dim are both {s}")
    if not isinstance(lengths, Tensor):
        lengths = constant(np.asarray(lengths, dtype=np.int32), op="lengths")
    if lengths.dtype not in ("int32", "int64") or lengths.ndim != 1:
        net.fail(f"reverse_sequence: lengths must be a 1-D int32/int64 tensor, got shape {lengths.shape} "
                 f"{lengths.dtype}")
    if lengths.shape[0] >= 0 and input.shape[b] >= 0 and lengths.shape[0] != input.shape[b]:
        net.fail(f"reverse_sequence: {lengths.shape[0]} lengths for a batch of {input.shape[b]} (dimension {b})")
    layer = net.network.add_reverse_sequence(input.trt, lengths.trt)
    layer.batch_axis, layer.sequence_axis = b, s
    return out(layer, "reverse_sequence")


__all__ = ["cond", "reverse_sequence", "scan", "while_loop"]
