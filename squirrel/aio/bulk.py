"""Parallel bulk writer: group samples into shards, write them concurrently, then index the store once.

Shards are written on the running loop (bounded by `max_concurrency`), or as tasks on an executor such as a
`dask.distributed.Client`, where each task opens the store in its worker and writes its own shard. With
`make_sample` the driver sends cheap items (ints, paths) inside each shard's task and the task makes the
samples itself: one task per shard does all the work, rather than one per sample. Without it, a dask client
is sent each shard's samples by ``scatter``, straight to a worker, rather than inside the task through the
scheduler. Only `max_concurrency` shards are held at once, so memory stays bounded whatever the number of
samples. The index is written at the end from what the writes reported, without reading a shard back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import reprlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sized
from typing import TYPE_CHECKING, Any, Literal, get_args

from squirrel.aio.executors import await_executor_future, is_async_callable
from squirrel.aio.operators import uninterrupted
from squirrel.aio.stores.shard import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncIterableSource
from squirrel.sample import Sample, Shard, validate_key

if TYPE_CHECKING:
    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.aio.stream import AsyncComposable
    from squirrel.index import IndexEntry

__all__ = ["DRIVERS", "WriteMode", "write_shard", "write_shards"]

WriteMode = Literal["create", "overwrite", "append"]
"""What `write_shards` does with what its url already holds."""

DRIVERS: dict[str, type[AsyncRecordStore]] = {"messagepack": AsyncMessagepackStore, "jsonl": AsyncJsonlStore}
"""The shard stores `write_shards` can write, by driver name."""

MakeSample = Callable[[Any], Any]
"""A plain function turning one item into a `Sample` (or a plain value, which gets a random key)."""


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
    make_sample: MakeSample | None = None,
    progress: bool = False,
    **storage_options: Any,
) -> list[str]:
    """Write `samples` as shards of `shard_size` under `url`, index the store, and return the shard keys.

    - `samples`: an iterable or async iterable of `Sample`s or plain values (a plain value gets a random
      key), or of items for `make_sample`. Drawn lazily, a shard at a time (a sync iterable in a worker
      thread, so producing samples never blocks the loop).
    - `url`: the store's root (local path, ``memory://``, ``gs://``, ``s3://``); with an `executor` whose
      workers are other processes, a url they can reach too (not ``memory://``).
    - `shard_size` (default 1000): samples per shard; the last shard holds the rest.
    - `executor` (default None: shards are written on this loop): a ``dask.distributed.Client``, or any
      executor with ``submit`` (``ThreadPoolExecutor``, ``ProcessPoolExecutor``); each shard is then written
      by one task, which opens the store in its worker.
    - `driver` (default ``"messagepack"``, or ``"jsonl"``) and `compression` (default None, or ``"gzip"``,
      ``"zstd"``): the format of the shards.
    - `max_concurrency` (default 16): shards in flight at once, and so held in memory at once.
    - `key_prefix` (default ``"shard"``): shard ``i`` is stored under ``f"{key_prefix}_{i:06d}"``.
    - `mode` (default ``"create"``), what happens to what `url` already holds:
      ``"create"``: `url` must hold nothing at all, else `FileExistsError` naming it and what it holds, so a
      second run never mixes its shards with the first one's. ``"overwrite"``: the new shards replace the
      store's objects of this driver and compression; they are numbered on past the old ones, the old
      index stays in place while they are written, and the old objects are removed only once the new index
      is in place, so a reader sees the old dataset or the new one, never a mix (files of other formats
      under `url` are left alone). ``"append"``: the new shards are numbered on past the existing ones and
      indexed with them.
    - `make_sample` (default None: `samples` are the samples): a plain function called on each item where
      its shard is built, i.e. inside the executor's task (in a dask worker), else in a worker thread. Pass
      cheap items (ints, paths) with it, so a cluster gets one task per shard and the items, not the
      samples, travel. It must be picklable for a process pool (dask also ships lambdas and functions of
      ``__main__``). An error it raises reaches the caller as itself, with a note naming the item, its
      position, the shard and the store.
    - `progress` (default False): show a tqdm bar of the samples and shards written, with the total when
      `samples` has a ``len()``.
    - `storage_options`: passed to the store: its own options (``compression_level=``, ``retry=``) and its
      filesystem's (e.g. ``token=`` for gs://).

    Raises `TypeError` for a `samples` that is not iterable, a `make_sample` that is not a plain function,
    an `executor` without ``submit`` or a non-int size; `ValueError` for a bad `shard_size`,
    `max_concurrency`, `driver`, `mode` or `key_prefix` (all before anything is written); `FileExistsError`
    as said for `mode`; whatever a write or `make_sample` raises (e.g. `EncodeError` for a value the format
    cannot hold). The index is written only when every shard was written.
    """
    _check_arguments(samples, shard_size, executor, max_concurrency, make_sample, progress)
    _check_choices(driver, mode, key_prefix)
    async with DRIVERS[driver](url, compression, **storage_options) as store:
        old_keys, known = await _prepare(store, mode)
        first = _next_number(old_keys, key_prefix)
        write = (
            functools.partial(_write_here, store, make_sample)
            if executor is None
            else functools.partial(_write_on, executor, store, make_sample)
        )
        shards = (
            AsyncIterableSource(lambda: _chunks(samples, shard_size))
            .zip_index()
            .map(lambda numbered: (f"{key_prefix}_{first + numbered[0]:06d}", numbered[1]))
        )
        written = shards.async_map(write, max_concurrency)
        entries = await _collect(written, _length(samples), shard_size, f"write_shards {store.url}", progress)
        new_keys = [entry.key for entry in entries]
        if mode == "overwrite":
            await store.write_index(entries, only=new_keys)
            await _remove(store, [key for key in old_keys if key not in set(new_keys)], max_concurrency)
        else:
            await store.write_index([*known, *entries])
    return new_keys


def _check_arguments(
    samples: object, shard_size: int, executor: object, max_concurrency: int, make_sample: object, progress: bool
) -> None:
    """`TypeError` or `ValueError` naming the first bad argument of `write_shards` (the types the
    annotations ask for, which a user's script may not honour)."""
    if isinstance(samples, str | bytes) or not isinstance(samples, Iterable | AsyncIterable):
        raise TypeError(
            f"samples must be an iterable or an async iterable of samples, got {type(samples).__name__} "
            f"{reprlib.repr(samples)} (the url comes second: write_shards(samples, url))"
        )
    for name, value in (("shard_size", shard_size), ("max_concurrency", max_concurrency)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            f"executor must have a submit method (a dask.distributed.Client, a ThreadPoolExecutor...), got {executor!r}"
        )
    if make_sample is not None and not callable(make_sample):
        raise TypeError(f"make_sample must be a function of one item, got {make_sample!r}")
    if make_sample is not None and is_async_callable(make_sample):
        raise TypeError(
            f"make_sample must be a plain function (it runs inside the task that writes each shard), "
            f"got the async {make_sample!r}"
        )
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")


def _check_choices(driver: str, mode: str, key_prefix: str) -> None:
    """`ValueError` for an unknown `driver` or `mode`, or a `key_prefix` that makes bad keys."""
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {list(DRIVERS)}")
    if mode not in get_args(WriteMode):
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(get_args(WriteMode))}")
    validate_key(f"{key_prefix}_000000")


def _length(samples: object) -> int | None:
    """``len(samples)`` when it has one, else None (a generator, a stream of unknown length)."""
    if not isinstance(samples, Sized):
        return None
    try:
        return len(samples)
    except TypeError:  # a stream that knows its length only sometimes
        return None


async def _collect(
    written: AsyncComposable, total: int | None, shard_size: int, description: str, progress: bool
) -> list[IndexEntry]:
    """The index entries of every shard `written` reports, in order; with `progress`, a tqdm bar of the
    samples written (of `total` when known) and the shards (of ``ceil(total / shard_size)``)."""
    from tqdm.auto import tqdm

    shards_total = "" if total is None else f"/{-(-total // shard_size)}"
    entries: list[IndexEntry] = []
    with tqdm(total=total, unit="sample", desc=description, disable=not progress) as bar:
        async for shard, shard_entries in written.zip_index():
            entries.extend(shard_entries)
            bar.set_postfix_str(f"shards={shard + 1}{shards_total}", refresh=False)
            bar.update(sum(entry.samples for entry in shard_entries))
    return entries


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


async def _write_here(
    store: AsyncRecordStore, make_sample: MakeSample | None, shard: tuple[str, list[Any]]
) -> list[IndexEntry]:
    """Build shard ``(key, items)`` (in a thread when it calls `make_sample`) and write it on this loop."""
    key, items = shard
    if make_sample is None:
        built = _build_shard(store.url, key, items)
    else:
        built = await asyncio.to_thread(_build_shard, store.url, key, items, make_sample)
    return await store.set(built, keep_index=True)


async def _write_on(
    executor: Any, store: AsyncRecordStore, make_sample: MakeSample | None, shard: tuple[str, list[Any]]
) -> list[IndexEntry]:
    """Have one task of `executor` build and write shard ``(key, items)``; its index entries."""
    key, items = shard
    entries: list[IndexEntry]  # what `write_shard` returns, from the executor (whose futures are untyped)
    if hasattr(executor, "scatter"):  # a dask client; every task runs (pure=False)
        data = items
        if make_sample is None:  # samples go to a worker directly, not through the scheduler in the task;
            # cheap items for `make_sample` go in the task (a scatter costs more than sending them)
            (data,) = await asyncio.to_thread(executor.scatter, [items], hash=False)  # 1 object, not len(items)
        future = executor.submit(write_shard, store, key, data, make_sample, pure=False)
    else:
        future = executor.submit(write_shard, store, key, items, make_sample)
    entries = await await_executor_future(future)
    return entries


def write_shard(
    store: AsyncRecordStore, key: str, items: list[Any], make_sample: MakeSample | None = None
) -> list[IndexEntry]:
    """Build the shard `key` from `items` (each through `make_sample` when given: see `_build_shard`) and
    write it to `store`, with a loop of its own
    (an executor's task, e.g. in a dask worker), closing the store after; the shard's index entries.

    Top level, so executors that pickle their tasks can ship it. Raises what `_build_shard` or the write raises.
    """
    shard = _build_shard(store.url, key, items, make_sample)
    return asyncio.run(_set_and_close(store, shard))


def _build_shard(url: str, key: str, items: list[Any], make_sample: MakeSample | None = None) -> Shard:
    """The shard `key` of the store at `url` holding ``make_sample(item)`` for each item (the items
    themselves without `make_sample`), a plain value wrapped as a `Sample` with a random key.

    An error of `make_sample` is raised as itself, with a note naming the item, its position, `key` and `url`.
    """
    if make_sample is None:
        return Shard(_as_samples(items), key=key)
    made = []
    for position, item in enumerate(items):
        try:
            made.append(make_sample(item))
        except Exception as error:
            error.add_note(f"raised by make_sample({reprlib.repr(item)}) for item {position} of shard {key!r} of {url}")
            raise
    return Shard(_as_samples(made), key=key)


async def _set_and_close(store: AsyncRecordStore, shard: Shard) -> list[IndexEntry]:
    async with store:
        return await store.set(shard, keep_index=True)  # `write_shards` writes the index at its end


async def _chunks(samples: Iterable[Any] | AsyncIterable[Any], size: int) -> AsyncIterator[list[Any]]:
    """Lists of `size` items (the last one shorter); a sync iterable is drawn in a thread, a list per hop.

    Its iterator is also made and closed in a thread: a sync loader's stream (``write_shards(loader.get_iter(),
    url)``, a re-shard or a conversion) starts and stops its pass by waiting on this loop, which it must
    not block."""
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
    iterator = await asyncio.to_thread(iter, samples)
    try:
        # uninterrupted: a cancelled hop would leave its thread inside the iterator while another closes it
        while chunk := await uninterrupted(asyncio.to_thread(list, itertools.islice(iterator, size))):
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await uninterrupted(asyncio.to_thread(close))
