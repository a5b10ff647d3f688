"""Building blocks shared by every op: constants, casts, shape tensors, layer output."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from netdef import backend, dtypes, network
from netdef.arrays import to_numpy
from netdef.tensor import Tensor


def trt():
    return backend.trt()


def out(layer: Any, op: str, index: int = 0) -> Tensor:
    """Register `layer` with the active network (naming, error checks) and wrap output `index`."""
    network.current().add(layer, op)
    return Tensor(layer.get_output(index))


def outs(layer: Any, op: str) -> list[Tensor]:
    network.current().add(layer, op)
    return [Tensor(layer.get_output(i)) for i in range(layer.num_outputs)]


def constant(value: Any, dtype: Any = None, op: str = "constant") -> Tensor:
    """A constant layer holding `value` (numpy array, Parameter, or Python number).

    A weight used again (the same Parameter in the same dtype and shape) reuses the first
    constant layer, so the engine holds it once."""
    net = network.current()
    arr = to_numpy(value)
    if dtype is None and arr.dtype == np.float64:
        dtype = net.dtype
    if dtype is None and arr.dtype == np.int64 and not isinstance(value, np.ndarray):
        dtype = "int32"
    kept = net.keep_as(arr, dtype)
    itensor = net.shared_constant(
        kept, arr.shape, lambda: out(net.network.add_constant(tuple(arr.shape), net.as_weights(kept)), op).trt)
    return Tensor(itensor)


def to_tensor(value: Any, like: Tensor | None = None, dtype: Any = None) -> Tensor:
    """Tensors pass through; Parameters, arrays and numbers become constants.

    Python numbers take the dtype of `like` (torch's type promotion for scalars);
    floating arrays and Parameters take the compute dtype.
    """
    if isinstance(value, Tensor):
        return value
    scalar = isinstance(value, (int, float, bool, np.number))
    if dtype is None and like is not None and scalar:
        dtype = like.dtype
    if dtype is None and not scalar:
        arr = to_numpy(value)
        if dtypes.is_floating(arr.dtype):
            dtype = network.current().dtype
    return constant(value, dtype)


def cast(x: Tensor, dtype: Any) -> Tensor:
    """Cast layer; a no-op when `x` already has `dtype`."""
    if x.dtype == dtypes.name(dtype):
        return x
    layer = network.current().network.add_cast(x.trt, dtypes.to_trt(dtype))
    return out(layer, "cast")


def identity(x: Tensor) -> Tensor:
    return out(network.current().network.add_identity(x.trt), "identity")


def shape_of(x: Tensor, dim: int | None = None) -> Tensor:
    """The runtime shape of `x` as an int64 shape tensor (1-D), or one dimension (0-d)."""
    net = network.current().network
    shp = out(net.add_shape(x.trt), "shape")
    if dim is None:
        return shp
    dim = dim % x.ndim
    idx = constant(np.array(dim, dtype=np.int64), op="dim_index")
    return out(net.add_gather(shp.trt, idx.trt, 0), "dim")


def normalize_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < max(ndim, 1):
        raise IndexError(f"dimension {dim} is out of range for a tensor of rank {ndim}")
    return dim % ndim if ndim else 0


def axis_or_fail(dim: int, ndim: int, op: str) -> int:
    """`normalize_dim` for user-given dims: an out-of-range dim is a TraceError at the user's line
    ("op: dimension 4 is out of range for a tensor of rank 3"), not a bare IndexError."""
    try:
        return normalize_dim(dim, ndim)
    except IndexError as exc:
        network.current().fail(f"{op}: {exc}")


def tuple_n(v: Any, n: int) -> tuple:
    """torch's _pair/_triple: an int becomes (v,)*n, a sequence stays as is."""
    if isinstance(v, Sequence):
        if len(v) != n:
            raise ValueError(f"expected {n} values, got {tuple(v)}")
        return tuple(v)
    return (v,) * n


class DimOf(NamedTuple):
    """Dimension `index` of `tensor`, read at run time only if a shape tensor needs it."""

    tensor: Tensor
    index: int


def dims_of(x: Tensor) -> list:
    """`x`'s dimensions: static ones as ints, dynamic ones as DimOf (no layers emitted yet)."""
    return [int(d) if d >= 0 else DimOf(x, i) for i, d in enumerate(x.shape)]


def shape_tensor(parts: Sequence[Any]) -> Tensor:
    """A 1-D int64 shape tensor from ints, DimOf and int shape tensors (0-d or 1-D), in order.

    Runs of ints become one constant; runs of DimOf of one tensor become one gather from
    its shape (or the shape itself when the run is the whole shape).
    """
    net = network.current().network
    pieces: list[Tensor] = []
    shapes: dict[int, Tensor] = {}
    i, parts = 0, list(parts)
    while i < len(parts):
        p = parts[i]
        j = i + 1
        if isinstance(p, (int, np.integer)):
            while j < len(parts) and isinstance(parts[j], (int, np.integer)):
                j += 1
            pieces.append(constant(np.array(parts[i:j], dtype=np.int64), op="shape_const"))
        elif isinstance(p, DimOf):
            while j < len(parts) and isinstance(parts[j], DimOf) and parts[j].tensor is p.tensor:
                j += 1
            src = p.tensor
            if id(src) not in shapes:
                shapes[id(src)] = out(net.add_shape(src.trt), "shape")
            indices = [d.index for d in parts[i:j]]
            if indices == list(range(src.ndim)):
                pieces.append(shapes[id(src)])
            else:
                idx = constant(np.array(indices, dtype=np.int64), op="dim_index")
                pieces.append(out(net.add_gather(shapes[id(src)].trt, idx.trt, 0), "dims"))
        else:
            p = cast(p, "int64")
            if p.ndim == 0:
                layer = net.add_shuffle(p.trt)
                layer.reshape_dims = (1,)
                p = out(layer, "shape_item")
            pieces.append(p)
        i = j
    if len(pieces) == 1:
        return pieces[0]
    layer = net.add_concatenation([p.trt for p in pieces])
    layer.axis = 0
    return out(layer, "shape_concat")


def reshape_to(x: Tensor, parts: Sequence[Any], op: str = "reshape") -> Tensor:
    """Shuffle `x` to the shape `parts` (ints, -1, DimOf or int shape tensors), torch's view semantics.

    With at most one unknown entry (a tensor or -1) and the rest static, TensorRT infers it
    from the volume, so no shape arithmetic is emitted (the common dynamic-batch case).
    """
    unknown = [i for i, p in enumerate(parts) if not isinstance(p, (int, np.integer)) or p < 0]
    static = all(isinstance(p, (int, np.integer)) and p > 0 for i, p in enumerate(parts) if i not in unknown)
    static = static and not any(isinstance(p, Tensor) and p.shape != () and p.shape != (1,) for p in parts)
    # layers are executed in creation order, so the shape tensor must exist before the shuffle
    shape = None if len(unknown) <= 1 and static else shape_tensor(parts)
    layer = network.current().network.add_shuffle(x.trt)
    layer.zero_is_placeholder = False  # torch: 0 is a size, not "copy"
    if shape is None:
        layer.reshape_dims = tuple(-1 if i in unknown else int(p) for i, p in enumerate(parts))
    else:
        layer.set_input(1, shape.trt)
    return out(layer, op)
