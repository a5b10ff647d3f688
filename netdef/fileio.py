"""Atomic file writes, shared by weights export, engine saving and caches.

A reader never sees a half-written file and a failed write leaves nothing behind:
data goes to a temp file beside the target, is fsynced, then renamed over it.
A process killed mid-write cannot clean up, so every temp file's name says whose it
is (`.<target>.<host>-<pid>-<random>.netdef-tmp`); the next write to the same target
removes the ones whose writer is gone (`remove_stale_temporaries`).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import time
from typing import BinaryIO, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)

TMP_SUFFIX = ".netdef-tmp"
# a temp file from another host (a shared file system) is stale only once this old
FOREIGN_STALE_SECONDS = 24 * 3600


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_path(path: str | os.PathLike) -> str:
    """A unique temp name beside `path` that names this host and process."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove temp files netdef left beside `path` (for this target only) whose writer is gone:
    a dead process on this host, or a file from another host older than FOREIGN_STALE_SECONDS.
    Returns the removed paths. A live writer's temp file is never touched."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    pattern = re.compile(rf"\.{re.escape(base)}\.([0-9a-f]{{8}})-(\d+)-[0-9a-f]{{8}}{re.escape(TMP_SUFFIX)}")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed, host = [], _host_tag()
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        full, stale = os.path.join(directory, name), False
        if m.group(1) == host:
            stale = not _pid_alive(int(m.group(2)))
        else:
            with contextlib.suppress(OSError):
                stale = time.time() - os.stat(full).st_mtime > FOREIGN_STALE_SECONDS
        if stale:  # another user's in a sticky directory (PermissionError) is not this save's failure
            with contextlib.suppress(OSError):
                os.unlink(full)
                removed.append(full)
    return removed


def fsync_directory(directory: str) -> None:
    """Make renames in `directory` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def written_temporary(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, str]]:
    """(file, temp path) beside `path`: complete and fsynced when the block ends; removed if
    the block raises. The caller renames it into place (or removes it)."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A temp file beside `path`, renamed over it only after a complete, synced write."""
    path = os.path.abspath(os.fspath(path))
    remove_stale_temporaries(path)
    with written_temporary(path) as (f, tmp):
        yield f
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(os.path.dirname(path))


@contextlib.contextmanager
def directory_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An advisory lock on the directory holding `path` (flock; released when the process dies,
    so a killed writer never leaves it held). Where the platform or file system has no flock,
    the block runs unlocked."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # releases the lock
