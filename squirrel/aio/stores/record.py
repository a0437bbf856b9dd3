"""`AsyncRecordStore`: samples stored as objects under a root folder, over any async fsspec filesystem.

It is also the base of the shard stores: a subclass picks the codec and whether each sample is its own
object (record store) or each shard is (messagepack, jsonl, csv). Keys name objects directly under the
root (`Layout`). Its bases handle the rest: `StoreWrites` its writes (atomic, so a reader never sees half
an object) and deletes, `IndexedStore` its index (listing, counts, checksums).
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio.fs import LoopFilesystems
from squirrel.aio.operators import close
from squirrel.aio.pipeline import Fetched, Pass, Rest
from squirrel.aio.releasable import Releasable
from squirrel.aio.retry import NO_RETRY, RetryPolicy
from squirrel.aio.storage_options import check_storage_options, split_protocol
from squirrel.aio.stores.caching import cache_options, shard_cache, source_for
from squirrel.aio.stores.indexed import LOCAL_PROTOCOLS
from squirrel.aio.stores.layout import Layout
from squirrel.aio.stores.local import SIZE_PROBES, SMALL_OBJECT_BYTES, all_small, read_local_gzip
from squirrel.aio.stores.writes import StoreWrites
from squirrel.codec import COMPRESSIONS, Codec, MessagepackCodec, decompress
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, check_compression, check_level
from squirrel.errors import DecodeError
from squirrel.metrics import LoaderMetrics
from squirrel.plan import LoadPlan
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence

    from fsspec.asyn import AsyncFileSystem

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.aio.pipeline import ReadGroup
    from squirrel.codec.base import Buffer

__all__ = ["AsyncRecordStore"]


class AsyncRecordStore(StoreWrites, Releasable):
    """Map-style async access to a folder of samples, one msgpack object per sample.

    ``await store.set(sample)``, ``async for s in store.get(key)``, ``async for k in store.keys()``,
    ``await store.delete(key)``, ``await store.exists(key)``. Use it as ``async with`` (or call
    `aclose`) inside your own event loop so its network session is closed with it.

    Args:
        url: the store's folder: a local path, ``memory://...``, ``gs://bucket/prefix``.
        compression: None, "gzip" or "zstd" (objects get a ``.gz`` or ``.zst`` suffix).
        compression_level: the level written at (gzip 0-9, zstd 1-22); None (default): chosen per object,
            fast for data that does not compress (see `squirrel.codec.compression.compress`).
        max_decompressed_size: the largest object accepted after inflating (against decompression bombs).
        verify_checksums: check every object read against the size and crc32c in the store's index
            (`DecodeError` "stale index" on a mismatch).
        retry: the `RetryPolicy` of requests to an object store (local and memory:// are not retried).
        cache_dir, cache_limit: a local folder caching the objects read from an object store (gs://,
            s3://), at most `cache_limit` bytes (see `squirrel.aio.shard_cache`): loaders' passes and
            `get` read them from there once cached. Local disk and memory:// are read in place: there the
            cache is accepted and does nothing. Stores that stream objects in chunks (csv) cannot cache.
        **storage_options: options of the url's filesystem (``endpoint_url``, ``token``, ...); for gs://,
            squirrel's own ``max_connections=n`` bounds the HTTP connections open at once.

    Raises `ValueError` for an unknown compression or a level it does not take, a storage option the
    filesystem cannot honour, or a cache without a positive `cache_limit` (or on a store that cannot cache).
    """

    codec: Codec = MessagepackCodec()
    """The format of the store's objects: a class's default, which a store may replace with its own."""
    one_object_per_sample: ClassVar[bool] = True
    groups_small_objects: ClassVar[bool] = True
    """Whether small objects on local disk and memory:// are read in groups (csv streams each object)."""
    whole_objects: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        compression: str | None = None,
        *,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        verify_checksums: bool = False,
        retry: RetryPolicy | None = None,
        compression_level: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int | None = None,
        **storage_options: Any,
    ) -> None:
        self.cache_dir: str | None = None  # the store's own: None until `cache_options` checks the arguments
        self.cache_limit: int | None = None
        self.compression = check_compression(compression)
        self.compression_level = check_level(compression, compression_level)
        self.max_decompressed_size = max_decompressed_size
        self.verify_checksums = verify_checksums
        self.storage_options = storage_options
        check_storage_options(split_protocol(url)[0], storage_options, url=url, parameters=type(self).__init__)
        self.layout = Layout.of(url, self.codec.suffix + COMPRESSIONS[compression], storage_options)
        self.url, self.suffix = self.layout.url, self.layout.suffix  # the root URL; the objects' suffix
        self.cache_dir, self.cache_limit = cache_options(self, cache_dir, cache_limit)
        self.retry = retry or (NO_RETRY if self.layout.protocol in LOCAL_PROTOCOLS else RetryPolicy())
        self._filesystems = LoopFilesystems(self.layout.protocol, storage_options)
        super().__init__()

    async def aclose(self) -> None:
        """Release this store's filesystem on the running loop (closing its session if it was the last user)."""
        await self._filesystems.release()

    def _fs(self) -> AsyncFileSystem:
        return self._filesystems.get()

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (used in error messages)."""
        return self.layout.object_url(key)

    @property
    def reads_use_cpu(self) -> bool:
        """Whether reads are this machine's work (local disk, memory://), not a server's (see `SlowStart`)."""
        return self.layout.protocol in LOCAL_PROTOCOLS

    async def info(self, key: str) -> dict[str, Any]:
        """The filesystem's details of object `key` now (size, version...); `KeyError` if there is none."""
        try:
            info: dict[str, Any] = await self._request(self.object_url(key), self._fs()._info, self._object_path(key))
        except FileNotFoundError:
            raise self._missing(key) from None
        return info

    # -- reading -------------------------------------------------------------------------------

    def _missing(self, key: str) -> KeyError:
        message = f"no key {key!r} in {self!r} (looked for {self.object_url(key)})"
        if self._index is not None and key in self._index:
            message += f"; the index {self.index_url} lists it: the index is stale, rewrite it with write_index()"
        return KeyError(message)

    async def read_bytes(self, key: str) -> Buffer:
        """The stored (possibly compressed) bytes of object `key`; `KeyError` if there is none.

        With `verify_checksums`, the bytes are checked against the index (`DecodeError` "stale index").
        """
        index = await self._loaded_index() if self.verify_checksums else None
        try:
            data: Buffer = await self._request(self.object_url(key), self._fs()._cat_file, self._object_path(key))
        except FileNotFoundError:
            raise self._missing(key) from None
        if index is not None:
            await self._verify(key, data, index)
        return data

    def decompress(self, key: str, data: Buffer, pool: BufferPool | None = None) -> Buffer:
        """`data`, the stored bytes of object `key`, decompressed (pure CPU; zlib releases the GIL), into a
        recycled buffer of `pool` when given.

        `DecodeError` naming the object for corrupt data or data inflating past `max_decompressed_size`.
        """
        take = pool.take if pool is not None else None
        return decompress(data, self.compression, self.object_url(key), self.max_decompressed_size, take)

    def decode(self, key: str, data: Buffer) -> list[Sample]:
        """Decompress and decode `data`, the stored bytes of object `key` (pure CPU; safe to run in a thread).

        `DecodeError` naming the object if they are not a valid object of this store's codec.
        """
        return self.codec.decode(self.decompress(key, data), self.object_url(key))

    def object_pass(self, key: str) -> Pass:
        """A pipeline pass over the one object `key`: what `get` streams (and the sync face's `get`)."""
        source = source_for(self, shard_cache(self, self.cache_dir, self.cache_limit))
        return Pass(source, LoadPlan(), LoaderMetrics(), [validate_key(key)])

    async def get(self, key: str) -> AsyncIterator[Sample]:
        """Yield the samples stored under `key` (one for a record store, a shard's worth otherwise), through
        the pipeline: a large object is decoded in a worker thread, a csv object streamed in chunks.

        `KeyError` if there is none; `DecodeError` if it is bad (for csv, at the bad line, after the rows
        before it).
        """
        chunks = self.object_pass(key).chunks()
        try:
            async for chunk in chunks:
                for sample in chunk:
                    yield sample
        finally:
            await close(chunks)

    async def fetch(self, key: str) -> list[Sample]:
        """All samples of object `key`, in one list (see `get`)."""
        return [sample async for sample in self.get(key)]

    async def keys(self) -> AsyncIterator[str]:
        """Yield every key in the store, sorted."""
        for key in await self.list_keys():
            yield key

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return bool(await self._request(self.object_url(key), self._fs()._exists, self._object_path(key)))

    # -- the pipeline's hooks (see `squirrel.aio.pipeline.ObjectSource`) -------------------------

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """Read, check and inflate the objects `keys`: from local disk and memory:// in one worker thread (into
        `pool`'s recycled buffers if given), else as concurrent requests; a bad one comes with its `error` set."""
        if self.verify_checksums:
            await self._loaded_index()
        if self.layout.protocol in LOCAL_PROTOCOLS:
            return await asyncio.to_thread(self._read_group, self._blocking_read(pool), pool, keys)
        if len(keys) == 1:  # a `get`: no task to gather
            return [await self._read_remote(keys[0], pool)]
        return list(await asyncio.gather(*(self._read_remote(key, pool) for key in keys)))

    async def group_reader(self, keys: Sequence[str]) -> ReadGroup | None:
        """`fetch_objects` in the calling thread, for small objects on local disk or memory:// (a record store's;
        a shard store's when the first of `keys` are: `all_small`); None for the others (read one at a time)."""
        if not self.groups_small_objects or self.layout.protocol not in LOCAL_PROTOCOLS:
            return None
        if not self.one_object_per_sample and not await self._all_small(keys[:SIZE_PROBES]):
            return None
        if self.verify_checksums:
            await self._loaded_index()
        return functools.partial(self._read_group, self._blocking_read(None), None)

    async def _all_small(self, keys: Sequence[str]) -> bool:
        """`all_small` for the objects `keys`: by the sizes in the index this store last read when it lists
        them (no filesystem call: memory:// scans every object it holds for each size asked), else by the
        filesystem's."""
        index = self._index
        entries = [index.get(key) for key in keys] if index is not None else []
        if entries and all(entries):
            return all(entry.size <= SMALL_OBJECT_BYTES for entry in entries if entry is not None)
        size = os.path.getsize if self.layout.on_local_disk else self._fs().sync_fs.size
        return await asyncio.to_thread(all_small, size, [self._object_path(key) for key in keys])

    def _read_group(self, read: Callable[[str], Buffer], pool: BufferPool | None, keys: Sequence[str]) -> list[Fetched]:
        """The objects `keys`, each read with `read` in this thread, inflated into `pool`'s recycled buffers if
        given (see `fetch_objects`); gzip ones on local disk stream through the inflater from their file
        instead, unless their stored bytes are to be checked against the index first (`verify_checksums`)."""
        fetched = []
        streams = self.compression == "gzip" and self.layout.on_local_disk and not self.verify_checksums
        streamed = pool if streams else None  # where gzip files stream to
        for key in keys:
            path = self._object_path(key)
            try:
                if streamed is not None:
                    data = read_local_gzip(path, self.object_url(key), self.max_decompressed_size, streamed)
                else:
                    data = read(path)
                    if self.verify_checksums and self._index is not None:
                        self._verify_now(key, data, self._index)
                    if self.compression is not None:
                        data = self.decompress(key, data, pool)
                fetched.append(Fetched(key, data))
            except FileNotFoundError:
                fetched.append(Fetched(key, error=self._missing(key)))
            except (KeyError, DecodeError) as error:
                fetched.append(Fetched(key, error=error))
        return fetched

    async def _read_remote(self, key: str, pool: BufferPool | None) -> Fetched:
        try:
            return await self._inflated(key, await self.read_bytes(key), pool)
        except (KeyError, DecodeError) as error:
            return Fetched(key, error=error)

    async def _inflated(self, key: str, data: Buffer, pool: BufferPool | None) -> Fetched:
        """Object `key` as the pipeline takes it, from its stored bytes `data`, inflated into a recycled buffer
        of `pool` when given (`DecodeError` if bad)."""
        if self.compression is not None:  # inflating releases the GIL: threads use both cores
            data = await asyncio.to_thread(self.decompress, key, data, pool)
        return Fetched(key, data)

    def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """Objects of this store are read whole: there is never a rest of `fetched` (`NotImplementedError`)."""
        raise NotImplementedError(f"{type(self).__name__} reads objects whole")

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterable[Sequence[Sample]]:
        """The samples of one `fetched` (inflated) object, as one chunk (whole: `rest` is never read); made as
        they are taken where the codec can (`squirrel.codec.messagepack.SampleChunk`)."""
        decode = getattr(self.codec, "decode_chunk", self.codec.decode)
        return [decode(fetched.data, self.object_url(fetched.key))]
