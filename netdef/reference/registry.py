"""The one registry of reference semantics, and what every builder reads TensorRT through.

A builder runs once per layer at compile time: it reads the layer's attributes and
weights through TensorRT's API and returns `fn(*inputs) -> Tensor | tuple[Tensor, ...]`
that does only tensor math. Floating inputs reach `fn` already in the compute dtype
and outputs are cast to the tensor's dtype by `program.py` (the one place of the
dtype policy), so builders never round or cast for precision's sake.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from netdef import dtypes
from netdef.arrays import weights_array
from netdef.errors import RunnerError

LAYERS: dict[str, Callable[[Any, "Context"], Callable]] = {}


def register(*kinds: str) -> Callable:
    """Register a builder for TensorRT layer types; each type has exactly one builder."""
    def deco(builder: Callable) -> Callable:
        for kind in kinds:
            if kind in LAYERS:
                raise RuntimeError(f"layer type {kind} already has a reference builder: {LAYERS[kind].__module__}")
            LAYERS[kind] = builder
        return builder
    return deco


# ---- reading what TensorRT holds ---------------------------------------------------------------
def bits(mask: int, rank: int) -> list[int]:
    """Axes of a TensorRT axes bitmask (bit i = axis i)."""
    return [a for a in range(rank) if mask >> a & 1]


def one_axis(mask: int, rank: int) -> int:
    """The axis of a bitmask that must select exactly one (softmax, top-k)."""
    axes = bits(mask, rank)
    if len(axes) != 1:
        raise RunnerError(f"axes bitmask {mask:#b} selects axes {axes} of a rank-{rank} input; "
                          "this layer takes exactly one axis")
    return axes[0]


def flat_pad(pre, post) -> list[int]:
    """Per-dimension (pre, post) padding in F.pad's order: last dimension first, (pre, post) pairs."""
    return [p for pair in zip(reversed(pre), reversed(post)) for p in pair]


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32 (10 explicit mantissa bits), to nearest with ties away from
    zero, as tensor cores convert float32 operands (PTX cvt.rna.tf32.f32)."""
    if x.dtype != torch.float32:
        return x
    bits_ = x.contiguous().view(torch.int32)
    rounded = ((bits_ + 0x1000) & ~0x1FFF).view(torch.float32)
    return torch.where(torch.isfinite(x), rounded, x)


class Context:
    """What builders need from the compiler: device, compute dtype, weight conversion."""

    def __init__(self, device: torch.device, float_dtype: torch.dtype, storage: Callable,
                 tf32: bool = False) -> None:
        self.device = device
        self.float_dtype = float_dtype
        self.storage = storage  # TensorRT DataType -> torch dtype values of that type are held in
        self.tf32 = tf32  # float32 multiply operands are rounded to TF32 (see program.py)

    def weights(self, w: Any, shape: tuple | None = None, operand: bool = False) -> torch.Tensor | None:
        """TensorRT weights as a torch tensor; floating weights in the compute dtype (exact).

        operand=True marks a multiplication operand (a convolution kernel), which is rounded to
        TF32 when the program models TF32 math."""
        arr = weights_array(w)
        if arr is None:
            return None
        if dtypes.is_floating(arr.dtype):
            arr = arr.astype(np.float64 if self.float_dtype == torch.float64 else np.float32, copy=False)
        out = torch.from_numpy(np.require(arr, requirements="C")).to(self.device)
        if operand and self.tf32:
            out = round_tf32(out)
        return out.reshape(shape) if shape is not None else out


def input_or_none(layer: Any, i: int) -> Any:
    return layer.get_input(i) if i < layer.num_inputs else None


def input_rank(layer: Any, i: int = 0) -> int:
    return len(layer.get_input(i).shape)
