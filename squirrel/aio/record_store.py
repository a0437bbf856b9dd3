"""`AsyncRecordStore`: samples stored as objects under a root folder, over any async fsspec filesystem.

It is also the base of the shard stores: a subclass picks the codec and whether each sample is its own
object (record store) or each shard is (messagepack, jsonl). Keys name objects directly under the root
(``<root>/<key><suffix>``); writes are atomic, so a reader never sees half an object.

An optional index at the root (`squirrel.index`) lists every object with its sample count, size and crc32c:
`list_keys` then reads it instead of listing, and `count_samples` answers without reading a shard. It is
written once, by `write_index` (a bulk write calls it at its end); `set` and `delete` leave it alone, so
concurrent writers never race on it, and changing a store after indexing makes the index stale until it
is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar, Self, TypeVar

from fsspec.asyn import AsyncFileSystem

from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.fs import (
    acquire_filesystem,
    check_storage_options,
    gcs_endpoint,
    is_local,
    release_filesystem,
    split_protocol,
)
from squirrel.aio.retry import NO_RETRY, RetryPolicy, with_retries
from squirrel.aio.stream import AsyncIterableSource
from squirrel.codec import COMPRESSIONS, Codec, MessagepackCodec, compress, decompress
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, check_compression
from squirrel.errors import DecodeError
from squirrel.index import (
    INDEX_NAME,
    Index,
    IndexEntry,
    build_index,
    check_layout,
    describe,
    dump_index,
    parse_index,
    verify_object,
)
from squirrel.sample import Sample, Shard, validate_key

T = TypeVar("T")
TEMP_SUFFIX = ".tmp"
LOCAL_PROTOCOLS = ("file", "local", "memory")
"""Filesystems that never fail transiently: requests on them are not retried."""

DECODE_IN_THREAD_BYTES = 256 * 1024
"""Objects at least this large are decoded in a worker thread, so the IO loop keeps serving requests."""

MAX_CONCURRENT_WRITES = 64
"""Bound on objects written at once by one `set` (a shard written into a record store)."""

CHECKSUM_IN_THREAD_BYTES = 8 * 1024 * 1024
"""Objects at least this large are checksummed in a worker thread (crc32c runs at ~15 GB/s)."""

_VERBS = {
    "_cat_file": "reading",
    "_pipe_file": "writing",
    "_ls": "listing",
    "_exists": "looking up",
    "_info": "looking up",
}
"""How an error names what a filesystem method was doing."""


class AsyncRecordStore:
    """Map-style async access to a folder of samples, one msgpack object per sample.

    ``await store.set(sample)``, ``async for s in store.get(key)``, ``async for k in store.keys()``,
    ``await store.delete(key)``, ``await store.exists(key)``. Use it as ``async with`` (or call
    `aclose`) inside your own event loop so its network session is closed with it.

    With ``verify_checksums=True`` and an index present, every object read is checked against the size
    and crc32c the index recorded for it (`DecodeError` "stale index" on a mismatch). The store reads its
    index once for that, and again whenever `list_keys` or `read_index` is called.

    Other keywords are storage options for the url's filesystem (``endpoint_url``, ``token``, ...). For gs://,
    squirrel's own ``max_connections=n`` bounds the HTTP connections open at once (default aiohttp's 100; see
    `squirrel.aio.fs.check_max_connections`); stores and loaders on one loop with the same options share one
    filesystem, and so one pool. Local and memory:// stores accept and ignore it; other protocols refuse it.
    """

    codec: ClassVar[Codec] = MessagepackCodec()
    one_object_per_sample: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        compression: str | None = None,
        *,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        verify_checksums: bool = False,
        retry: RetryPolicy | None = None,
        **storage_options: Any,
    ) -> None:
        self.url = url.rstrip("/") if url.rstrip("/") else url
        self.compression = check_compression(compression)
        self.max_decompressed_size = max_decompressed_size
        self.verify_checksums = verify_checksums
        self.storage_options = storage_options
        self.suffix = self.codec.suffix + COMPRESSIONS[compression]
        self._protocol, _ = split_protocol(self.url)
        check_storage_options(self._protocol, storage_options)
        self.retry = retry or (NO_RETRY if self._protocol in LOCAL_PROTOCOLS else RetryPolicy())
        self._filesystems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncFileSystem] = (
            weakref.WeakKeyDictionary()
        )
        self._root: str | None = None
        self._index: Index | None = None  # the index this store last read or wrote (None: absent or unread)
        self._index_read = False
        self._index_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_filesystems"] = None  # loop-bound: each process opens its own
        state["_index_locks"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._filesystems = weakref.WeakKeyDictionary()
        self._index_locks = weakref.WeakKeyDictionary()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release this store's filesystem on the running loop (closing its session if it was the last user)."""
        fs = self._filesystems.pop(asyncio.get_running_loop(), None)
        if fs is not None:
            await release_filesystem(fs)

    # -- paths ---------------------------------------------------------------------------------

    def _fs(self) -> AsyncFileSystem:
        loop = asyncio.get_running_loop()
        fs = self._filesystems.get(loop)
        if fs is None:
            fs = self._filesystems[loop] = acquire_filesystem(self._protocol, self.storage_options)
            if self._root is None:
                self._root = fs._strip_protocol(self.url).rstrip("/")
        return fs

    def _path(self, key: str) -> str:
        return f"{self._root}/{validate_key(key)}{self.suffix}"

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (used in error messages)."""
        return f"{self.url}/{key}{self.suffix}"

    @property
    def index_url(self) -> str:
        """The full URL of the store's index."""
        return f"{self.url}/{INDEX_NAME}"

    def _location(self) -> str:
        """The store's URL, with the endpoint it talks to for gs:// when one is set (for error messages)."""
        endpoint = gcs_endpoint(self.storage_options) if self._protocol in ("gs", "gcs") else None
        return f"store {self.url} at {endpoint}" if endpoint else f"store {self.url}"

    async def _request(self, url: str, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await method(*args, **kwargs)`` under the store's retry policy, the only layer that retries it.

        `url` (the object's, or the store's for a listing) names the request in the error raised when retries
        run out, with the store and its endpoint: see `squirrel.aio.retry.with_retries`.
        """
        verb = _VERBS.get(method.__name__, method.__name__.strip("_"))
        return await with_retries(lambda: method(*args, **kwargs), self.retry, f"{verb} {url} ({self._location()})")

    # -- reading -------------------------------------------------------------------------------

    async def read_bytes(self, key: str, pool: BufferPool | None = None) -> bytes | memoryview:
        """The stored (possibly compressed) bytes of object `key`; `KeyError` if there is none.

        With a `pool`, local files are read into recycled buffers (see `squirrel.aio.buffer_pool`). With
        `verify_checksums`, the bytes are checked against the index (`DecodeError` "stale index").
        """
        index = await self._loaded_index() if self.verify_checksums else self._index
        fs = self._fs()
        path = self._path(key)
        try:
            if pool is not None and is_local(fs):
                data = await asyncio.to_thread(pool.read_file, path)
            else:
                data = await self._request(self.object_url(key), fs._cat_file, path)
        except FileNotFoundError:
            message = f"no key {key!r} in {self!r} (looked for {self.object_url(key)})"
            if index is not None and key in index:
                message += f"; the index {self.index_url} lists it: the index is stale, rewrite it with write_index()"
            raise KeyError(message) from None
        if self.verify_checksums and index is not None:
            await self._verify(key, data, index)
        return data

    async def _verify(self, key: str, data: bytes | memoryview, index: Index) -> None:
        entry = index.get(key)
        if entry is None:
            raise DecodeError(
                f"stale index: {self.object_url(key)} is not listed in the index {self.index_url} (written after "
                "indexing?); rewrite the index with write_index()"
            )
        if len(data) >= CHECKSUM_IN_THREAD_BYTES:
            await asyncio.to_thread(verify_object, entry, data, self.object_url(key), self.index_url)
        else:
            verify_object(entry, data, self.object_url(key), self.index_url)

    def decompress(self, key: str, data: bytes | memoryview) -> bytes | memoryview:
        """The stored bytes of object `key`, decompressed (pure CPU; zlib releases the GIL)."""
        return decompress(data, self.compression, self.object_url(key), self.max_decompressed_size)

    def decode(self, key: str, data: bytes | memoryview) -> list[Sample]:
        """Decompress and decode the bytes of object `key` (pure CPU; safe to run in a thread)."""
        return self.codec.decode(self.decompress(key, data), self.object_url(key))

    async def fetch(self, key: str) -> list[Sample]:
        """All samples of object `key`, decoded (large objects in a worker thread)."""
        data = await self.read_bytes(key)
        if len(data) >= DECODE_IN_THREAD_BYTES or self.compression is not None:
            return await asyncio.to_thread(self.decode, key, data)
        return self.decode(key, data)

    async def get(self, key: str) -> AsyncIterator[Sample]:
        """Yield the samples stored under `key` (one for a record store, a shard's worth otherwise)."""
        for sample in await self.fetch(key):
            yield sample

    async def list_keys(self) -> list[str]:
        """Every key in the store, sorted: from the index when there is one, else by listing the folder.

        A store whose folder does not exist yet is empty.
        """
        index = await self.read_index()
        if index is not None:
            return index.keys
        return sorted(await self._list_objects())

    async def _list_objects(self) -> dict[str, int]:
        """The stored size of every object under the root, by key, from a listing (never from the index)."""
        fs = self._fs()
        try:
            infos = await self._request(self.url, fs._ls, self._root, detail=True)
        except FileNotFoundError:
            await self._check_root_reachable(fs)
            return {}
        suffix, cut = self.suffix, len(self.suffix)
        sizes = {}
        for info in infos:
            base = info["name"].rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(suffix) and not base.startswith(".") and len(base) > cut:
                sizes[base[:-cut]] = info["size"]
        return sizes

    async def keys(self) -> AsyncIterator[str]:
        """Yield every key in the store, sorted."""
        for key in await self.list_keys():
            yield key

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        path = self._path(key)
        return await self._request(self.object_url(key), self._fs()._exists, path)

    # -- index ---------------------------------------------------------------------------------

    async def read_index(self) -> Index | None:
        """The store's index, read anew, or None when it has none.

        `DecodeError` naming the index if it is corrupt or was written for another suffix or compression.
        """
        fs = self._fs()
        try:
            data = await self._request(self.index_url, fs._cat_file, f"{self._root}/{INDEX_NAME}")
        except FileNotFoundError:
            index = None
        else:
            if len(data) >= DECODE_IN_THREAD_BYTES:
                index = await asyncio.to_thread(parse_index, data, self.index_url)
            else:
                index = parse_index(data, self.index_url)
            check_layout(index, self.suffix, self.compression, self.index_url)
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
        sizes = await self._list_objects()
        given = {entry.key: entry for entry in known}

        async def entry_of(key: str) -> IndexEntry:
            entry = given.get(key)
            if entry is not None and entry.size == sizes[key]:
                return entry
            data = await self._read_unverified(key)
            return await asyncio.to_thread(lambda: describe(key, data, len(self.decode(key, data))))

        entries = await AsyncIterableSource(sorted(sizes)).async_map(entry_of, max_concurrency).collect()
        index = build_index(self.suffix, self.compression, entries)
        await self._write_atomically(f"{self._root}/{INDEX_NAME}", dump_index(index))
        self._index, self._index_read = index, True
        return index

    async def _read_unverified(self, key: str) -> bytes:
        try:
            path = self._path(key)
            return await self._request(self.object_url(key), self._fs()._cat_file, path)
        except FileNotFoundError:
            raise KeyError(f"{self.object_url(key)} was deleted while the index was being written") from None

    async def _check_root_reachable(self, fs: AsyncFileSystem) -> None:
        """Raise `FileNotFoundError` when the store's bucket itself is missing (not just its folder)."""
        if self._protocol in LOCAL_PROTOCOLS:
            return
        bucket = self._root.split("/", 1)[0]
        if not await self._request(f"{self._protocol}://{bucket}", fs._exists, bucket):
            raise FileNotFoundError(f"bucket {bucket!r} of store {self.url} does not exist")

    # -- writing -------------------------------------------------------------------------------

    def _objects_of(self, item: Sample | Shard) -> list[tuple[str, Sequence[Sample]]]:
        if isinstance(item, Shard):
            if self.one_object_per_sample:
                return [(sample.key, [sample]) for sample in item.value]
            return [(item.key, item.value)]
        if isinstance(item, Sample):
            return [(item.key, [item])]
        raise TypeError(f"{type(self).__name__}.set takes a Sample or a Shard, got {type(item).__name__}")

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Encode and compress `samples` as the bytes of one object (pure CPU)."""
        return compress(self.codec.encode(samples), self.compression)

    async def set(self, item: Sample | Shard) -> list[IndexEntry]:
        """Store `item` atomically: a reader sees the old object or the new one, never a partial one.

        A record store writes each sample of a shard as its own object; a shard store writes a shard as
        one object and a lone sample as a one-sample shard under the sample's key. Returns the index
        entries of the objects written; the store's index itself is left alone (see `write_index`).
        """
        objects = self._objects_of(item)
        if len(objects) == 1:
            return [await self._put(*objects[0])]
        limit = asyncio.Semaphore(MAX_CONCURRENT_WRITES)

        async def put_bounded(key: str, samples: Sequence[Sample]) -> IndexEntry:
            async with limit:
                return await self._put(key, samples)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(put_bounded(key, samples)) for key, samples in objects]
        return [task.result() for task in tasks]

    async def _put(self, key: str, samples: Sequence[Sample]) -> IndexEntry:
        fs = self._fs()
        path = self._path(key)
        if is_local(fs):
            return await asyncio.to_thread(self._encode_and_write_local, key, path, samples)
        data, entry = await asyncio.to_thread(self._encode_and_describe, key, samples)
        await self._request(self.object_url(key), fs._pipe_file, path, data)
        return entry

    def _encode_and_describe(self, key: str, samples: Sequence[Sample]) -> tuple[bytes, IndexEntry]:
        data = self.encode(samples)
        return data, describe(key, data, len(samples))

    def _encode_and_write_local(self, key: str, path: str, samples: Sequence[Sample]) -> IndexEntry:
        data, entry = self._encode_and_describe(key, samples)
        write_local_atomically(path, data)
        return entry

    async def _write_atomically(self, path: str, data: bytes) -> None:
        fs = self._fs()
        if is_local(fs):
            await asyncio.to_thread(write_local_atomically, path, data)
        else:
            # an upload is published whole or not at all
            await self._request(self.url + path.removeprefix(self._root), fs._pipe_file, path, data)

    async def cleanup(self, older_than: float = 3600.0) -> list[str]:
        """Remove what crashed writers left behind, and return the paths removed.

        Only local stores have leftovers: hidden temp files of writes that never reached their rename.
        Files younger than `older_than` seconds are kept, as they may belong to writes still under way.
        Object stores publish an upload whole or not at all, so there is nothing to clean there.
        """
        fs = self._fs()
        if not is_local(fs):
            return []
        return await asyncio.to_thread(remove_stale_temp_files, self._root, older_than)

    async def delete(self, key: str) -> None:
        """Remove the object stored under `key`; `KeyError` if there is none."""
        try:
            path = self._path(key)
            await self._request(self.object_url(key), self._fs()._rm_file, path)
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r}") from None


def remove_stale_temp_files(folder: str, older_than: float) -> list[str]:
    """Delete the temp files of `write_local_atomically` in `folder` last modified over `older_than` s ago."""
    removed = []
    cutoff = time.time() - older_than
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(entry.path)
    return removed


def write_local_atomically(path: str, data: bytes) -> None:
    """Write `data` to a hidden temp file beside `path`, then rename it over `path` (atomic on POSIX).

    A writer killed midway leaves only a dot-file, which is never listed as a key.
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
