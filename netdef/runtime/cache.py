"""TensorRT-RTX's runtime cache: kernels it JIT-compiles for the actual GPU, kept beside the engine
(`<engine>.runtime_cache`) so the next process skips the compilation.

Written atomically, at most once per SAVE_EVERY new input-shape signatures (each may compile
new kernels), and when the engine is closed, garbage-collected or the process exits; never
once per call. A process killed outright loses what it compiled since the last write.
"""
from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from netdef.fileio import atomic_file

SUFFIX = ".runtime_cache"
SAVE_EVERY = 8  # new input-shape signatures between writes


class RuntimeCache:
    """One engine's IRuntimeCache, shared by every thread's runtime config (TensorRT-RTX only)."""

    def __init__(self, engine: Any, path: str | None) -> None:
        self.config = engine.create_runtime_config()  # owns the cache: keep it alive
        self.cache = self.config.create_runtime_cache()
        self.path = path
        self.pending = 0  # new shape signatures since the last write
        self.writes = 0
        self._lock = threading.Lock()
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                blob = f.read()
            # False means it was made for another GPU, driver or version: start empty, overwrite later
            self.cache.deserialize(blob)

    def attach(self, config: Any) -> None:
        config.set_runtime_cache(self.cache)

    def note_new_shape(self) -> None:
        """Called after a call with a new input-shape signature; writes every SAVE_EVERY of them."""
        with self._lock:
            self.pending += 1
            due = self.pending >= SAVE_EVERY
        if due:
            self.save()

    def save(self) -> bool:
        """Write the cache now if anything new may be in it; True if written."""
        if self.path is None:
            return False
        with self._lock:
            if not self.pending:
                return False
            blob = bytes(self.cache.serialize())
            self.pending = 0
            with atomic_file(self.path) as f:
                f.write(blob)
            self.writes += 1
        return True

    def save_quietly(self) -> None:
        """For finalizers and exit: a failed write warns instead of raising."""
        try:
            self.save()
        except OSError as exc:
            warnings.warn(f"could not write the TensorRT-RTX runtime cache {self.path!r}: {exc}", stacklevel=1)
