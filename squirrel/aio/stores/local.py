"""Local-disk specifics of stores: reads with few system calls, atomic writes by rename, and the cleanup of
what killed writers left."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from typing import TYPE_CHECKING

from squirrel.codec.gzip import gzip_inflate

if TYPE_CHECKING:
    import io
    from collections.abc import Callable, Iterator, Sequence

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
    "read_local_gzip",
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


READ_PIECE = 256 * 1024
"""What `read_local_gzip` reads of a file at once, into one buffer it refills."""


def read_local_gzip(path: str, source: str, max_size: int, pool: BufferPool) -> Buffer:
    """The inflated content of the local gzip file `path`, streamed through the inflater a piece at a time
    into a recycled buffer of `pool` (see `squirrel.codec.gzip.gzip_inflate`).

    Reading the whole file first held its compressed bytes beside the inflated ones, and inflated into a new
    buffer, which Python zeroed holding the GIL: 2 buffers per object in flight, 1 fresh. `DecodeError`
    naming `source` for bad data; `OSError` if the file shrinks while it is read.
    """
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        last_word = os.pread(file.fileno(), 4, max(0, size - 4))
        return gzip_inflate(_pieces(file, size, path), size, last_word, source, max_size, pool.take)


def _pieces(file: io.RawIOBase, size: int, path: str) -> Iterator[memoryview]:
    """The first `size` bytes of `file`, in pieces read one after another into one buffer."""
    view = memoryview(bytearray(min(size, READ_PIECE)))
    left = size
    while left:
        count = file.readinto(view[: min(left, len(view))])
        if not count:
            raise OSError(f"{path} shrank while being read ({size - left} of {size} bytes)")
        left -= count
        yield view[:count]


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
