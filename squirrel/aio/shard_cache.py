"""A local cache of the objects a store fetches from an object store (gs://, s3://), shared by processes.

``get_iter(cache_dir=PATH, cache_limit=BYTES)`` (or the same store options) reads each remote object
through a `ShardCache`: a hit is read from local disk, a miss is fetched, then written to the cache for
later epochs. Local disk and memory:// stores are read in place and never cached (nothing to gain:
``cache_dir`` is accepted and does nothing there, so one script serves local and remote data).

What makes it safe for many DataLoader workers and processes sharing one folder:

- An entry is written to a temp file in the cache folder and renamed over its name (`os.replace`), so a
  reader sees a whole entry or none; a reader holding the old file keeps reading it whole.
- Inserting and evicting run under an exclusive `fcntl.flock` of the folder's ``.lock`` file (Linux and
  macOS; local filesystems: flock over NFS is not reliable), so two processes never evict for each other
  or overshoot the bound together. Reads take no lock.
- The bound counts the bytes on disk of entries (their small header included): before an entry is
  published, least-recently-used entries are removed until it fits, so the bound holds after every
  insert. An object larger than the whole bound is read but not cached. A hit touches its entry's mtime:
  that is "last used" (atime is not reliable under ``relatime``/``noatime`` mounts).
- Each entry records its object's URL, size, crc32c and version, and every hit checks its bytes against
  its own size and crc32c: a truncated or corrupt entry is never served, it is removed and fetched again.
- An entry is served only for the object the store holds now (`Expected`): the size and crc32c in the
  store's index when it has one; else what the listing the pass makes anyway says, or one metadata
  request per object (named keys, ``store.get``): size and crc32c on gs://, size and version (ETag,
  else modification time) elsewhere. An entry of an object that changed does not match and is fetched
  again; objects whose store names neither a checksum nor a version are not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squirrel.aio.pipeline import Fetched
from squirrel.aio.stores.local import TEMP_SUFFIX, remove_stale_temp_files
from squirrel.errors import DecodeError
from squirrel.index import checksum
from squirrel.plan import check_cache_options

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.aio.pipeline import Rest
    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.codec.base import Buffer
    from squirrel.sample import Sample

__all__ = ["ENTRY_SUFFIX", "CachedSource", "Expected", "ShardCache", "object_version"]

ENTRY_SUFFIX = ".entry"
MAGIC = b"squirrel-cache-1\n"
_LENGTH_BYTES = 4
_LOCK_NAME = ".lock"
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

    def get(self, url: str, expected: Expected) -> bytes | None:
        """The cached bytes of object `url` if its entry is whole and matches `expected`, else None.

        A corrupt, truncated or stale entry is removed (a later `put` writes the object's bytes afresh).
        """
        path = self.entry_path(url)
        try:
            with open(path, "rb") as file:
                header, data = _read_entry(file)
        except FileNotFoundError:
            return None
        if header is None or len(data) != header.size or checksum(data) != header.crc32c:
            _remove(path)  # corrupt or truncated: never served
            return None
        if not header.serves(url, expected):
            _remove(path)  # the object changed (or the entry is another URL's)
            return None
        with contextlib.suppress(FileNotFoundError):  # evicted meanwhile: the bytes read are still whole
            os.utime(path)  # last used: now
        return data

    def put(self, url: str, data: Buffer, expected: Expected) -> bool:
        """Cache `data` as object `url`, evicting least-recently-used entries so the bound still holds.

        Returns False (and caches nothing) when a later `get` would not serve it: bytes that differ from
        `expected`, an object with no checksum or version to match, or one larger than the whole cache.
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
        try:
            with open(temp, "wb") as file:
                file.write(prefix)
                file.write(stored)
            with self._locked():
                self._make_room(len(prefix) + len(stored), keep=path)
                os.replace(temp, path)
        finally:
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
    def _locked(self) -> Iterator[None]:
        """The folder's exclusive lock (every process and thread inserting into it takes it in turn)."""
        fd = os.open(os.path.join(self.folder, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self._cleaned:  # once per cache object: what killed writers left behind
                remove_stale_temp_files(self.folder, STALE_TEMP_SECONDS)
                self._cleaned = True
            yield
        finally:
            os.close(fd)  # releases the lock

    def _make_room(self, needed: int, keep: str) -> None:
        """Remove least-recently-used entries until `needed` more bytes fit (the entry at `keep` is about
        to be replaced: its old bytes do not count). Called under the lock."""
        entries = self.entries()
        entries.pop(keep, None)
        total = sum(stat.st_size for stat in entries.values())
        for path, stat in sorted(entries.items(), key=lambda item: item[1].st_mtime_ns):
            if total + needed <= self.limit:
                return
            _remove(path)
            total -= stat.st_size


def _read_entry(file: Any) -> tuple[_Header | None, bytes]:
    """The header and bytes of an open entry file; a None header if the file is not a whole entry."""
    start = file.read(len(MAGIC) + _LENGTH_BYTES)
    if len(start) != len(MAGIC) + _LENGTH_BYTES or not start.startswith(MAGIC):
        return None, b""
    raw = file.read(int.from_bytes(start[len(MAGIC) :], "big"))
    try:
        fields = json.loads(raw)
        header = _Header(str(fields["url"]), int(fields["size"]), str(fields["crc32c"]), fields["version"])
    except (ValueError, KeyError, TypeError):
        return None, b""
    return header, file.read()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class CachedSource:
    """A store's objects read through a `ShardCache`: the pipeline's `ObjectSource` for a cached pass.

    `expected` is what the store holds now, by key (from its index or listing); None: ask the store per
    object (one metadata request each). A key it does not list is read without the cache.
    """

    def __init__(self, store: AsyncRecordStore, cache: ShardCache, expected: Mapping[str, Expected] | None) -> None:
        self.store = store
        self.cache = cache
        self.expected = expected

    @property
    def objects_per_read(self) -> int:
        """As the store's (one object per request on object stores)."""
        return self.store.objects_per_read

    @property
    def whole_objects(self) -> bool:
        """As the store's (cached stores read whole objects)."""
        return self.store.whole_objects

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key`."""
        return self.store.object_url(key)

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """Each object of `keys` from the cache if it holds it as the store does now, else from the store
        (then cached); a missing or bad object comes back with its `error` set."""
        return list(await asyncio.gather(*(self._fetch(key, pool) for key in keys)))

    async def _fetch(self, key: str, pool: BufferPool | None) -> Fetched:
        url = self.store.object_url(key)
        try:
            expected = await self._expected(key)
            if expected is None:
                return (await self.store.fetch_objects([key], pool))[0]
            data: Buffer | None = await asyncio.to_thread(self.cache.get, url, expected)
            if data is None:
                data = await self.store.read_bytes(key)
                await asyncio.to_thread(self.cache.put, url, data, expected)
            return await self.store._inflated(key, data)
        except (KeyError, DecodeError) as error:
            return Fetched(key, error=error)

    async def _expected(self, key: str) -> Expected | None:
        if self.expected is not None:
            return self.expected.get(key)
        return await self.store._expectation(key)

    def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """Cached objects are read whole: there is never a rest."""
        return self.store.read_rest(fetched)

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterator[list[Sample]]:
        """As the store decodes it."""
        return self.store.decode_object(fetched, rest)
