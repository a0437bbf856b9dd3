"""`IndexedStore`: the part of a store that lists its objects, and reads, writes and checks its index.

An optional index at the root (`squirrel.index`) lists every object with its sample count, size and crc32c:
`list_keys` then reads it instead of listing, and `count_samples` answers without reading a shard. It is
written once, by `write_index` (a bulk write calls it at its end); `set` and `delete` leave it alone, so
concurrent writers never race on it, and changing a store after indexing makes the index stale until it
is written again.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from squirrel.aio.fs import gcs_endpoint, is_local
from squirrel.aio.retry import RetryPolicy, with_retries
from squirrel.aio.stores.local import local_names, write_local_atomically
from squirrel.aio.stream import AsyncIterableSource
from squirrel.errors import DecodeError
from squirrel.index import (
    Index,
    IndexEntry,
    build_index,
    check_layout,
    describe,
    dump_index,
    parse_index,
    verify_object,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from fsspec.asyn import AsyncFileSystem

    from squirrel.aio.stores.layout import Layout
    from squirrel.codec.base import Buffer
    from squirrel.sample import Sample

__all__ = ["CHECKSUM_IN_THREAD_BYTES", "LOCAL_PROTOCOLS", "IndexedStore"]

T = TypeVar("T")

LOCAL_PROTOCOLS = ("file", "local", "memory")
"""Filesystems that never fail transiently: requests on them are not retried."""

CHECKSUM_IN_THREAD_BYTES = 8 * 1024 * 1024
"""Objects at least this large are checksummed in a worker thread (crc32c runs at ~15 GB/s)."""

PARSE_IN_THREAD_BYTES = 256 * 1024
"""An index at least this large is parsed in a worker thread, so the loop keeps serving requests."""

_VERBS = {"_cat_file": "reading", "_pipe_file": "writing", "_ls": "listing", "_exists": "looking up"}
"""How an error names what a filesystem method was doing."""


class IndexedStore:
    """Listing and index of a store; `AsyncRecordStore` provides the filesystem, layout and codec."""

    layout: Layout
    retry: RetryPolicy
    compression: str | None
    storage_options: dict[str, Any]

    def __init__(self) -> None:
        self._index: Index | None = None  # the index this store last read or wrote (None: absent or unread)
        self._index_read = False
        self._index_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_index_locks"] = None  # loop-bound
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._index_locks = weakref.WeakKeyDictionary()

    def _fs(self) -> AsyncFileSystem:
        raise NotImplementedError

    def decode(self, key: str, data: Buffer) -> list[Sample]:
        """The samples of object `key` from its stored bytes (the store class provides it)."""
        raise NotImplementedError

    def _object_path(self, key: str) -> str:
        raise NotImplementedError

    @property
    def index_url(self) -> str:
        """The full URL of the store's index."""
        return self.layout.index_url

    def _location(self) -> str:
        """The store's URL, with the endpoint it talks to for gs:// when one is set (for error messages)."""
        endpoint = gcs_endpoint(self.storage_options) if self.layout.protocol in ("gs", "gcs") else None
        return f"store {self.layout.url} at {endpoint}" if endpoint else f"store {self.layout.url}"

    async def _request(self, url: str, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await method(*args, **kwargs)`` under the store's retry policy, the only layer that retries it.

        `url` (the object's, or the store's for a listing) names the request in the error raised when retries
        run out, with the store and its endpoint: see `squirrel.aio.retry.with_retries`.
        """
        verb = _VERBS.get(method.__name__, method.__name__.strip("_").replace("_", " "))
        return await with_retries(lambda: method(*args, **kwargs), self.retry, f"{verb} {url} ({self._location()})")

    # -- listing -------------------------------------------------------------------------------

    async def list_keys(self) -> list[str]:
        """Every key in the store, sorted: from the index when there is one, else by listing the folder.

        A store whose folder does not exist yet is empty; `FileNotFoundError` when its bucket is missing.
        """
        index = await self.read_index()
        if index is not None:
            return index.keys
        fs = self._fs()
        if is_local(fs):  # names only: fsspec's detailed listing stats every file, 50x slower than this
            names = await asyncio.to_thread(local_names, self.layout.root)
            return sorted(key for name in names if (key := self.layout.key_of(name)) is not None)
        return sorted(await self.list_objects())

    async def list_objects(self) -> dict[str, int]:
        """The stored size of every object under the root, by key, from a listing (never from the index)."""
        fs = self._fs()
        try:
            infos = await self._request(self.layout.url, fs._ls, self.layout.root, detail=True)
        except FileNotFoundError:
            await self._check_root_reachable(fs)
            return {}
        sizes = {}
        for info in infos:
            key = self.layout.key_of(info["name"].rstrip("/").rsplit("/", 1)[-1])
            if key is not None:
                sizes[key] = info["size"]
        return sizes

    async def _check_root_reachable(self, fs: AsyncFileSystem) -> None:
        """Raise `FileNotFoundError` when the store's bucket itself is missing (not just its folder)."""
        if self.layout.protocol in LOCAL_PROTOCOLS:
            return
        bucket = self.layout.root.split("/", 1)[0]
        if not await self._request(f"{self.layout.protocol}://{bucket}", fs._exists, bucket):
            raise FileNotFoundError(f"bucket {bucket!r} of store {self.layout.url} does not exist")

    # -- index ---------------------------------------------------------------------------------

    async def read_index(self) -> Index | None:
        """The store's index, read anew, or None when it has none.

        `DecodeError` naming the index if it is corrupt or was written for another suffix or compression.
        """
        try:
            data = await self._request(self.index_url, self._fs()._cat_file, self.layout.index_path)
        except FileNotFoundError:
            index = None
        else:
            if len(data) >= PARSE_IN_THREAD_BYTES:
                index = await asyncio.to_thread(parse_index, data, self.index_url)
            else:
                index = parse_index(data, self.index_url)
            check_layout(index, self.layout.suffix, self.compression, self.index_url)
        self._index, self._index_read = index, True
        return index

    async def _loaded_index(self) -> Index | None:
        """The index this store last read, reading it first if it has not (once, however many callers wait)."""
        if not self._index_read:
            async with self._index_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
                if not self._index_read:
                    await self.read_index()
        return self._index

    async def count_samples(self) -> int:
        """The number of samples in the store, from its index (`FileNotFoundError` when it has none)."""
        index = await self.read_index()
        if index is None:
            raise FileNotFoundError(
                f"{self!r} has no index ({self.index_url}): build one with write_index() to count its samples"
            )
        return index.num_samples

    async def write_index(self, known: Iterable[IndexEntry] = (), max_concurrency: int = 16) -> Index:
        """Index every object of the store, write the index atomically at the root, and return it.

        The folder is listed (the old index is ignored) and each object read and decoded to count its
        samples, at most `max_concurrency` at once; objects in `known` whose listed size matches are taken
        as given (a bulk writer knows what it wrote). Call it once, after the writes.
        """
        sizes = await self.list_objects()
        given = {entry.key: entry for entry in known}

        async def entry_of(key: str) -> IndexEntry:
            entry = given.get(key)
            if entry is not None and entry.size == sizes[key]:
                return entry
            data = await self._read_unverified(key)
            return await asyncio.to_thread(lambda: describe(key, data, len(self.decode(key, data))))

        entries = await AsyncIterableSource(sorted(sizes)).async_map(entry_of, max_concurrency).collect()
        index = build_index(self.layout.suffix, self.compression, entries)
        data = dump_index(index)
        fs = self._fs()
        if is_local(fs):
            await asyncio.to_thread(write_local_atomically, self.layout.index_path, data)
        else:  # an upload is published whole or not at all
            await self._request(self.index_url, fs._pipe_file, self.layout.index_path, data)
        self._index, self._index_read = index, True
        return index

    async def _read_unverified(self, key: str) -> bytes:
        try:
            data: bytes = await self._request(self.layout.object_url(key), self._fs()._cat_file, self._object_path(key))
        except FileNotFoundError:
            raise KeyError(f"{self.layout.object_url(key)} was deleted while the index was being written") from None
        return data

    async def _verify(self, key: str, data: Buffer, index: Index) -> None:
        if len(data) >= CHECKSUM_IN_THREAD_BYTES:
            await asyncio.to_thread(self._verify_now, key, data, index)
        else:
            self._verify_now(key, data, index)

    def _verify_now(self, key: str, data: Buffer, index: Index) -> None:
        """Check `data` of object `key` against `index`: `DecodeError` "stale index" on any difference."""
        entry = index.get(key)
        url = self.layout.object_url(key)
        if entry is None:
            raise DecodeError(
                f"stale index: {url} is not listed in the index {self.index_url} (written after "
                "indexing?); rewrite the index with write_index()"
            )
        verify_object(entry, data, url, self.index_url)
