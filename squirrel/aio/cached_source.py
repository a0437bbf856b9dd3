"""A store's objects read through a `squirrel.aio.shard_cache.ShardCache`: `CachedSource`, the pipeline's
`ObjectSource` for a cached pass, and the threads that write entries behind the passes (`cache_writer`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from typing import TYPE_CHECKING

from squirrel.aio.pipeline import Fetched
from squirrel.aio.shard_cache import Expected
from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.aio.pipeline import Rest
    from squirrel.aio.shard_cache import ShardCache
    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.sample import Sample

__all__ = ["CACHE_WRITERS", "CachedSource", "cache_writer"]

logger = logging.getLogger("squirrel")


class CachedSource:
    """A store's objects read through a `ShardCache`: the pipeline's `ObjectSource` for a cached pass.

    `expected` is what the store holds now, by key (from its index or listing); None: ask the store per
    object (one metadata request each). A key it does not list is read without the cache.

    A hit is read in one worker-thread hop, into the pass's recycled buffers. A miss is fetched, handed to
    the pass at once and written to the cache behind it, by `cache_writer` threads: the request's slot is
    free for the next object while the entry is written. The object's samples are delivered (`decode_object`)
    once its entry is written, so the writes pending are bounded by the objects the pass holds ahead, and a
    pass that ends has cached every object it fetched.
    """

    def __init__(self, store: AsyncRecordStore, cache: ShardCache, expected: Mapping[str, Expected] | None) -> None:
        self.store = store
        self.cache = cache
        self.expected = expected
        self._writes: dict[str, concurrent.futures.Future[bool]] = {}

    @property
    def whole_objects(self) -> bool:
        """As the store's (cached stores read whole objects)."""
        return self.store.whole_objects

    @property
    def reads_use_cpu(self) -> bool:
        """False: a cached store is an object store (its misses wait on the network)."""
        return False

    async def group_reader(self, keys: Sequence[str]) -> None:
        """None: a cached store is an object store, read one request per object (`fetch_objects`)."""
        return None

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key`."""
        return self.store.object_url(key)

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """Each object of `keys` from the cache if it holds it as the store does now, else from the store
        (then cached); a missing or bad object comes back with its `error` set."""
        if len(keys) == 1:  # the pipeline's one object per call: no task to wrap it in
            return [await self._fetch(keys[0], pool)]
        return list(await asyncio.gather(*(self._fetch(key, pool) for key in keys)))

    async def _fetch(self, key: str, pool: BufferPool | None) -> Fetched:
        url = self.store.object_url(key)
        try:
            expected = await self._expected(key)
            if expected is None:
                return (await self.store.fetch_objects([key], pool))[0]
            data = await asyncio.to_thread(self.cache.get, url, expected, pool, self.store.verify_checksums)
            if data is None:
                data = await self.store.read_bytes(key)
                self._writes[key] = cache_writer().submit(self.cache.put, url, data, expected)
            return await self.store._inflated(key, data, pool)
        except (KeyError, DecodeError) as error:
            return Fetched(key, error=error)

    async def _expected(self, key: str) -> Expected | None:
        if self.expected is not None:
            return self.expected.get(key)
        return Expected.of_info(await self.store.info(key))

    def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """Cached objects are read whole: there is never a rest."""
        return self.store.read_rest(fetched)

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterable[Sequence[Sample]]:
        """As the store decodes it, once the object's cache entry is written if the pass fetched it: written
        behind the pass while the object waited for its turn, so this waits only if the disk falls behind
        (on the async face's loop for a small object decoded there). An entry that could not be written (a
        full disk) is logged as a warning: the pass goes on, and the object is fetched again next time."""
        write = self._writes.pop(fetched.key, None)
        if write is not None:
            try:
                write.result()
            except OSError as error:  # a cache that cannot be written only costs a later fetch
                logger.warning("could not cache %s in %s: %s", self.object_url(fetched.key), self.cache.folder, error)
        return self.store.decode_object(fetched, rest)


CACHE_WRITERS = 2
"""Threads writing cache entries behind the passes of a process."""

_writer: concurrent.futures.ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def cache_writer() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that write this process's cache entries (created on first use, anew in a forked child:
    the parent's threads are not there). The interpreter finishes their writes before it exits."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = concurrent.futures.ThreadPoolExecutor(CACHE_WRITERS, thread_name_prefix="squirrel-cache")
        return _writer


def _forget_writer() -> None:
    global _writer, _writer_lock
    _writer, _writer_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_writer)
