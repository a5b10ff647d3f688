"""Building blocks shared by every op: constants, casts, shape tensors, layer output."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef import backend, dtypes, network
from netdef.errors import user_frame
from netdef.tensor import Tensor


def trt():
    return backend.trt()


def out(layer: Any, op: str, index: int = 0) -> Tensor:
    """Register `layer` with the active network (naming, error checks) and wrap output `index`."""
    network.current().add(layer, op)
    return Tensor(layer.get_output(index), origin=user_frame())


def outs(layer: Any, op: str) -> list[Tensor]:
    network.current().add(layer, op)
    origin = user_frame()
    return [Tensor(layer.get_output(i), origin=origin) for i in range(layer.num_outputs)]


def constant(value: Any, dtype: Any = None, op: str = "constant") -> Tensor:
    """A constant layer holding `value` (numpy array, Parameter, or Python number)."""
    net = network.current()
    arr = value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value
    arr = np.asarray(arr)
    if dtype is None and arr.dtype == np.float64:
        dtype = net.dtype
    if dtype is None and arr.dtype == np.int64 and not isinstance(value, np.ndarray):
        dtype = "int32"
    weights = net.weights(arr, dtype)
    layer = net.network.add_constant(tuple(arr.shape), weights)
    return out(layer, op)


def to_tensor(value: Any, like: Tensor | None = None, dtype: Any = None) -> Tensor:
    """Tensors pass through; Parameters, arrays and numbers become constants.

    Python numbers take the dtype of `like` (torch's type promotion for scalars).
    """
    if isinstance(value, Tensor):
        return value
    if dtype is None and like is not None and isinstance(value, (int, float, bool, np.number)):
        dtype = like.dtype
    if dtype is None and hasattr(value, "data") and not isinstance(value, np.ndarray):
        arr = np.asarray(value.data)
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


def tuple_n(v: Any, n: int) -> tuple:
    """torch's _pair/_triple: an int becomes (v,)*n, a sequence stays as is."""
    if isinstance(v, Sequence):
        if len(v) != n:
            raise ValueError(f"expected {n} values, got {tuple(v)}")
        return tuple(v)
    return (v,) * n
