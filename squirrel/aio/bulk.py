"""Parallel bulk writer: group samples into shards, write them concurrently, then index the store once.

Shards are written on the running loop (bounded by `max_concurrency`), or as tasks on an executor such as a
`dask.distributed.Client`, where each task builds the store in its worker and writes its own shard (a dask
client is sent each shard by ``scatter``, straight to a worker, rather than inside the task through the
scheduler). Only `max_concurrency` shards are held at once, so memory stays bounded whatever the number of
samples. The index is written at the end from what the writes reported, without reading a shard back.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from squirrel.aio.executors import await_executor_future
from squirrel.aio.stores.shard import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncIterableSource
from squirrel.sample import Shard, validate_key

if TYPE_CHECKING:
    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.index import IndexEntry

__all__ = ["DRIVERS", "write_shard", "write_shards"]

DRIVERS: dict[str, type[AsyncRecordStore]] = {"messagepack": AsyncMessagepackStore, "jsonl": AsyncJsonlStore}
"""The shard stores `write_shards` can write, by driver name."""


async def write_shards(
    samples: Iterable[Any] | AsyncIterable[Any],
    url: str,
    shard_size: int = 1000,
    executor: Any | None = None,
    driver: str = "messagepack",
    compression: str | None = None,
    max_concurrency: int = 16,
    key_prefix: str = "shard",
    **storage_options: Any,
) -> list[str]:
    """Write `samples` (`Sample`s or plain values) as shards of `shard_size` under `url`; return the shard keys.

    Shard ``i`` is stored under ``f"{key_prefix}_{i:06d}"``. With `executor` (a ``dask.distributed.Client``,
    or any executor with ``submit``) each shard is written by a task in a worker; otherwise on this loop.
    At most `max_concurrency` shards are in flight. A sync iterable is drawn a shard at a time in a worker
    thread, so producing samples never blocks the loop. The store's index is written once, at the end.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {list(DRIVERS)}")
    validate_key(f"{key_prefix}_000000")
    async with DRIVERS[driver](url, compression, **storage_options) as store:
        write = store.set if executor is None else functools.partial(_write_on, executor, store)
        shards = (
            AsyncIterableSource(lambda: _chunks(samples, shard_size))
            .zip_index()
            .map(lambda numbered: Shard(numbered[1], key=f"{key_prefix}_{numbered[0]:06d}"))
        )
        written = await shards.async_map(write, max_concurrency).collect()
        entries = [entry for entries in written for entry in entries]
        await store.write_index(entries)
    return [entry.key for entry in entries]


async def _write_on(executor: Any, store: AsyncRecordStore, shard: Shard) -> list[IndexEntry]:
    entries: list[IndexEntry]  # what `write_shard` returns, from the executor (whose futures are untyped)
    if hasattr(executor, "scatter"):  # a dask client: data to a worker directly, and every task runs (pure=False)
        data = await asyncio.to_thread(executor.scatter, shard, hash=False)
        entries = await await_executor_future(executor.submit(write_shard, store, data, pure=False))
    else:
        entries = await await_executor_future(executor.submit(write_shard, store, shard))
    return entries


def write_shard(store: AsyncRecordStore, shard: Shard) -> list[IndexEntry]:
    """Write one shard with a loop of its own (an executor's task, e.g. in a dask worker) and close it after."""
    return asyncio.run(_set_and_close(store, shard))


async def _set_and_close(store: AsyncRecordStore, shard: Shard) -> list[IndexEntry]:
    async with store:
        return await store.set(shard)


async def _chunks(samples: Iterable[Any] | AsyncIterable[Any], size: int) -> AsyncIterator[list[Any]]:
    """Lists of `size` items (the last one shorter); a sync iterable is drawn in a thread, a list per hop."""
    if isinstance(samples, AsyncIterable):
        chunk = []
        async for item in samples:
            chunk.append(item)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    iterator = iter(samples)
    while chunk := await asyncio.to_thread(list, itertools.islice(iterator, size)):
        yield chunk
