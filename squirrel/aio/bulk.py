"""Parallel bulk writer: group samples into shards, write them concurrently, then index the store once.

Shards are written on the running loop (bounded by `max_concurrency`), or as tasks on an executor such as a
`dask.distributed.Client`, where each task builds the store in its worker and writes its own shard (a dask
client is sent each shard by ``scatter``, straight to a worker, rather than inside the task through the
scheduler). Only `max_concurrency` shards are held at once, so memory stays bounded whatever the number of
samples. The index is written at the end from what the writes reported, without reading a shard back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal, get_args

from squirrel.aio.executors import await_executor_future
from squirrel.aio.stores.shard import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncIterableSource
from squirrel.sample import Sample, Shard, validate_key

if TYPE_CHECKING:
    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.index import IndexEntry

__all__ = ["DRIVERS", "WriteMode", "write_shard", "write_shards"]

WriteMode = Literal["create", "overwrite", "append"]
"""What `write_shards` does with what its url already holds."""

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
    mode: WriteMode = "create",
    **storage_options: Any,
) -> list[str]:
    """Write `samples` (`Sample`s or plain values) as shards of `shard_size` under `url`; return the shard keys.

    Shard ``i`` is stored under ``f"{key_prefix}_{i:06d}"``. With `executor` (a ``dask.distributed.Client``,
    or any executor with ``submit``) each shard is written by a task in a worker; otherwise on this loop.
    At most `max_concurrency` shards are in flight. A sync iterable is drawn a shard at a time in a worker
    thread, so producing samples never blocks the loop. The store's index is written once, at the end.

    `mode` says what happens to what `url` already holds:
    - ``"create"`` (the default): `url` must hold nothing at all; else `FileExistsError` naming it and
      what it holds, so a second run never mixes its shards with the first one's.
    - ``"overwrite"``: the new shards replace the store's objects of this driver and compression. They are
      numbered on past the old ones, the old index stays in place while they are written, and the old
      objects are removed only once the new index is in place: a reader sees the old dataset or the new
      one, never a mix. Files of other formats under `url` are left alone.
    - ``"append"``: the new shards are numbered on past the existing ones and indexed with them.

    `ValueError` for a bad `shard_size`, `driver`, `mode` or `key_prefix`.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {list(DRIVERS)}")
    if mode not in get_args(WriteMode):
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(get_args(WriteMode))}")
    validate_key(f"{key_prefix}_000000")
    async with DRIVERS[driver](url, compression, **storage_options) as store:
        old_keys, known = await _prepare(store, mode)
        first = _next_number(old_keys, key_prefix)
        write = (
            functools.partial(store.set, keep_index=True)
            if executor is None
            else functools.partial(_write_on, executor, store)
        )
        shards = (
            AsyncIterableSource(lambda: _chunks(samples, shard_size))
            .zip_index()
            .map(lambda numbered: Shard(_as_samples(numbered[1]), key=f"{key_prefix}_{first + numbered[0]:06d}"))
        )
        written = await shards.async_map(write, max_concurrency).collect()
        entries = [entry for entries in written for entry in entries]
        new_keys = [entry.key for entry in entries]
        if mode == "overwrite":
            await store.write_index(entries, only=new_keys)
            await _remove(store, [key for key in old_keys if key not in set(new_keys)], max_concurrency)
        else:
            await store.write_index([*known, *entries])
    return new_keys


def _as_samples(items: list[Any]) -> list[Sample]:
    """`items` with each plain value wrapped as a `Sample` (with a random key)."""
    return [item if isinstance(item, Sample) else Sample(item) for item in items]


async def _prepare(store: AsyncRecordStore, mode: WriteMode) -> tuple[list[str], list[IndexEntry]]:
    """The keys the store holds already and the entries of its index (to reuse), after checking `mode`."""
    if mode == "create":
        names = await store.list_names()
        if names:
            shown = ", ".join(repr(name) for name in names[:3]) + (", ..." if len(names) > 3 else "")
            raise FileExistsError(
                f"{store.url} is not empty: it holds {len(names)} object(s) ({shown}). Pass mode='overwrite' "
                "to replace its shards, mode='append' to add to them, or write to another url"
            )
        return [], []
    index = await store.read_index()  # `DecodeError` if it was written for another format
    return sorted(await store.list_objects()), [] if index is None else list(index.entries)


def _next_number(keys: Iterable[str], key_prefix: str) -> int:
    """One past the highest shard number among `keys` named ``f"{key_prefix}_{n:06d}"`` (0 if none is)."""
    head = f"{key_prefix}_"
    numbers = [int(key[len(head) :]) for key in keys if key.startswith(head) and key[len(head) :].isdecimal()]
    return max(numbers, default=-1) + 1


async def _remove(store: AsyncRecordStore, keys: list[str], max_concurrency: int) -> None:
    async def remove(key: str) -> None:
        with contextlib.suppress(KeyError):  # another writer removed it first
            await store.delete(key, keep_index=True)

    await AsyncIterableSource(keys).async_map(remove, max_concurrency).collect()


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
        return await store.set(shard, keep_index=True)  # `write_shards` writes the index at its end


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
