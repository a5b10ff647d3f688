"""interpolate(): torch's resize modes mapped onto TensorRT's resize coordinate rules.

torch mode -> (TensorRT interpolation, coordinate transformation, nearest rounding):
  nearest        NEAREST, ASYMMETRIC (src = dst * in/out), FLOOR
  nearest-exact  NEAREST, HALF_PIXEL (src = (dst + .5) * in/out - .5), HALF_UP
  (bi/tri)linear LINEAR, HALF_PIXEL, or ALIGN_CORNERS when align_corners=True
  bicubic        CUBIC (A = -0.75, torch's), same coordinates as linear
With scale_factor (and recompute_scale_factor not True) torch maps coordinates with
1/scale_factor while TensorRT maps them with in/out sizes: the two agree exactly when
in * scale_factor is an integer, which is checked for static sizes (a fractional output
size is a clear error). Scales are passed through as `scales` so dynamic sizes work.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netdef import network
from netdef.functional._core import constant, out, shape_of, trt
from netdef.tensor import Tensor

# mode -> (InterpolationMode, spatial ranks torch accepts)
_MODES = {
    "nearest": ("NEAREST", (1, 2, 3)),
    "nearest-exact": ("NEAREST", (1, 2, 3)),
    "linear": ("LINEAR", (1,)),
    "bilinear": ("LINEAR", (2,)),
    "trilinear": ("LINEAR", (3,)),
    "bicubic": ("CUBIC", (2,)),
    "area": (None, (2,)),
}


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    net = network.current()
    t = trt()
    op = "interpolate"
    if mode not in _MODES:
        net.fail(f"{op} mode={mode!r} is not supported; use one of {', '.join(_MODES)}")
    kind, ranks = _MODES[mode]
    n = input.ndim - 2
    if n not in ranks:
        net.fail(f"{op} mode={mode!r} expects a {', '.join(str(r + 2) for r in ranks)}-D input, "
                 f"got shape {input.shape}")
    if (size is None) == (scale_factor is None):
        net.fail(f"{op} needs exactly one of size and scale_factor")
    if align_corners is not None and kind not in ("LINEAR", "CUBIC"):
        net.fail(f"{op} align_corners can only be set with linear, bilinear, trilinear or bicubic modes")
    if antialias:
        net.fail(f"{op} antialias=True is not supported")
    spatial = input.shape[2:]

    def as_n(v: Any, what: str) -> tuple:
        vals = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
        if len(vals) != n:
            net.fail(f"{op} {what} needs {n} values for a {n + 2}-D input, got {v!r}")
        return vals

    scales = None
    if scale_factor is not None:
        scales = tuple(float(s) for s in as_n(scale_factor, "scale_factor"))
        if any(s <= 0 for s in scales):
            net.fail(f"{op} scale_factor must be positive, got {scale_factor!r}")
        if recompute_scale_factor or mode == "area":
            if any(d < 0 for d in spatial):
                net.fail(f"{op} recompute_scale_factor=True needs static spatial dimensions, "
                         f"got shape {input.shape}")
            size, scales = tuple(math.floor(d * s) for d, s in zip(spatial, scales)), None
    if scales is not None and not align_corners and all(d >= 0 for d in spatial):
        if not all(float(d * s).is_integer() for d, s in zip(spatial, scales)):
            net.fail(f"{op} scale_factor={scale_factor!r} on spatial size {tuple(spatial)} gives a "
                     "fractional output size: torch then maps coordinates with 1/scale_factor, "
                     "TensorRT with in/out sizes; pass size= or recompute_scale_factor=True")
    if size is not None:
        size = tuple(int(s) for s in as_n(size, "size"))
        if any(s <= 0 for s in size):
            net.fail(f"{op} size must be positive, got {size}")
    if mode == "area":  # torch's area mode is adaptive average pooling
        from netdef.functional.pool import adaptive_avg_pool2d

        return adaptive_avg_pool2d(input, size)

    shape = None  # a runtime output shape when batch or channels are dynamic
    if scales is None and any(d < 0 for d in input.shape[:2]):
        idx = constant(np.array([0, 1], np.int64), op="batch_channel_index")
        lead = out(net.network.add_gather(shape_of(input).trt, idx.trt, 0), "batch_channel")
        tail = constant(np.array(size, np.int64), op="size")
        cat = net.network.add_concatenation([lead.trt, tail.trt])
        cat.axis = 0
        shape = out(cat, "out_shape")
    layer = net.network.add_resize(input.trt)
    if scales is not None:
        layer.scales = (1.0, 1.0) + scales
    elif shape is None:
        layer.shape = tuple(input.shape[:2]) + size
    else:
        layer.set_input(1, shape.trt)
    layer.resize_mode = getattr(t.InterpolationMode, kind)
    if mode == "nearest":
        layer.coordinate_transformation = t.ResizeCoordinateTransformation.ASYMMETRIC
        layer.nearest_rounding = t.ResizeRoundMode.FLOOR
    elif mode == "nearest-exact":
        layer.coordinate_transformation = t.ResizeCoordinateTransformation.HALF_PIXEL
        layer.nearest_rounding = t.ResizeRoundMode.HALF_UP
    else:
        layer.coordinate_transformation = (t.ResizeCoordinateTransformation.ALIGN_CORNERS if align_corners
                                           else t.ResizeCoordinateTransformation.HALF_PIXEL)
        if kind == "CUBIC":
            layer.cubic_coeff = -0.75
            layer.exclude_outside = False
    return out(layer, op)


__all__ = ["interpolate"]
