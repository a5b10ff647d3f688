"""The CUDA device engines run on (found through torch, else cuda-python; never pycuda), and
whether the active backend and a plan's targets allow it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from netdef import backend
from netdef.errors import EngineError, shown
from netdef.optional import install_hint

# TensorRT-RTX engines built with the default targets skip Turing (documented in its support matrix)
_RTX_DEFAULT_EXCLUDES = ((7, 5),)


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    capability: tuple[int, int]
    via: str  # "torch" or "cuda-python"

    def __str__(self) -> str:
        return f"cuda:{self.index} {self.name} (compute capability {self.capability[0]}.{self.capability[1]})"


def cudart() -> Any:
    """cuda-python's runtime module (for machines without torch)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


def cuda_check(result: Any, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        msg = cudart().cudaGetErrorString(err)[1]
        raise EngineError(f"{what} failed: {msg.decode() if isinstance(msg, bytes) else msg}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def cuda_device(index: int | None = None) -> Device:
    """The CUDA device engines run on, found through torch or else cuda-python."""
    reasons = []
    try:
        import torch
    except ImportError:
        reasons.append("torch is not installed")
    else:
        if torch.cuda.is_available():
            i = torch.cuda.current_device() if index is None else index
            return Device(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)), "torch")
        reasons.append(f"torch {torch.__version__} sees no CUDA device"
                       + ("" if torch.version.cuda else " (it is a CPU-only build)"))
    try:
        rt = cudart()
    except ImportError:
        reasons.append("cuda-python is not installed")
    else:
        try:
            count = cuda_check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
            if count:
                i = index or 0
                prop = cuda_check(rt.cudaGetDeviceProperties(i), "cudaGetDeviceProperties")
                name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
                return Device(i, name, (prop.major, prop.minor), "cuda-python")
            reasons.append("cuda-python sees no CUDA device")
        except EngineError as exc:
            reasons.append(f"cuda-python: {exc}")
    raise EngineError("running an engine needs an NVIDIA GPU with a working driver, seen through torch "
                      "or cuda-python; here " + "; ".join(reasons) + ". Install an NVIDIA driver and either "
                      f"a CUDA build of torch ({install_hint('torch')}) or cuda-python (pip install "
                      "cuda-python). Building engines and the reference runner need no GPU.")


def supported_capabilities() -> tuple[tuple[int, int], ...] | None:
    """Compute capabilities the active backend runs on, when it says (TensorRT-RTX lists them)."""
    if not backend.capabilities().compute_capabilities:
        return None
    members = backend.trt().ComputeCapability.__members__
    found = [(int(m.group(1)[:-1]), int(m.group(1)[-1])) for n in members if (m := re.fullmatch(r"SM(\d+)", n))]
    return tuple(sorted(found)) or None


def _fmt_ccs(ccs: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}.{b}" for a, b in ccs)


def parse_cc(value: Any) -> tuple[int, int]:
    """'8.6', 'SM86', [8, 6] -> (8, 6); anything else is an EngineError (the sidecar schema lets
    only these through, so this is a guard, not the check)."""
    try:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return int(value[0]), int(value[1])
        text = str(value).upper().removeprefix("SM")
        if "." in text:
            a, b = text.split(".", 1)
            return int(a), int(b)
        if len(text) >= 2:
            return int(text[:-1]), int(text[-1])
    except (TypeError, ValueError):
        pass
    raise EngineError(f"{shown(value)} is not a compute capability such as '8.6', 'SM86' or [8, 6]")


def check_device(device: Device, meta: Mapping[str, Any], where: str) -> None:
    """The device must be one the backend runs on, and one the plan was built for."""
    supported = supported_capabilities()
    if supported is not None and device.capability not in supported:
        raise EngineError(
            f"{device} cannot run {backend.name()} {backend.version()} engines: it supports compute "
            f"capability {_fmt_ccs(supported)} only (its RTX/GeForce/workstation targets; data-center "
            f"GPUs such as H100/H200 are 9.0). Install classic TensorRT (`pip install tensorrt`) and "
            f"rebuild the engine with NETDEF_BACKEND=tensorrt, or run on a supported GPU")
    if not meta or meta.get("backend") != backend.name():
        return  # a plan made outside netdef records no targets; another backend's was refused already
    if backend.capabilities().compute_capabilities:  # the plan lists its targets
        listed = meta.get("compute_capabilities") or []
        if "CURRENT" in listed:  # the GPU that built it, which the sidecar does not name: TensorRT decides
            return
        targets = [parse_cc(c) for c in listed]
        default = not targets
        if default and supported is not None:
            targets = [c for c in supported if c not in _RTX_DEFAULT_EXCLUDES]
        if targets and device.capability not in targets:
            hint = (" (the default targets leave out Turing; rebuild targeting compute capability "
                    f"{device.capability[0]}.{device.capability[1]})" if default else "; rebuild it for this GPU")
            raise EngineError(f"engine {where} targets compute capability {_fmt_ccs(targets)} but this "
                              f"GPU is {device}{hint}")
    else:  # the plan runs on the building GPU's architecture only
        gpu = meta.get("gpu") or {}
        if gpu.get("compute_capability") and parse_cc(gpu["compute_capability"]) != device.capability:
            raise EngineError(f"engine {where} was built on {gpu.get('name', 'a GPU')} (compute capability "
                              f"{gpu['compute_capability']}) but this GPU is {device}; classic TensorRT "
                              f"engines run only on the GPU architecture that built them: rebuild it here")


