"""Hugging Face's sharded safetensors checkpoints: `model.safetensors.index.json`.

The index is `{"metadata": {...}, "weight_map": {tensor name: shard file name}}`, the shards
sit beside it. Each shard is memory-mapped (netdef.weights.safetensors); the result holds
exactly the names the map lists, each taken from the shard the map names, and every
inconsistency (a missing shard, a name not in its shard) names the file and key.
"""
from __future__ import annotations

import json
import os

import numpy as np

from netdef.errors import WeightsError, shown
from netdef.weights import safetensors as _safetensors

INDEX_SUFFIX = ".safetensors.index.json"


def read_index(path: str) -> dict[str, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except OSError as exc:
        raise WeightsError(f"cannot read sharded checkpoint index {path!r}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, '[' * 100000
        detail = str(exc)[:200] if isinstance(exc, ValueError) else "nested too deeply"
        raise WeightsError(f"{path}: not a valid JSON sharded checkpoint index ({detail})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightsError(f"{path}: a sharded checkpoint index needs a \"weight_map\" of tensor name -> shard file")
    folder = os.path.dirname(os.path.abspath(path))
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(shard, []).append(key)
    out: dict[str, np.ndarray] = {}
    for shard, keys in shards.items():
        shard_path = os.path.join(folder, shard)
        if os.path.basename(shard) != shard or not os.path.isfile(shard_path):
            raise WeightsError(f"{path}: shard {shown(shard)} (holding {shown(keys[0])} and {len(keys) - 1} more) "
                               f"is not a file beside the index")
        arrays = _safetensors.read(shard_path)
        for key in keys:
            if key not in arrays:
                raise WeightsError(f"{shard_path}: the index maps {shown(key)} to this shard, which does not hold it")
            out[key] = arrays[key]
    return out
