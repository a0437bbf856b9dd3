"""`AsyncRecordStore`: samples stored as objects under a root folder, over any async fsspec filesystem.

It is also the base of the shard stores: a subclass picks the codec and whether each sample is its own
object (record store) or each shard is (messagepack, jsonl). Keys name objects directly under the root
(``<root>/<key><suffix>``); writes are atomic, so a reader never sees half an object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Self

from fsspec.asyn import AsyncFileSystem

from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.fs import acquire_filesystem, is_local, release_filesystem, split_protocol
from squirrel.codec import COMPRESSIONS, Codec, MessagepackCodec, compress, decompress
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, check_compression
from squirrel.sample import Sample, Shard, validate_key

DECODE_IN_THREAD_BYTES = 256 * 1024
"""Objects at least this large are decoded in a worker thread, so the IO loop keeps serving requests."""

MAX_CONCURRENT_WRITES = 64
"""Bound on objects written at once by one `set` (a shard written into a record store)."""


class AsyncRecordStore:
    """Map-style async access to a folder of samples, one msgpack object per sample.

    ``await store.set(sample)``, ``async for s in store.get(key)``, ``async for k in store.keys()``,
    ``await store.delete(key)``, ``await store.exists(key)``. Use it as ``async with`` (or call
    `aclose`) inside your own event loop so its network session is closed with it.
    """

    codec: ClassVar[Codec] = MessagepackCodec()
    one_object_per_sample: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        compression: str | None = None,
        *,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        **storage_options: Any,
    ) -> None:
        self.url = url.rstrip("/") if url.rstrip("/") else url
        self.compression = check_compression(compression)
        self.max_decompressed_size = max_decompressed_size
        self.storage_options = storage_options
        self.suffix = self.codec.suffix + COMPRESSIONS[compression]
        self._protocol, _ = split_protocol(self.url)
        self._filesystems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncFileSystem] = (
            weakref.WeakKeyDictionary()
        )
        self._root: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_filesystems"] = None  # loop-bound: each process opens its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._filesystems = weakref.WeakKeyDictionary()

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

    # -- reading -------------------------------------------------------------------------------

    async def read_bytes(self, key: str, pool: BufferPool | None = None) -> bytes | memoryview:
        """The stored (possibly compressed) bytes of object `key`; `KeyError` if there is none.

        With a `pool`, local files are read into recycled buffers (see `squirrel.aio.buffer_pool`).
        """
        fs = self._fs()
        path = self._path(key)
        try:
            if pool is not None and is_local(fs):
                return await asyncio.to_thread(pool.read_file, path)
            return await fs._cat_file(path)
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r} (looked for {self.object_url(key)})") from None

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
        """Every key in the store, sorted. A store whose folder does not exist yet is empty."""
        fs = self._fs()
        try:
            names = await fs._ls(self._root, detail=False)
        except FileNotFoundError:
            await self._check_root_reachable(fs)
            return []
        suffix, cut = self.suffix, len(self.suffix)
        keys = []
        for name in names:
            base = name.rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(suffix) and not base.startswith(".") and len(base) > cut:
                keys.append(base[:-cut])
        keys.sort()
        return keys

    async def keys(self) -> AsyncIterator[str]:
        """Yield every key in the store, sorted."""
        for key in await self.list_keys():
            yield key

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return await self._fs()._exists(self._path(key))

    async def _check_root_reachable(self, fs: AsyncFileSystem) -> None:
        """Raise `FileNotFoundError` when the store's bucket itself is missing (not just its folder)."""
        if self._protocol in ("file", "local", "memory"):
            return
        bucket = self._root.split("/", 1)[0]
        if not await fs._exists(bucket):
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

    async def set(self, item: Sample | Shard) -> None:
        """Store `item` atomically: a reader sees the old object or the new one, never a partial one.

        A record store writes each sample of a shard as its own object; a shard store writes a shard as
        one object and a lone sample as a one-sample shard under the sample's key.
        """
        objects = self._objects_of(item)
        if len(objects) == 1:
            await self._put(*objects[0])
            return
        limit = asyncio.Semaphore(MAX_CONCURRENT_WRITES)

        async def put_bounded(key: str, samples: Sequence[Sample]) -> None:
            async with limit:
                await self._put(key, samples)

        async with asyncio.TaskGroup() as group:
            for key, samples in objects:
                group.create_task(put_bounded(key, samples))

    async def _put(self, key: str, samples: Sequence[Sample]) -> None:
        fs = self._fs()
        path = self._path(key)
        if is_local(fs):
            await asyncio.to_thread(self._encode_and_write_local, path, samples)
        else:
            data = await asyncio.to_thread(self.encode, samples)
            await fs._pipe_file(path, data)

    def _encode_and_write_local(self, path: str, samples: Sequence[Sample]) -> None:
        write_local_atomically(path, self.encode(samples))

    async def delete(self, key: str) -> None:
        """Remove the object stored under `key`; `KeyError` if there is none."""
        try:
            await self._fs()._rm_file(self._path(key))
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r}") from None


def write_local_atomically(path: str, data: bytes) -> None:
    """Write `data` to a hidden temp file beside `path`, then rename it over `path` (atomic on POSIX).

    A writer killed midway leaves only a dot-file, which is never listed as a key.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
