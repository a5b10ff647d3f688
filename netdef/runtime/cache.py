"""TensorRT-RTX's runtime cache: kernels it JIT-compiles for the actual GPU, kept beside the engine
(`<engine>.runtime_cache`) so the next process skips the compilation.

Written atomically, at most once per SAVE_EVERY new input-shape signatures (each may compile
new kernels), and when the engine is closed, garbage-collected or the process exits; never
once per call. A process killed outright loses what it compiled since the last write.
"""
from __future__ import annotations

import os
import stat
import threading
import warnings
from typing import Any

from netdef.errors import EngineError
from netdef.fileio import atomic_file

SUFFIX = ".runtime_cache"
SAVE_EVERY = 8  # new input-shape signatures between writes


class RuntimeCache:
    """One engine's IRuntimeCache, shared by every thread's runtime config (TensorRT-RTX only)."""

    def __init__(self, engine: Any, path: str | None) -> None:
        blob = read(path) if path else None
        self.config = engine.create_runtime_config()  # owns the cache: keep it alive
        self.cache = self.config.create_runtime_cache()
        self.path = path
        self.seen: set[tuple] = set()  # every input-shape signature run so far, by any thread
        self.pending = 0  # new shape signatures since the last write
        self.writes = 0
        self._lock = threading.Lock()
        if blob is not None:
            # False means it was made for another GPU, driver or version: start empty, overwrite later
            self.cache.deserialize(blob)

    def attach(self, config: Any) -> None:
        config.set_runtime_cache(self.cache)

    def note_shape(self, signature: tuple) -> None:
        """Called after a call whose signature its thread's context had not bound lately (contexts
        keep only a few); counts signatures no thread ran before, and writes every SAVE_EVERY of them."""
        with self._lock:
            if signature in self.seen:
                return
            self.seen.add(signature)
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
            with atomic_file(self.path) as f:
                f.write(blob)
            self.pending = 0  # only now: a failed write stays due and is tried again
            self.writes += 1
        return True

    def save_quietly(self) -> None:
        """For finalizers and exit: a failed write warns instead of raising."""
        try:
            self.save()
        except OSError as exc:
            warnings.warn(f"could not write the TensorRT-RTX runtime cache {self.path!r}: {exc}", stacklevel=1)


def read(path: str) -> bytes | None:
    """The cache file's bytes, None if there is none yet; an unreadable one is an EngineError naming it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a directory cannot be read
            raise EngineError(f"TensorRT-RTX runtime cache {path!r} is not a regular file: remove it")
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EngineError(f"cannot read the TensorRT-RTX runtime cache {path!r}: {exc.strerror or exc}; "
                          "remove it (it is rebuilt) or make it readable") from None
