"""Local-disk specifics of stores: reads with few system calls, atomic writes by rename, and the cleanup of
what killed writers left."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.codec.base import Buffer

__all__ = [
    "SIZE_PROBES",
    "SMALL_OBJECT_BYTES",
    "SMALL_READ_BYTES",
    "TEMP_SUFFIX",
    "all_small",
    "local_names",
    "read_local",
    "remove_stale_temp_files",
    "write_local_atomically",
]

TEMP_SUFFIX = ".tmp"

_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{32}" + re.escape(TEMP_SUFFIX), re.DOTALL)
"""The exact name `write_local_atomically` gives its temp files: ``.<name>.<32 lowercase hex>.tmp``."""


SMALL_READ_BYTES = 256 * 1024
"""A small object is read with one `os.read` of this size: each system call releases and retakes the GIL,
which is what reading many small files from threads costs most."""


SMALL_OBJECT_BYTES = 256 * 1024
"""Objects up to this size are read in groups (one thread hop, or in the consumer's thread, for many): a
hop per object cost more than reading it. Larger ones are read one at a time, into recycled buffers."""
SIZE_PROBES = 8
"""How many of a pass's first objects `all_small` looks at to tell small objects from large shards."""


def all_small(size: Callable[[str], int], paths: Sequence[str]) -> bool:
    """Whether the objects at `paths` all exist and hold at most `SMALL_OBJECT_BYTES`, by their `size` (a
    ``stat`` on local disk, the filesystem's metadata on memory://)."""
    try:
        return bool(paths) and all(size(path) <= SMALL_OBJECT_BYTES for path in paths)
    except OSError:  # a missing object is reported where the pass reads it
        return False


def read_local(path: str, pool: BufferPool | None) -> Buffer:
    """A local file's bytes: into a recycled buffer of `pool` (large shards), else plainly (small records)."""
    if pool is not None:
        return pool.read_file(path)
    fd = os.open(path, os.O_RDONLY)  # three system calls for a small file (open() makes five or six)
    try:
        data = os.read(fd, SMALL_READ_BYTES)
        if len(data) < SMALL_READ_BYTES:
            return data
        parts = [data]
        while chunk := os.read(fd, SMALL_READ_BYTES):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def write_local_atomically(path: str, data: bytes, then_remove: str | None = None) -> None:
    """Write `data` to a hidden temp file beside `path`, then rename it over `path` (atomic on POSIX); then
    remove the file `then_remove` if given and there (a store's index the write made stale).

    The temp file is named ``.<name>.<32 lowercase hex>.tmp`` (what `remove_stale_temp_files` matches), so
    a writer killed midway leaves only a dot-file, which is never listed as a key.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if then_remove is not None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # none, or a single-file store
            os.unlink(then_remove)


def remove_stale_temp_files(folder: str, older_than: float) -> list[str]:
    """Delete the temp files of `write_local_atomically` in `folder` last modified over `older_than` s ago.

    Only regular files named exactly as that function names them go: a user's own ``.notes.tmp``, a folder
    or a symlink is never touched. Returns the paths removed; a missing `folder` removes nothing.
    """
    removed = []
    cutoff = time.time() - older_than
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if _is_stale_temp_file(entry, cutoff):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:  # removed meanwhile by another cleanup
                    continue
                removed.append(entry.path)
    return removed


def _is_stale_temp_file(entry: os.DirEntry[str], cutoff: float) -> bool:
    """Whether `entry` is a regular file named like our temp files and last modified before `cutoff`."""
    if not _TEMP_NAME.fullmatch(entry.name):
        return False
    try:
        return entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff
    except FileNotFoundError:  # removed meanwhile (its write finished, or another cleanup)
        return False


def local_names(folder: str) -> list[str]:
    """The names in `folder` (none when it does not exist yet)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
