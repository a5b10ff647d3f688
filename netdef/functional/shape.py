"""Shape ops: reshape/view/flatten, permute/transpose, squeeze/unsqueeze, expand, cat/stack,
split/chunk and `x[...]` indexing, with torch's semantics including dynamic dimensions.

Sizes may be ints, -1, or int64 shape tensors such as `x.size(0)`. Only dimensions that
are dynamic at trace time cost shape arithmetic; slices name just the axes they cut.
"""
from __future__ import annotations

import math
from functools import reduce
from typing import Any, Sequence

import numpy as np

from netdef import network
from netdef.functional._core import axis_or_fail, cast, dims_of, out, reshape_to, shape_tensor, trt
from netdef.functional.elementwise import add, broadcast_rank, floor_divide, maximum, minimum, promote_types, sub
from netdef.tensor import Tensor

_INT = (int, np.integer)


def _sizes(args: Sequence[Any]) -> list:
    """torch accepts f(x, 2, 3) and f(x, (2, 3)) alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return list(args[0])
    return list(args)


# x.shape reads -1 for a dynamic dimension, so Python arithmetic on it yields a wrong size silently
_DYNAMIC_HINT = ("a dynamic dimension reads as -1 in x.shape, so arithmetic on it (x.shape[0] * 2) gives a "
                 "wrong size; use x.size(0), a shape tensor that works at run time, e.g. "
                 "x.reshape(x.size(0) * 2, -1)")


def _check_sizes(sizes: Sequence[Any], what: str) -> None:
    for s in sizes:
        if isinstance(s, bool) or not (isinstance(s, _INT) or (isinstance(s, Tensor) and s.ndim <= 1)):
            network.current().fail(f"{what} sizes must be ints or int shape tensors such as x.size(0), got {s!r}")
    for i, s in enumerate(sizes):
        if isinstance(s, _INT) and s < -1:
            network.current().fail(f"{what}: size {s} at position {i} of {tuple(sizes)} is negative (only -1 is "
                                   f"allowed); {_DYNAMIC_HINT}")


def reshape(input: Tensor, *shape: Any) -> Tensor:
    sizes = _sizes(shape)
    _check_sizes(sizes, "reshape")
    if sum(1 for s in sizes if isinstance(s, _INT) and s == -1) > 1:
        hint = f"; {_DYNAMIC_HINT}" if any(d < 0 for d in input.shape) else ""
        network.current().fail(f"reshape: only one dimension can be inferred (-1), got {tuple(sizes)}{hint}")
    if all(isinstance(s, _INT) for s in sizes) and all(d >= 0 for d in input.shape):
        numel, known = math.prod(input.shape), math.prod(s for s in sizes if s != -1)
        if (known == 0 or numel % known) if -1 in sizes else numel != known:
            network.current().fail(f"shape {list(sizes)} is invalid for input of size {numel} "
                                   f"(shape {list(input.shape)})")
    return reshape_to(input, sizes, "reshape")


def view(input: Tensor, *shape: Any) -> Tensor:
    return reshape(input, *shape)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape_to(input, [1], "flatten")
    s, e = axis_or_fail(start_dim, input.ndim, "flatten"), axis_or_fail(end_dim, input.ndim, "flatten")
    if s > e:
        network.current().fail(f"flatten() has invalid args: start_dim {start_dim} cannot come after end_dim {end_dim}")
    dims = dims_of(input)
    merged = dims[s:e + 1]
    size = math.prod(merged) if all(isinstance(d, int) for d in merged) else -1
    return reshape_to(input, dims[:s] + [size] + dims[e + 1:], "flatten")


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    d = axis_or_fail(dim, input.ndim + 1, "unsqueeze")
    dims = dims_of(input)
    return reshape_to(input, dims[:d] + [1] + dims[d:], "unsqueeze")


def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    """Removes size-1 dims (all of them, or those in `dim` that have size 1, as torch does).

    A dynamic dimension named in `dim` cannot be decided at trace time and is an error.
    """
    if dim is None:
        drop = {i for i, d in enumerate(input.shape) if d == 1}
    else:
        drop = set()
        for d in (dim if isinstance(dim, (tuple, list)) else (dim,)):
            d = axis_or_fail(d, input.ndim, "squeeze")
            if input.shape[d] < 0:
                network.current().fail(f"squeeze: dimension {d} of shape {input.shape} is dynamic, so "
                                       "whether it has size 1 is unknown at trace time; reshape explicitly")
            if input.shape[d] == 1:
                drop.add(d)
    return reshape_to(input, [d for i, d in enumerate(dims_of(input)) if i not in drop], "squeeze")


def _shuffle_transpose(input: Tensor, perm: Sequence[int], op: str) -> Tensor:
    layer = network.current().network.add_shuffle(input.trt)
    layer.first_transpose = tuple(perm)
    return out(layer, op)


def permute(input: Tensor, *dims: Any) -> Tensor:
    perm = [axis_or_fail(d, input.ndim, "permute") for d in _sizes(dims)]
    if sorted(perm) != list(range(input.ndim)):
        network.current().fail(f"permute dims {tuple(_sizes(dims))} are not a permutation of the "
                               f"{input.ndim} dims of shape {input.shape}")
    return _shuffle_transpose(input, perm, "permute")


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    perm = list(range(input.ndim))
    a, b = axis_or_fail(dim0, input.ndim, "transpose"), axis_or_fail(dim1, input.ndim, "transpose")
    perm[a], perm[b] = perm[b], perm[a]
    return _shuffle_transpose(input, perm, "transpose")


def _slice(x: Tensor, axes: Sequence[int], starts: Sequence[Any], sizes: Sequence[Any],
           strides: Sequence[int], op: str) -> Tensor:
    """A slice layer over `axes` only; dynamic starts or sizes go in as shape tensors."""
    start_t = None if all(isinstance(s, _INT) for s in starts) else shape_tensor(starts)
    size_t = None if all(isinstance(s, _INT) for s in sizes) else shape_tensor(sizes)
    layer = network.current().network.add_slice(
        x.trt, tuple(int(s) if isinstance(s, _INT) else 0 for s in starts),
        tuple(int(s) if isinstance(s, _INT) else 0 for s in sizes), tuple(strides))
    layer.axes = tuple(axes)
    if start_t is not None:
        layer.set_input(1, start_t.trt)
    if size_t is not None:
        layer.set_input(2, size_t.trt)
    return out(layer, op)


def expand(input: Tensor, *sizes: Any) -> Tensor:
    """torch's expand: size-1 dims are broadcast (stride 0), -1 keeps a dim, new dims lead.

    A dynamic input dimension given an explicit size is taken to already have that size.
    """
    net = network.current()
    sizes = _sizes(sizes)
    _check_sizes(sizes, "expand")
    if len(sizes) < input.ndim:
        net.fail(f"expand: the number of sizes ({len(sizes)}) must be at least the rank of shape {input.shape}")
    new = len(sizes) - input.ndim
    x = broadcast_rank(input, len(sizes))
    axes, targets = [], []
    for i, (s, cur) in enumerate(zip(sizes, x.shape)):
        if isinstance(s, _INT) and s == -1:
            if i < new:
                net.fail(f"expand: -1 is not allowed for the new leading dimension {i}")
            continue
        if isinstance(s, _INT) and s == cur:
            continue
        if cur == 1:
            axes.append(i)
            targets.append(s)
        elif cur >= 0 and isinstance(s, _INT):
            net.fail(f"expand: size {s} does not match the existing size {cur} at dimension {i} "
                     f"(shape {input.shape}); only size-1 dimensions can be expanded")
    if not axes:
        return out(net.network.add_identity(x.trt), "expand")
    return _slice(x, axes, [0] * len(axes), targets, [0] * len(axes), "expand")


def _concat(tensors: Sequence[Tensor], dim: int, op: str) -> Tensor:
    net = network.current()
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        net.fail(f"{op} expects a non-empty sequence of Tensors, got {tensors!r}")
    ndim = tensors[0].ndim
    if any(t.ndim != ndim for t in tensors):
        net.fail(f"{op}: tensors must have the same rank, got shapes {[t.shape for t in tensors]}")
    axis = axis_or_fail(dim, ndim, op)
    for i in range(ndim):
        known = {t.shape[i] for t in tensors if t.shape[i] >= 0}
        if i != axis and len(known) > 1:
            net.fail(f"{op}: sizes must match except in dimension {axis}, got shapes {[t.shape for t in tensors]}")
    dtype = reduce(promote_types, [t.dtype for t in tensors])
    layer = net.network.add_concatenation([cast(t, dtype).trt for t in tensors])
    layer.axis = axis
    return out(layer, op)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    return _concat(tensors, dim, "cat")


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        network.current().fail(f"stack expects a non-empty sequence of Tensors, got {tensors!r}")
    d = axis_or_fail(dim, tensors[0].ndim + 1, "stack")
    return _concat([unsqueeze(t, d) for t in tensors], d, "stack")


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    net = network.current()
    d = axis_or_fail(dim, tensor.ndim, "split")
    size = tensor.shape[d]
    if size < 0:
        net.fail(f"split: dimension {d} of shape {tensor.shape} is dynamic; split a static dimension")
    if isinstance(split_size_or_sections, _INT):
        step = int(split_size_or_sections)
        if step <= 0:
            net.fail(f"split_size must be positive, got {step}")
        lengths = [min(step, size - o) for o in range(0, size, step)] or [0]
    else:
        lengths = [int(n) for n in split_size_or_sections]
        if sum(lengths) != size or any(n < 0 for n in lengths):
            net.fail(f"split sizes {lengths} must be non-negative and sum exactly to {size} "
                     f"(dimension {d} of shape {tensor.shape})")
    offsets = np.cumsum([0] + lengths[:-1])
    return tuple(_slice(tensor, [d], [int(o)], [n], [1], "split") for o, n in zip(offsets, lengths))


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    if chunks <= 0:
        network.current().fail(f"chunk expects chunks to be greater than 0, got {chunks}")
    d = axis_or_fail(dim, input.ndim, "chunk")
    if input.shape[d] < 0:
        network.current().fail(f"chunk: dimension {d} of shape {input.shape} is dynamic; chunk a static dimension")
    return split(input, max(1, -(-input.shape[d] // chunks)), d)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """torch.roll: out[i] = x[(i - shift) mod n] along each dim; dims=None rolls the flattened tensor.

    One slice layer in WRAP mode that starts at -shift (Swin's shifted windows are one layer).
    """
    net = network.current()
    shifts = list(shifts) if isinstance(shifts, (tuple, list)) else [shifts]
    if dims is None:
        if len(shifts) != 1:
            net.fail(f"roll without dims takes one shift, got {shifts}")
        return reshape_to(roll(flatten(input), shifts, 0), dims_of(input), "roll")
    dims = list(dims) if isinstance(dims, (tuple, list)) else [dims]
    if len(dims) != len(shifts):
        net.fail(f"roll: shifts {tuple(shifts)} and dims {tuple(dims)} must have the same length")
    axes = [axis_or_fail(d, input.ndim, "roll") for d in dims]
    if len(set(axes)) != len(axes):
        net.fail(f"roll: dims {tuple(dims)} repeat a dimension")
    for sh in shifts:
        if isinstance(sh, bool) or not isinstance(sh, _INT):
            net.fail(f"roll shifts must be ints, got {sh!r}")
    sizes = [dims_of(input)[a] for a in axes]
    size_t = None if all(isinstance(s, int) for s in sizes) else shape_tensor(sizes)
    layer = net.network.add_slice(input.trt, tuple(-int(sh) for sh in shifts),
                                  tuple(s if isinstance(s, int) else 0 for s in sizes), (1,) * len(axes))
    layer.axes = tuple(axes)
    layer.mode = trt().SampleMode.WRAP
    if size_t is not None:
        layer.set_input(2, size_t.trt)
    return out(layer, "roll")


def repeat_interleave(input: Tensor, repeats: int, dim: int | None = None, *, output_size: int | None = None) -> Tensor:
    """torch.repeat_interleave with an int `repeats`: each element `repeats` times along `dim`
    (an unsqueeze, a broadcast and a merge, as Hugging Face's repeat_kv writes grouped-query heads)."""
    net = network.current()
    if isinstance(repeats, bool) or not isinstance(repeats, _INT) or repeats < 0:
        net.fail(f"repeat_interleave takes a non-negative int repeats, got {repeats!r} (tensor repeats are "
                 "data-dependent shapes)")
    if dim is None:
        return repeat_interleave(flatten(input), repeats, 0)
    d = axis_or_fail(dim, input.ndim, "repeat_interleave")
    if repeats == 1:
        return input
    dims = dims_of(input)
    x = expand(unsqueeze(input, d + 1), *([-1] * (d + 1) + [int(repeats)] + [-1] * (input.ndim - d - 1)))
    merged = dims[d] * repeats if isinstance(dims[d], int) else -1
    return reshape_to(x, dims[:d] + [merged] + dims[d + 1:], "repeat_interleave")


# ---- indexing -------------------------------------------------------------
def _vec(v: Any) -> Tensor:
    return v if isinstance(v, Tensor) else shape_tensor([v])


def _plus(a: Any, b: Any) -> Any:
    return a + b if isinstance(a, _INT) and isinstance(b, _INT) else add(_vec(a), _vec(b))


def _bound(v: int | None, d: Any, default: Any) -> Any:
    """Python's slice bound clamping against a dynamic size `d`."""
    if v is None:
        return default
    if v == 0:
        return 0
    return minimum(_vec(d), v) if v > 0 else maximum(_plus(d, v), 0)


def getitem(input: Tensor, index: Any) -> Tensor:
    """`input[index]` with ints, slices (positive steps, negative bounds), None and Ellipsis."""
    net = network.current()
    items = index if isinstance(index, tuple) else (index,)
    for it in items:
        if isinstance(it, bool) or not (it is None or it is Ellipsis or isinstance(it, (_INT, slice))):
            net.fail(f"indexing with {type(it).__name__} is not supported: use ints, slices, None and ...; "
                     "for tensor indices use F.embedding (gather) or F.where")
    ellipses = [i for i, it in enumerate(items) if it is Ellipsis]
    consuming = sum(1 for it in items if it is not None and it is not Ellipsis)
    if len(ellipses) > 1 or consuming > input.ndim:
        net.fail(f"too many indices ({index!r}) for a tensor of rank {input.ndim}")
    fill = (slice(None),) * (input.ndim - consuming)
    items = items[:ellipses[0]] + fill + items[ellipses[0] + 1:] if ellipses else items + fill

    dims = dims_of(input)
    axes, starts, sizes, strides = [], [], [], []
    layout: list[int | None] = []  # per output dim: the input axis it keeps, or None for a new dim
    regroup = False  # int indices drop dims, None adds them: a reshape after the slice
    axis = 0
    for it in items:
        if it is None:
            layout.append(None)
            regroup = True
            continue
        d = dims[axis]
        if isinstance(it, slice):
            step = 1 if it.step is None else int(it.step)
            if step <= 0:
                net.fail(f"slice step must be greater than zero, got {step} (torch has no negative steps)")
            if isinstance(d, int):
                start, stop, _ = it.indices(d)
                size = len(range(start, stop, step))
                cut = (start, size, step) != (0, d, 1)
            else:
                cut = not (it.start in (None, 0) and it.stop is None and step == 1)
                if cut:
                    d = _vec(d)  # one shape read for both bounds
                    start, stop = _bound(it.start, d, 0), _bound(it.stop, d, d)
                    span = sub(_vec(stop), _vec(start))
                    size = maximum(floor_divide(_plus(span, step - 1), step), 0) if step > 1 else maximum(span, 0)
            if cut:
                axes.append(axis)
                starts.append(start)
                sizes.append(size)
                strides.append(step)
            layout.append(axis)
        else:
            i = int(it)
            if isinstance(d, int) and not -d <= i < d:
                net.fail(f"index {i} is out of bounds for dimension {axis} with size {d}")
            axes.append(axis)
            starts.append(i % d if isinstance(d, int) else (i if i >= 0 else _plus(d, i)))
            sizes.append(1)
            strides.append(1)
            regroup = True
        axis += 1
    x = input
    if axes:
        x = _slice(x, axes, starts, sizes, strides, "slice" if regroup else "getitem")
    if regroup:
        xd = dims_of(x)
        return reshape_to(x, [1 if a is None else xd[a] for a in layout], "getitem")
    if not axes:
        return out(net.network.add_identity(x.trt), "getitem")
    return x


__all__ = [
    "reshape", "view", "flatten", "unsqueeze", "squeeze", "permute", "transpose", "expand",
    "cat", "stack", "split", "chunk", "getitem", "roll", "repeat_interleave",
]
