"""INT8 / FP8 post-training quantization by explicit Q/DQ layers, calibrated with the reference runner.

TensorRT-RTX and strongly typed TensorRT take reduced precision only from the graph: an
IQuantizeLayer (float -> int8/fp8) followed by an IDequantizeLayer (back to float) around an
operand tells the builder it may run that convolution or matrix multiply in 8 bits. So:

* `calibrate(model, batches)` traces the model in float32, runs the reference runner over the
  batches and records the range of each conv/linear module's INPUT activation; the result is a
  `QuantConfig` (module path -> activation scale), saved as JSON next to the weights.
* `netdef.trace(model, x, quantization=config)` makes every conv/linear op of a configured module
  call `operands()`, the one place Q/DQ layers are emitted: the input gets the calibrated
  per-tensor scale, the weight becomes a constant -> Q -> DQ with per-output-channel scales
  (max|w| / qmax along axis 0), feeding the layer's kernel input.

Scales are float32 constants (full precision whatever the activation dtype); zero points are
never set (symmetric quantization, as TensorRT requires).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from netdef import dtypes, network
from netdef.errors import QuantizationError, TraceError
from netdef.feeds import input_names, to_torch
from netdef.functional._core import constant, out
from netdef.tensor import Tensor

# largest representable magnitude of each quantized type: scale = range / QMAX
QMAX: dict[str, float] = {"int8": 127.0, "float8_e4m3fn": 448.0}
HISTOGRAM_BINS = 2048


@dataclass
class QuantConfig:
    """Per-module activation scales (module path -> scale of the module's input) and the 8-bit type."""

    scales: dict[str, float] = field(default_factory=dict)
    dtype: str = "int8"

    def __post_init__(self) -> None:
        try:
            self.dtype = dtypes.name(self.dtype)
        except TypeError:
            self.dtype = str(self.dtype)
        if self.dtype not in QMAX:
            raise QuantizationError(f"quantization dtype must be one of {sorted(QMAX)}, got {self.dtype!r}")
        bad = {p: s for p, s in self.scales.items()
               if not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0}
        if bad:
            path, s = next(iter(bad.items()))
            raise QuantizationError(f"activation scale of module {path!r} must be a finite number > 0, "
                                    f"got {s!r}")
        self.scales = {str(p): float(s) for p, s in self.scales.items()}

    @property
    def qmax(self) -> float:
        return QMAX[self.dtype]

    def to_json(self) -> str:
        return json.dumps({"dtype": self.dtype, "scales": self.scales}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> "QuantConfig":
        where = f" in {source}" if source else ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuantizationError(f"quantization config{where} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("scales"), dict) or "dtype" not in data:
            raise QuantizationError(f"quantization config{where} must be an object with 'dtype' and "
                                    "'scales' (module path -> activation scale)")
        try:
            return cls(dict(data["scales"]), data["dtype"])
        except QuantizationError as exc:
            raise QuantizationError(f"quantization config{where}: {exc}") from None

    def save(self, path: str | os.PathLike) -> str:
        """Write the config as JSON atomically (a reader never sees half a file)."""
        from netdef.fileio import atomic_file

        with atomic_file(path) as f:
            f.write(self.to_json().encode())
        return os.fspath(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "QuantConfig":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise QuantizationError(f"cannot read quantization config {os.fspath(path)}: {exc}") from None
        return cls.from_json(text, source=os.fspath(path))


# ---- graph: the one place Q/DQ layers are emitted ----------------------------------------------------
def _qdq(x: Tensor, scale: np.ndarray, axis: int, qtype: str, what: str, dtype: str) -> Tensor:
    """x -> Quantize(scale) to `qtype` -> Dequantize(scale) to `dtype`; per-channel along `axis` if 1-D."""
    net = network.current()
    t = net.network
    s = constant(np.asarray(scale, np.float32), "float32", op=f"{what}_scale")
    q = t.add_quantize(x.trt, s.trt, dtypes.to_trt(qtype))
    if q is not None and s.ndim:
        q.axis = axis
    qx = out(q, f"{what}_quantize")
    dq = t.add_dequantize(qx.trt, s.trt, dtypes.to_trt(dtype))
    if dq is not None and s.ndim:
        dq.axis = axis
    return out(dq, f"{what}_dequantize")


def weight_scales(weight: np.ndarray, axis: int, qmax: float) -> np.ndarray:
    """Per-output-channel scales max|w| / qmax (float32); an all-zero channel gets scale 1."""
    w = np.abs(np.asarray(weight, np.float32))
    amax = w.max(axis=tuple(d for d in range(w.ndim) if d != axis))
    return np.where(amax > 0, amax / np.float32(qmax), np.float32(1)).astype(np.float32)


def operands(x: Tensor, weight: np.ndarray, axis: int = 0) -> tuple[Tensor, Tensor | None]:
    """The activation and weight a conv/linear op should use in the current module.

    Outside a quantized module: (x, None), and the op keeps its weights as layer Weights.
    Inside one: (Q/DQ of x with the module's calibrated per-tensor scale, Q/DQ of the float32
    weight constant with per-channel scales along `axis`), both dequantized to x's dtype.
    """
    net = network.current()
    config: QuantConfig | None = net.quantization
    if config is None or net.scope not in config.scales:
        return x, None
    xq = _qdq(x, np.float32(config.scales[net.scope]), 0, config.dtype, "input", x.dtype)
    w = constant(np.asarray(weight, np.float32), "float32", op="weight")
    wq = _qdq(w, weight_scales(weight, axis, config.qmax), axis, config.dtype, "weight", x.dtype)
    return xq, wq


def check_applied(net: Any) -> None:
    """Every module the network's config names must have quantized a conv/linear op (trace checks
    that the paths exist); otherwise the config would silently do nothing there."""
    config: QuantConfig | None = net.quantization
    for path in config.scales if config is not None else ():
        if not any(name.startswith(f"{path}/input_quantize") for name in net.module_layers.get(path, [])):
            raise TraceError(f"module {path!r} is in the quantization config but ran no convolution "
                                    "or linear op with constant weights (transposed convolutions are not "
                                    "quantized)")


# ---- calibration -----------------------------------------------------------------------------------
class _Range:
    """Streaming statistics of |x| for one module input: the running max and, for percentiles, a
    histogram of HISTOGRAM_BINS bins over [0, bins * width). When a batch exceeds the range, bins
    are merged in pairs (width doubles), which is exact, so no batch has to be kept."""

    def __init__(self, histogram: bool) -> None:
        self.amax = 0.0
        self.count = 0
        self.histogram = histogram
        self.hist: np.ndarray | None = None
        self.width = 0.0
        self.zeros_before = 0  # elements seen while every value was 0 (no histogram yet)

    def update(self, x: Any) -> None:
        import torch

        a = x.detach().float().abs().reshape(-1)
        if a.numel() == 0:
            return
        if not bool(torch.isfinite(a).all()):
            raise QuantizationError("non-finite activation")
        m = float(a.max())
        self.amax, self.count = max(self.amax, m), self.count + a.numel()
        if not self.histogram:
            return
        if self.hist is None:
            if m == 0:
                self.zeros_before += a.numel()
                return
            self.width, self.hist = m / HISTOGRAM_BINS, np.zeros(HISTOGRAM_BINS)
        while m > self.width * HISTOGRAM_BINS:
            merged = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist = np.concatenate([merged, np.zeros(HISTOGRAM_BINS - merged.size)])
            self.width *= 2
        hi = self.width * HISTOGRAM_BINS
        self.hist += torch.histc(a, HISTOGRAM_BINS, 0.0, hi).double().numpy()

    def range(self, method: str, percentile: float) -> float:
        if method == "max" or self.hist is None:
            return self.amax
        cum = self.zeros_before + np.cumsum(self.hist)
        i = int(np.searchsorted(cum, percentile / 100.0 * self.count))
        return min((min(i, HISTOGRAM_BINS - 1) + 1) * self.width, self.amax)


def _input_names(batch: Any, inputs: Sequence[Any] | None) -> list[str]:
    if inputs:
        return [i.name for i in inputs]
    if isinstance(batch, Mapping):
        return list(batch)
    return input_names(len(batch) if isinstance(batch, (tuple, list)) else 1)


def _feeds(batch: Any, names: Sequence[str], index: int) -> dict:
    """One batch as {input name: torch tensor}; float64 becomes float32 (TensorRT has no float64)."""
    if isinstance(batch, Mapping):
        missing = [n for n in names if n not in batch]
        if missing or len(batch) != len(names):
            raise QuantizationError(f"calibration batch {index} has inputs {sorted(batch)} but the model's "
                                    f"inputs are {list(names)}")
        values = [batch[n] for n in names]
    else:
        values = list(batch) if isinstance(batch, (tuple, list)) else [batch]
        if len(values) != len(names):
            raise QuantizationError(f"calibration batch {index} has {len(values)} arrays but the model "
                                    f"has {len(names)} inputs {list(names)}")
    return dict(zip(names, to_torch(values)))


def calibrate(model: Any, calibration_batches: Iterable[Any], inputs: Sequence[Any] | None = None,
              method: str = "max", percentile: float = 99.99,
              modules: type | Sequence[type] | Callable[[str, Any], bool] | None = None,
              dtype: Any = "int8") -> QuantConfig:
    """Activation scales for the conv/linear modules of `model`, from float32 reference runs.

    calibration_batches: an iterable (consumed once, so a generator works) of batches, each a
    tuple of arrays matching the model's inputs, a dict input name -> array, or one array for a
    one-input model; numpy or torch. inputs: netdef.Input specs (default: one static spec per
    distinct batch shape, named like compare() names them: "x", or "input0", "input1", ...).
    method "max" takes max|x| over all batches; "percentile" takes the given percentile of |x|
    from a streaming histogram (2048 bins, resolution max|x| / 2048), which ignores outliers.
    modules: the module classes to quantize (default netdef.nn Conv1d/2d/3d and Linear) or a
    predicate (path, module) -> bool. Scale = range / 127 for int8, range / 448 for float8_e4m3fn;
    a module whose input was always 0 gets scale 1 / qmax. Modules that never ran are left out.
    """
    from netdef import nn, reference
    from netdef.network import Input
    from netdef.trace import trace

    if method not in ("max", "percentile"):
        raise QuantizationError(f"calibration method must be 'max' or 'percentile', got {method!r}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise QuantizationError(f"percentile must be in (0, 100], got {percentile}")
    qtype = QuantConfig({}, dtype).dtype
    if modules is None:
        modules = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    if callable(modules) and not isinstance(modules, type):
        select = modules
    else:  # a class or a sequence of classes
        kinds = (modules,) if isinstance(modules, type) else tuple(modules)

        def select(_path: str, m: Any) -> bool:
            return isinstance(m, kinds)
    chosen = [path for path, m in model.named_modules() if path and select(path, m)]
    if not chosen:
        raise QuantizationError(f"no module of {type(model).__name__} matches `modules`, so there is "
                                "nothing to calibrate")
    stats = {path: _Range(method == "percentile") for path in chosen}
    nets: dict[tuple, Any] = {}
    names: list[str] | None = None
    count = 0
    for index, batch in enumerate(calibration_batches):
        names = names or _input_names(batch, inputs)
        feeds = _feeds(batch, names, index)
        key = () if inputs else tuple((tuple(v.shape), str(v.dtype)) for v in feeds.values())
        if key not in nets:
            specs = list(inputs) if inputs else [Input(n, tuple(v.shape), dtypes.name(v.dtype))
                                                 for n, v in feeds.items()]
            nets[key] = trace(model, *specs, dtype="float32")
        net = nets[key]
        values = reference.run(net, feeds, all_tensors=True)
        for path in chosen:
            for call in net.module_inputs.get(path, []):
                if not call:
                    continue
                if call[0] not in values:
                    raise QuantizationError(f"the input {call[0]!r} of module {path!r} was not computed "
                                            "by the reference runner")
                try:
                    stats[path].update(values[call[0]])
                except QuantizationError as exc:
                    raise QuantizationError(f"calibration batch {index}: {exc} at the input of module "
                                            f"{path!r}") from None
        count += 1
    if count == 0:
        raise QuantizationError("calibrate() got no calibration batches; pass at least one batch of "
                                "representative inputs")
    qmax = QMAX[qtype]
    scales = {}
    for path in chosen:
        s = stats[path]
        if s.count:
            r = s.range(method, percentile)
            scales[path] = (r if r > 0 else 1.0) / qmax
    return QuantConfig(scales, qtype)


__all__ = ["QMAX", "QuantConfig", "QuantizationError", "calibrate", "operands", "weight_scales"]
