"""Reference semantics: resize and grid sample."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from netdef.errors import RunnerError
from netdef.reference.registry import register


def _cubic_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    """Keys cubic convolution weights of the taps at floor-1 .. floor+2 for fraction t."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@register("RESIZE")
def resize(layer, ctx):
    mode = layer.resize_mode.name
    transform = layer.coordinate_transformation.name
    rounding = layer.nearest_rounding.name
    upper = layer.selector_for_single_pixel.name == "UPPER"
    cubic_a, exclude_outside = layer.cubic_coeff, layer.exclude_outside
    scales = list(layer.scales)
    # with a shape-tensor input the layer has no static shape (reading it logs a TensorRT error)
    dynamic = layer.num_inputs > 1 and layer.get_input(1) is not None
    static_shape = None if scales or dynamic or layer.shape is None else list(layer.shape)
    cache: dict[tuple, tuple] = {}  # (in, out, scale) -> indices and weights

    def source(i: int, o: int, scale: float) -> torch.Tensor:
        """Input coordinate of each output index (float64), by the coordinate transformation."""
        out = torch.arange(o, dtype=torch.float64)
        if o == 1 and upper:
            return torch.zeros(1, dtype=torch.float64)
        if transform == "ALIGN_CORNERS":
            return out * ((i - 1) / (o - 1)) if o > 1 else torch.zeros(1, dtype=torch.float64)
        if transform == "ASYMMETRIC":
            return out * (i / o)
        if transform == "HALF_PIXEL":
            return (out + 0.5) * (i / o) - 0.5
        if transform == "HALF_PIXEL_SYMMETRIC":  # ONNX half_pixel_symmetric (classic TensorRT >= 10.x)
            return i / 2 * (1 - o / (scale * i)) + (out + 0.5) / scale - 0.5
        raise RunnerError(f"resize coordinate transformation {transform} is not supported")

    def taps(i: int, o: int, scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        key = (i, o, scale)
        if key not in cache:
            x = source(i, o, scale)
            if mode == "NEAREST":
                r = {"FLOOR": torch.floor, "CEIL": torch.ceil,
                     "HALF_UP": lambda v: torch.floor(v + 0.5), "HALF_DOWN": lambda v: torch.ceil(v - 0.5)}[rounding]
                cache[key] = ([r(x).long().clamp(0, i - 1)], None)
            else:
                base = torch.floor(x)
                t = x - base
                if mode == "LINEAR":
                    offsets, weights = [0, 1], [1 - t, t]
                else:
                    offsets, weights = [-1, 0, 1, 2], _cubic_weights(t, cubic_a)
                idx = [base.long() + k for k in offsets]
                if mode == "CUBIC" and exclude_outside:
                    weights = [w * ((j >= 0) & (j < i)) for w, j in zip(weights, idx)]
                    total = sum(weights)
                    weights = [w / total for w in weights]
                cache[key] = ([j.clamp(0, i - 1) for j in idx], weights)
        return cache[key]

    def fn(x, target=None):
        if target is not None and target.is_floating_point():
            factors = target.tolist()
        elif target is not None:
            factors, out = None, target.tolist()
        else:
            factors, out = scales or None, static_shape
        if factors is not None:
            out = [int(math.floor(d * f)) for d, f in zip(x.shape, factors)]
        for axis, (i, o) in enumerate(zip(x.shape, out)):
            if i == o:
                continue
            idx, weights = taps(i, o, factors[axis] if factors else o / i)
            if weights is None:
                x = x.index_select(axis, idx[0].to(x.device))
                continue
            shape = [-1 if d == axis else 1 for d in range(x.ndim)]
            acc = None
            for j, w in zip(idx, weights):
                term = x.index_select(axis, j.to(x.device)) * w.to(x.dtype).to(x.device).reshape(shape)
                acc = term if acc is None else acc + term
            x = acc
        return x
    return fn


@register("GRID_SAMPLE")
def grid_sample(layer, ctx):
    mode = {"NEAREST": "nearest", "LINEAR": "bilinear", "CUBIC": "bicubic"}[layer.interpolation_mode.name]
    padding = {"FILL": "zeros", "CLAMP": "border", "REFLECT": "reflection"}.get(layer.sample_mode.name)
    if padding is None:
        raise RunnerError(f"grid sample mode {layer.sample_mode.name} is not supported")
    align = layer.align_corners
    return lambda x, grid: F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=align)
