"""Async loaders: stream every sample of a store, fetching objects concurrently on the running loop.

A loader lists (or is given) keys, orders them (`plan_keys`: shuffled by seed and epoch, later split by
rank and worker), fetches up to `prefetch` objects ahead with at most `max_concurrency` requests at
once, decodes them off the loop, and yields samples, optionally shuffled within a buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource
from squirrel.buffers import ShuffleBuffer, make_rng
from squirrel.sample import validate_key


def plan_keys(keys: Iterable[str], shuffle_key_buffer: int, seed: int | str | None, epoch: int) -> list[str]:
    """The keys in the order they will be fetched: as given, or shuffled within `shuffle_key_buffer`.

    The order depends only on the keys, `seed` and `epoch` (a fresh random order when `seed` is None).
    """
    keys = [validate_key(key) for key in keys]
    if shuffle_key_buffer <= 1:
        return keys
    buffer = ShuffleBuffer(shuffle_key_buffer, make_rng(seed, epoch, "keys"))
    planned = [evicted for key in keys for evicted in buffer.push(key)]
    planned.extend(buffer.drain())
    return planned


def item_seed(seed: int | str | None, epoch: int) -> str | None:
    """The seed of the item-level shuffle, derived from `seed` and `epoch`."""
    return None if seed is None else f"{seed}:{epoch}:items"


class AsyncRecordLoader:
    """Streams the samples of a record store; the base of the shard loaders."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncRecordStore
    default_max_concurrency: ClassVar[int] = 64
    default_prefetch: ClassVar[int] = 128

    def __init__(self, url: str, compression: str | None = None, **storage_options: Any) -> None:
        self.url = url
        self.compression = compression
        self.storage_options = storage_options
        self._store = self.store_class(url, compression, **storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get_store(self) -> AsyncRecordStore:
        """The loader's store, for map-style access."""
        return self._store

    async def aclose(self) -> None:
        """Release the store's filesystem on the running loop."""
        await self._store.aclose()

    async def __aenter__(self) -> AsyncRecordLoader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def fetch_objects(
        self,
        key_iterator: Iterable[str] | None,
        max_concurrency: int | None,
        prefetch: int | None,
        shuffle_key_buffer: int,
        seed: int | str | None,
        epoch: int,
        fetch: Any,
    ) -> AsyncComposable:
        """A stream of ``fetch(key)`` results in planned key order, `prefetch` objects ahead at most.

        This is the loader's I/O half, shared by the async face (fetch = decoded samples) and the sync
        face (fetch = raw bytes, decoded in the consumer's thread).
        """
        store = self._store
        max_concurrency = max_concurrency or self.default_max_concurrency
        prefetch = max(prefetch or self.default_prefetch, 1)
        requests = asyncio.Semaphore(max_concurrency)

        async def planned_keys() -> AsyncIterator[str]:
            keys = list(key_iterator) if key_iterator is not None else await store.list_keys()
            for key in plan_keys(keys, shuffle_key_buffer, seed, epoch):
                yield key

        async def fetch_bounded(key: str) -> Any:
            async with requests:
                return await fetch(key)

        return AsyncIterableSource(planned_keys).async_map(fetch_bounded, max_concurrency=prefetch)

    def get_iter(
        self,
        key_iterator: Iterable[str] | None = None,
        max_concurrency: int | None = None,
        prefetch: int | None = None,
        shuffle_key_buffer: int = 1,
        shuffle_item_buffer: int = 1,
        seed: int | str | None = None,
        epoch: int = 0,
    ) -> AsyncComposable:
        """Every sample of the store (or of the objects in `key_iterator`) as an async stream.

        Args:
            key_iterator: keys to read, in this order; all keys of the store (sorted) when None.
            max_concurrency: requests in flight at once.
            prefetch: objects held ahead of the consumer, fetching or fetched (bounds memory).
            shuffle_key_buffer: shuffle keys within a buffer of this size (1: no shuffle).
            shuffle_item_buffer: shuffle samples within a buffer of this size (1: no shuffle).
            seed, epoch: together they fix the order; a new epoch gives a new order. With shuffle
                buffers and no seed, each iteration draws a fresh random order.
        """
        stream = self.fetch_objects(
            key_iterator, max_concurrency, prefetch, shuffle_key_buffer, seed, epoch, self._store.fetch
        ).flatten()
        if shuffle_item_buffer > 1:
            stream = stream.shuffle(shuffle_item_buffer, item_seed(seed, epoch))
        return stream


class AsyncMessagepackLoader(AsyncRecordLoader):
    """Streams the samples of a messagepack shard store."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncMessagepackStore
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8


class AsyncJsonlLoader(AsyncRecordLoader):
    """Streams the samples of a jsonl shard store."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncJsonlStore
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8
