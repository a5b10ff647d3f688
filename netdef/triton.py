"""A Triton Inference Server model repository from a saved engine (`netdef triton ENGINE -o repo/`).

Triton serves TensorRT plans through its TensorRT backend (`platform: "tensorrt_plan"`), which
scales one engine out over GPUs (instance groups) and machines, and batches requests together
(dynamic batching). The repository layout is Triton's:

    repo/<name>/config.pbtxt        the model configuration (Triton's ModelConfig, protobuf text)
    repo/<name>/<version>/model.plan        the engine, with netdef's sidecar beside it

Everything the configuration needs comes from the engine's sidecar (netdef.sidecar): input and
output names, dtypes and shapes, and the optimization profile. An engine whose inputs all have a
dynamic first dimension starting at 1 (and whose outputs all have a dynamic first dimension) is
batched by Triton: `max_batch_size` is the profile's largest batch, `dims` leave the batch out, and
dynamic batching is on, preferring the profile's opt batch. Any other engine gets
`max_batch_size: 0` and its full shapes. `max_batch_size=` overrides the guess (0 turns batching
off), for outputs whose first dimension is dynamic but not a batch (detections).

Triton's TensorRT backend is built on classic TensorRT (it links libnvinfer): it cannot load a
plan TensorRT-RTX built, and it loads a classic plan only when its TensorRT version is the one
that built it (or the plan is version-compatible). `write_repository` refuses a TensorRT-RTX plan
unless `allow_rtx=True` (docs/serving.md says what serves those).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Sequence

from netdef import __version__
from netdef.errors import NetdefError, shown
from netdef.fileio import atomic_file
from netdef.plan import load_plan, save_engine
from netdef.runtime.checks import identity

__all__ = ["TritonError", "Repository", "model_config", "write_repository"]

# netdef dtype -> Triton's DataType (model_config.proto); Triton has no float8
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int8": "TYPE_INT8",
              "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}


class TritonError(NetdefError):
    """The engine cannot become a Triton model as asked; says why and what to do."""


@dataclass
class Repository:
    """What `write_repository` wrote."""

    model: str
    config_path: str
    plan_path: str
    config: str  # the config.pbtxt text
    max_batch_size: int


def _name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip(".")
    if not name:
        raise TritonError(f"{text!r} gives no usable model name; pass name=")
    return name


def _require_fields(kind: str, t: dict | str, where: str) -> None:
    """The sidecar schema lets a tensor record less than a config needs (an output as a bare name,
    an input without dtype or profile); say which field of which tensor is missing."""
    if isinstance(t, str):
        raise TritonError(f"engine {where!r}: its sidecar records {kind} {shown(t)} by name only; Triton's "
                          "configuration needs its dtype and shape: rebuild it with netdef.build / netdef build")
    needed = ["dtype", "shape"]
    if kind == "input" and t.get("shape") and t["shape"][0] == -1:
        needed += ["min", "opt", "max"]  # a dynamic first dimension: the profile bounds Triton's batch
    missing = [f for f in needed if t.get(f) is None]
    if missing:
        raise TritonError(f"engine {where!r}: its sidecar records no {' or '.join(missing)} for {kind} "
                          f"{shown(t['name'])}, which Triton's configuration needs: rebuild it with "
                          "netdef.build / netdef build")


def _batch(inputs: Sequence[dict], outputs: Sequence[dict]) -> int:
    """The largest batch Triton may form, when the engine is batched along a leading dynamic dim, else 0."""
    if not inputs or not all(i["shape"] and i["shape"][0] == -1 and i["min"][0] <= 1 for i in inputs):
        return 0
    if not all(o["shape"] and o["shape"][0] == -1 for o in outputs):
        return 0
    return min(i["max"][0] for i in inputs)


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def model_config(metadata: dict, name: str, *, max_batch_size: int | None = None, instances: int = 1,
                 gpus: Sequence[int] | None = None, max_queue_delay_us: int = 100,
                 source: str = "") -> tuple[str, int]:
    """(config.pbtxt text, max_batch_size) for a plan described by its sidecar `metadata`."""
    inputs, outputs = metadata.get("inputs") or [], metadata.get("outputs") or []
    if not inputs or not outputs:
        raise TritonError(f"engine {source or name!r} has no sidecar listing its inputs and outputs "
                          "(a plan made outside netdef): build it with netdef.build / netdef build")
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for t in tensors:
            _require_fields(kind, t, source or name)
            if t["dtype"] not in DATA_TYPES:
                raise TritonError(f"{kind} {t['name']!r} has dtype {t['dtype']}, which Triton's model configuration "
                                  f"has no type for (it has {', '.join(sorted(DATA_TYPES))})")
    if instances < 1:
        raise TritonError(f"instances must be >= 1, got {instances}")
    guess = _batch(inputs, outputs)
    if max_batch_size is None:
        max_batch_size = guess
    elif max_batch_size > 0:
        if not all(i["shape"] and i["shape"][0] == -1 for i in inputs):
            raise TritonError(f"max_batch_size={max_batch_size}: Triton batches along the first dimension, "
                              "and not every input's first dimension is dynamic")
        top = min(i["max"][0] for i in inputs)
        if max_batch_size > top or any(i["min"][0] > 1 for i in inputs):
            raise TritonError(f"max_batch_size={max_batch_size}: the engine's profile takes batches of "
                              f"{max(i['min'][0] for i in inputs)} to {top}; Triton sends 1 to max_batch_size")
    elif max_batch_size < 0:
        raise TritonError(f"max_batch_size must be >= 0, got {max_batch_size}")
    batched = max_batch_size > 0

    def tensor(t: dict) -> list[str]:
        shape = t["shape"][1:] if batched else t["shape"]
        return ["  {", f"    name: {json.dumps(t['name'], ensure_ascii=False)}", f"    data_type: {DATA_TYPES[t['dtype']]}",
                f"    dims: {_dims(shape) if shape else '[ 1 ]'}"]
    lines = [f"# written by netdef {__version__} from {os.path.basename(source) or 'an engine'} "
             f"({metadata.get('backend', '?')} {metadata.get('backend_version', '?')})",
             f"name: {json.dumps(name)}", 'platform: "tensorrt_plan"', f"max_batch_size: {max_batch_size}"]
    for kind, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{kind} [")
        for k, t in enumerate(tensors):
            body = tensor(t)
            if not (t["shape"][1:] if batched else t["shape"]):  # a scalar: Triton wants dims [1] and a reshape
                body.append("    reshape: { shape: [ ] }")
            lines += body + ["  }" + ("," if k < len(tensors) - 1 else "")]
        lines.append("]")
    if batched:
        opt = min(i["opt"][0] for i in inputs)
        lines.append("dynamic_batching {")
        if 1 < opt <= max_batch_size:  # the batch TensorRT tuned its kernels for
            lines.append(f"  preferred_batch_size: [ {opt} ]")
        lines += [f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}", "}"]
    group = ["instance_group [", "  {", f"    count: {int(instances)}", "    kind: KIND_GPU"]
    if gpus:
        group.append(f"    gpus: {_dims(gpus)}")
    lines += group + ["  }", "]", ""]
    return "\n".join(lines), max_batch_size


def write_repository(engine: str | os.PathLike, repository: str | os.PathLike, name: str | None = None, *,
                     version: int = 1, max_batch_size: int | None = None, instances: int = 1,
                     gpus: Sequence[int] | None = None, max_queue_delay_us: int = 100,
                     allow_rtx: bool = False) -> Repository:
    """Write `<repository>/<name>/config.pbtxt` and `<name>/<version>/model.plan` for a saved engine."""
    engine = os.fspath(engine)
    plan = load_plan(engine)  # a missing, damaged or foreign file is an EngineError naming it
    meta = plan.metadata
    built_by = identity(plan)[0]
    if built_by == "tensorrt_rtx" and not allow_rtx:
        raise TritonError(f"{engine} is a TensorRT-RTX plan ({meta.get('backend_version', '')}); Triton's "
                          "tensorrt_plan platform runs classic TensorRT plans only, built by the TensorRT version "
                          "of the Triton release that serves them: rebuild it with classic TensorRT "
                          "(NETDEF_BACKEND=tensorrt) on the serving GPU's machine, or pass --allow-rtx to write "
                          "the repository anyway (docs/serving.md)")
    if version < 1:
        raise TritonError(f"version must be >= 1, got {version}")
    name = _name(name or os.path.splitext(os.path.basename(engine))[0])
    text, batch = model_config(meta, name, max_batch_size=max_batch_size, instances=instances, gpus=gpus,
                               max_queue_delay_us=max_queue_delay_us, source=engine)
    folder = os.path.join(os.fspath(repository), name)
    plan_path = os.path.join(folder, str(version), "model.plan")
    os.makedirs(os.path.dirname(plan_path), exist_ok=True)
    save_engine(plan, plan_path)  # the plan and its sidecar, atomically (netdef inspect reads them there)
    config_path = os.path.join(folder, "config.pbtxt")
    with atomic_file(config_path) as f:
        f.write(text.encode())
    return Repository(name, config_path, plan_path, text, batch)


def describe(repo: Repository) -> str:
    how = (f"batched up to {repo.max_batch_size} with dynamic batching" if repo.max_batch_size
           else "not batched by Triton (max_batch_size 0)")
    return f"wrote {repo.config_path} and {repo.plan_path}: model {repo.model!r}, {how}"


def parse_gpus(text: str) -> list[int]:
    try:
        gpus = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise TritonError(f"--gpus {text!r}: expected GPU indices such as 0,1") from None
    if not gpus or any(g < 0 for g in gpus):
        raise TritonError(f"--gpus {text!r}: expected GPU indices such as 0,1")
    return gpus
