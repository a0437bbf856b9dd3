"""A local cache of the objects a store fetches from an object store (gs://, s3://), shared by processes.

``get_iter(cache_dir=PATH, cache_limit=BYTES)`` (or the same store options) reads each remote object
through a `ShardCache`: a hit is read from local disk, a miss is fetched, then written to the cache for
later epochs. Local disk and memory:// stores are read in place and never cached (nothing to gain:
``cache_dir`` is accepted and does nothing there, so one script serves local and remote data).

What it costs (`squirrel.aio.cached_source.CachedSource`, a store's pass read through the cache): a hit is
one worker-thread hop and five system calls (open, two reads, the second into the pass's recycled buffers,
the touch of its mtime, close), and a checksum with ``verify_checksums``; a miss is written behind the pass,
by the `cache_writer` threads, so the request's slot goes to the next object at once (the object's samples
wait for its entry only if the disk falls behind).

What makes it safe for many DataLoader workers and processes sharing one folder:

- An entry is written to a temp file in the cache folder and renamed over its name (`os.replace`), so a
  reader sees a whole entry or none; a reader holding the old file keeps reading it whole.
- Inserting and evicting run under an exclusive `fcntl.flock` of the folder's ``.lock`` file (Linux and
  macOS; local filesystems: flock over NFS is not reliable), so two processes never evict for each other
  or overshoot the bound together. Reads take no lock.
- The bound counts the bytes on disk of entries (their small header included): before an entry is
  published, least-recently-used entries are removed until it fits, so the bound holds after every
  insert. An object larger than the whole bound is read but not cached. A hit touches its entry's mtime:
  that is "last used" (atime is not reliable under ``relatime``/``noatime`` mounts). The lock file holds
  a ledger of the entries' total, never below the bytes on disk, so an insert that fits costs no scan of
  the folder; one that does not fit scans it, for the true total and the least recently used.
- Each entry records its object's URL, size, version and the crc32c of its bytes (computed when they are
  written, and checked then against the index's when the store has one). Every hit checks its length (a
  truncated or overlong entry is never served: it is removed and fetched again); a store with
  ``verify_checksums=True`` also checks each hit's bytes against that crc32c (a flipped bit), as it
  checks every object it reads from the store. Not by default: a checksum of every hit costs a warm pass
  more than a third of its speed (measured: 150 MB of hits read in 215 ms with one, 77 ms without), and
  objects on local disk are not re-checked either.
- An entry is served only for the object the store holds now (`Expected`): the size and crc32c in the
  store's index when it has one; else what the listing the pass makes anyway says, or one metadata
  request per object (named keys, ``store.get``): size and crc32c on gs://, size and version (ETag,
  else modification time) elsewhere. An entry of an object that changed does not match and is fetched
  again; objects whose store names neither a checksum nor a version are not cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squirrel.aio.stores.local import TEMP_SUFFIX, remove_stale_temp_files
from squirrel.index import checksum
from squirrel.plan import check_cache_options

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.codec.base import Buffer

__all__ = ["ENTRY_SUFFIX", "Expected", "ShardCache", "object_version"]

ENTRY_SUFFIX = ".entry"
MAGIC = b"squirrel-cache-2\n"
_LENGTH_BYTES = 4
_HEAD_BYTES = 4096
"""What `get` reads first: an entry's magic, length and header (URLs under ~3,900 characters; a longer header
costs one more read)."""
_MAX_HEAD_BYTES = 1 << 20
"""No entry's header is longer (a longer length field is damage, not a reason to read that much)."""
_LOCK_NAME = ".lock"
_LEDGER_BYTES = 21
"""The ledger in the lock file: the entries' total bytes as 20 digits and a newline."""
POOLED_BYTES = 256 * 1024
"""Hits at least this large are read into the pass's recycled buffers (fresh pages cost a fault per 4 KiB);
smaller ones are read plainly, as a local read does (a buffer's bookkeeping would cost more)."""
STALE_TEMP_SECONDS = 3600.0
"""Temp files of a writer killed mid-write are removed once this old (by the next process that inserts)."""

_VERSION_FIELDS = ("generation", "ETag", "etag", "mtime", "LastModified", "created")
"""Fields of an fsspec listing or info entry that change whenever the object is rewritten, in preference order."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the store says an object holds now: its size, and its crc32c (index) or version (listing)."""

    size: int
    crc32c: str | None = None
    version: str | None = None

    @property
    def checkable(self) -> bool:
        """Whether an entry can be matched to this object: a checksum or a version to compare."""
        return self.crc32c is not None or self.version is not None

    @classmethod
    def of_info(cls, info: Mapping[str, Any]) -> Expected:
        """The expectation an fsspec listing or info entry gives: size, version, and crc32c where the
        store keeps one (gs://, in the index's form)."""
        crc = info.get("crc32c")
        return cls(int(info["size"]), crc32c=crc if isinstance(crc, str) else None, version=object_version(info))


def object_version(info: Mapping[str, Any]) -> str | None:
    """What changes whenever the object of fsspec entry `info` is rewritten (gs:// generation, s3:// ETag,
    else its modification time), as text; None if the filesystem names nothing of the kind."""
    for field in _VERSION_FIELDS:
        if info.get(field):
            return str(info[field])
    return None


@dataclass(frozen=True, slots=True)
class _Header:
    url: str
    size: int
    crc32c: str
    version: str | None

    def serves(self, url: str, expected: Expected) -> bool:
        """Whether this entry holds the object `url` as the store holds it now: the same size and crc32c
        when the store names a crc32c (the same bytes, whatever their version), else the same version."""
        if self.url != url or self.size != expected.size:
            return False
        if expected.crc32c is not None:
            return expected.crc32c == self.crc32c
        return expected.version is not None and expected.version == self.version


class ShardCache:
    """A folder of cached objects, at most `limit` bytes on disk, evicting the least recently used.

    `get` and `put` block (disk I/O): call them from a worker thread. `ValueError` for a `limit` that is
    not a positive int.
    """

    def __init__(self, folder: str | os.PathLike[str], limit: int) -> None:
        check_cache_options(folder, limit)
        self.folder = os.path.expanduser(os.fspath(folder))
        self.limit = limit
        self._cleaned = False

    def __repr__(self) -> str:
        return f"ShardCache({self.folder!r}, limit={self.limit:,})"

    def entry_path(self, url: str) -> str:
        """Where the entry of object `url` is stored."""
        return os.path.join(self.folder, hashlib.sha256(url.encode()).hexdigest() + ENTRY_SUFFIX)

    def get(self, url: str, expected: Expected, pool: BufferPool | None = None, verify: bool = True) -> Buffer | None:
        """The cached bytes of object `url` if its entry is whole and matches `expected`, else None: read
        into a recycled buffer of `pool` when given and the object is large (a view of it), else as bytes.

        A truncated, overlong or stale entry is removed (a later `put` writes the object's bytes afresh);
        with `verify`, so is one whose bytes do not have the crc32c its header records (a flipped bit).
        A hit costs five system calls (open, a read of the header, one of the bytes, the touch of the
        entry's mtime, close), and with `verify` the crc32c of its bytes.
        """
        path = self.entry_path(url)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            data = _read_entry(fd, url, expected, pool, verify)
            if data is not None:
                os.utime(fd)  # last used: now (the file read, even if its name was replaced meanwhile)
        finally:
            os.close(fd)
        if data is None:
            _remove(path)  # corrupt, truncated, or the object changed: never served
        return data

    def put(self, url: str, data: Buffer, expected: Expected) -> bool:
        """Cache `data` as object `url`, evicting least-recently-used entries so the bound still holds.

        Returns False (and caches nothing) when a later `get` would not serve it: bytes that differ from
        `expected`, an object with no checksum or version to match, or one larger than the whole cache.
        `OSError` if the folder cannot be written (the entry is then not published).
        """
        stored = bytes(data)
        crc = checksum(stored)
        if not expected.checkable or len(stored) != expected.size or expected.crc32c not in (None, crc):
            return False
        header = json.dumps({"url": url, "size": len(stored), "crc32c": crc, "version": expected.version}).encode()
        prefix = MAGIC + len(header).to_bytes(_LENGTH_BYTES, "big") + header
        if len(prefix) + len(stored) > self.limit:
            return False
        path = self.entry_path(url)
        os.makedirs(self.folder, exist_ok=True)
        temp = os.path.join(self.folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        published = False
        try:
            with open(temp, "wb") as file:
                file.write(prefix)
                file.write(stored)
            with self._locked() as ledger:
                self._make_room(ledger, len(prefix) + len(stored), replaced=path)
                os.replace(temp, path)
                published = True
        finally:
            if not published:
                _remove(temp)
        return True

    def entries(self) -> dict[str, os.stat_result]:
        """Every entry's path and stat, now (temp files of writes under way are not entries)."""
        found = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as listing:
            for entry in listing:
                if entry.name.endswith(ENTRY_SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):  # removed meanwhile by a reader
                        found[entry.path] = entry.stat(follow_symlinks=False)
        return found

    def size(self) -> int:
        """The bytes on disk of every entry, now."""
        return sum(stat.st_size for stat in self.entries().values())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The folder's exclusive lock (every process and thread inserting into it takes it in turn); yields
        the lock file's descriptor, which holds the ledger (see `_make_room`)."""
        fd = os.open(os.path.join(self.folder, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self._cleaned:  # once per cache object: what killed writers left behind
                remove_stale_temp_files(self.folder, STALE_TEMP_SECONDS)
                self._cleaned = True
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _make_room(self, ledger: int, needed: int, replaced: str) -> None:
        """Make `needed` more bytes fit under the bound, for the entry about to replace the one at
        `replaced` (whose bytes then no longer count), and count them in the ledger. Called under the lock.

        The ledger (the lock file's content) is the entries' total as the inserters left it: it is updated
        under the lock before each entry is published and when entries are evicted, so it is never below the
        bytes on disk (a reader that removes a bad entry, or a crash between the update and the rename,
        leaves it above). While it shows room, an insert costs one stat; else the folder is scanned for
        the true total and the least-recently-used entries are removed until the new one fits.
        """
        try:
            old = os.stat(replaced).st_size
        except FileNotFoundError:
            old = 0
        total = _read_ledger(ledger)
        if total is None or total < old or total - old + needed > self.limit:
            total = self._evict(needed, keep=replaced)
        else:
            total -= old
        _write_ledger(ledger, total + needed)

    def _evict(self, needed: int, keep: str) -> int:
        """Remove least-recently-used entries until `needed` more bytes fit beside the others (the entry at
        `keep` is about to be replaced: its bytes do not count); returns the others' total. Under the lock."""
        entries = self.entries()
        entries.pop(keep, None)
        total = sum(stat.st_size for stat in entries.values())
        for path, stat in sorted(entries.items(), key=lambda item: item[1].st_mtime_ns):
            if total + needed <= self.limit:
                break
            _remove(path)
            total -= stat.st_size
        return total


def _read_ledger(fd: int) -> int | None:
    """The total in ledger `fd`, or None if it holds none (a new folder, or a torn write)."""
    text = os.pread(fd, _LEDGER_BYTES + 1, 0)
    if len(text) != _LEDGER_BYTES or not text.endswith(b"\n") or not text[:-1].isdigit():
        return None
    return int(text)


def _write_ledger(fd: int, total: int) -> None:
    os.pwrite(fd, b"%0*d\n" % (_LEDGER_BYTES - 1, total), 0)


def _read_entry(fd: int, url: str, expected: Expected, pool: BufferPool | None, verify: bool) -> Buffer | None:
    """The bytes of the entry open as `fd` if it is whole (its header, then exactly the size it names, with
    the crc32c it names, when it `verify`s) and holds object `url` as `expected` says the store holds it now; else None.

    Two reads: the header (with the first bytes after it), then the bytes and one more (an overlong file
    shows); an object of `POOLED_BYTES` or more into the start of a recycled buffer of `pool` when given (a
    view of it is returned: arrays decoded from it are aligned as in a local read), else as bytes. A stale
    entry's bytes are not read.
    """
    head = os.pread(fd, _HEAD_BYTES, 0)
    start = len(MAGIC) + _LENGTH_BYTES
    if len(head) < start or not head.startswith(MAGIC):
        return None
    offset = start + int.from_bytes(head[len(MAGIC) : start], "big")
    if offset > _MAX_HEAD_BYTES:
        return None  # a damaged length: no header is that long
    if offset > len(head):  # a header longer than one read (a very long URL)
        head += os.pread(fd, offset - len(head), len(head))
    try:
        fields = json.loads(head[start:offset])
        header = _Header(str(fields["url"]), int(fields["size"]), str(fields["crc32c"]), fields["version"])
    except (ValueError, KeyError, TypeError):
        return None
    if not header.serves(url, expected):
        return None  # not the object the store holds now
    data = _read_bytes(fd, header.size + 1, offset, pool if header.size >= POOLED_BYTES else None)
    if len(data) != header.size or (verify and checksum(data) != header.crc32c):
        return None  # truncated, overlong, or corrupt
    return data


def _read_bytes(fd: int, size: int, offset: int, pool: BufferPool | None) -> Buffer:
    """Up to `size` bytes of `fd` from `offset` (fewer at its end): into the start of a recycled buffer of
    `pool` (a view of it), else as bytes. One system call but for reads the kernel cuts short (over 2 GiB
    on Linux)."""
    if pool is None:
        data = os.pread(fd, size, offset)
        if len(data) == size or not data:
            return data
        parts = [data]
        done = len(data)
        while done < size and (chunk := os.pread(fd, size - done, offset + done)):
            parts.append(chunk)
            done += len(chunk)
        return b"".join(parts)
    view = pool.take(size)
    done = 0
    while done < size and (count := os.preadv(fd, [view[done:]], offset + done)):
        done += count
    return view[:done]


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
