"""Atomic file writes, shared by weights export and engine saving.

A reader never sees a half-written file and a failed write leaves nothing behind:
data goes to a temp file beside the target, is fsynced, then renamed over it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A temp file beside `path`, renamed over it only after a complete, synced write."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".netdef-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make the file private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
