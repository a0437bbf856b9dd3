"""The sync stream operators, each a generator over an iterator, run in the consumer's thread.

Their async twins live in `squirrel.aio.operators`; batching and shuffling are shared through
`squirrel.batching` and `squirrel.order`.
Closing a generator (break, error, garbage collection) cancels work in flight and joins owned threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from squirrel._runtime import io_loop, run_sync
from squirrel.aio.executors import is_async_callable
from squirrel.batching import Batcher
from squirrel.metrics import LoaderMetrics
from squirrel.metrics import report as metrics_report
from squirrel.order import ShuffleBuffer, make_rng

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

_DONE = object()


class _Failure:
    """An error raised in a producer thread, carried through the queue to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _ConsumerLeft(Exception):
    """Raised where a prefetch producer thread waits on upstream work once its consumer has left."""


def _stop_event() -> threading.Event | None:
    """The stop event of the prefetch producer thread running this code (set when its consumer leaves), if any."""
    return getattr(threading.current_thread(), "squirrel_stop", None)


def _wait_first(futures: Iterable[concurrent.futures.Future[Any]]) -> None:
    """Wait until one of `futures` is done; in a prefetch producer, give up once its consumer has left."""
    stop = _stop_event()
    if stop is None:
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        return
    while not concurrent.futures.wait(futures, timeout=0.05, return_when=concurrent.futures.FIRST_COMPLETED).done:
        if stop.is_set():
            raise _ConsumerLeft


def map_items(source: Iterator[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """`fn(item)` for each item."""
    for item in source:
        yield fn(item)


def filter_items(source: Iterator[Any], predicate: Callable[[Any], Any]) -> Iterator[Any]:
    """Items for which `predicate` is true."""
    for item in source:
        if predicate(item):
            yield item


def as_concurrent_future(future: Any) -> concurrent.futures.Future[Any]:
    """A `concurrent.futures.Future` mirroring `future` (already one, or e.g. a dask future).

    Cancelling the mirror cancels `future`; a result arriving after that is dropped.
    """
    if isinstance(future, concurrent.futures.Future):
        return future
    mirror: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def transfer(done: Any) -> None:
        if not mirror.set_running_or_notify_cancel():
            return
        try:
            result = done.result()
        except BaseException as exc:
            mirror.set_exception(exc)
        else:
            mirror.set_result(result)

    def cancel_source(settled: concurrent.futures.Future[Any]) -> None:
        if settled.cancelled():
            future.cancel()

    mirror.add_done_callback(cancel_source)
    future.add_done_callback(transfer)
    return mirror


def async_map_items(  # noqa: C901  (to split: the coroutine and the executor paths; see closing note)
    source: Iterator[Any],
    fn: Callable[[Any], Any],
    max_concurrency: int,
    ordered: bool,
    executor: Any | None,
) -> Iterator[Any]:
    """`fn(item)` with at most `max_concurrency` calls in flight, in source order unless not `ordered`.

    Coroutine functions run on the IO loop; plain functions on `executor` or an owned thread pool.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    owned_pool = None
    settle = None
    if is_async_callable(fn):
        loop = io_loop()
        running: set[asyncio.Task[Any]] = set()  # the calls under way; only touched on the IO loop

        async def run(item: Any) -> Any:
            task = asyncio.current_task()
            running.add(task)
            task.add_done_callback(running.discard)
            return await fn(item)

        async def settle() -> None:  # cancel the calls still under way and wait until they have ended
            tasks = list(running)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def submit(item: Any) -> concurrent.futures.Future[Any]:
            return asyncio.run_coroutine_threadsafe(run(item), loop)
    else:
        if executor is None:
            owned_pool = executor = concurrent.futures.ThreadPoolExecutor(
                min(max_concurrency, 32), thread_name_prefix="squirrel-map"
            )
        pool = executor

        def submit(item: Any) -> concurrent.futures.Future[Any]:
            return as_concurrent_future(pool.submit(fn, item))

    pending: deque[concurrent.futures.Future[Any]] = deque()

    def finished() -> Iterator[Any]:
        if ordered:
            _wait_first([pending[0]])
            yield pending.popleft().result()
            return
        _wait_first(pending)
        for future in [f for f in pending if f.done()]:
            pending.remove(future)
            yield future.result()

    try:
        for item in source:
            pending.append(submit(item))
            while len(pending) >= max_concurrency:
                yield from finished()
        while pending:
            yield from finished()
    finally:
        for future in pending:
            future.cancel()
        if settle is not None and pending and not sys.is_finalizing():
            run_sync(settle())
        if owned_pool is not None:
            owned_pool.shutdown(wait=True, cancel_futures=True)


def prefetch_items(source: Iterator[Any], size: int) -> Iterator[Any]:  # noqa: C901  (split it with the stop event)
    """Pull up to `size` items ahead of the consumer in a background thread."""
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Failure(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="squirrel-prefetch", daemon=True)
    producer.squirrel_stop = stop  # type: ignore[attr-defined]  # lets upstream waits give up (see _wait_first)
    producer.start()
    outer_stop = _stop_event()  # set if this prefetch itself runs in another prefetch's producer
    try:
        while True:
            try:
                item = buffer.get(timeout=None if outer_stop is None else 0.05)
            except queue.Empty:
                if outer_stop is not None and outer_stop.is_set():
                    raise _ConsumerLeft from None
                continue
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        producer.join()


def batched_items(
    source: Iterator[Any], size: int, drop_last_if_not_full: bool, collation_fn: Callable[[list[Any]], Any] | None
) -> Iterator[Any]:
    """Lists of `size` items (the last one shorter unless dropped), optionally collated."""
    batcher = Batcher(size, drop_last_if_not_full, collation_fn)
    for item in source:
        yield from batcher.push(item)
    yield from batcher.drain()


def shuffle_items(source: Iterator[Any], size: int, seed: int | str | None) -> Iterator[Any]:
    """Items shuffled within a buffer of `size`; the same seed gives the same order."""
    buffer = ShuffleBuffer(size, make_rng(seed, "shuffle"))
    for item in source:
        yield from buffer.push(item)
    yield from buffer.drain()


def take_items(source: Iterator[Any], n: int) -> Iterator[Any]:
    """The first `n` items; stops pulling from the source after them."""
    if n <= 0:
        return
    for count, item in enumerate(source, start=1):
        yield item
        if count >= n:
            return


def flatten_items(source: Iterator[Iterable[Any]]) -> Iterator[Any]:
    """The elements of each item."""
    for item in source:
        yield from item


def zip_index_items(source: Iterator[Any]) -> Iterator[tuple[int, Any]]:
    """``(index, item)`` pairs, counting from 0."""
    yield from enumerate(source)


def monitor_items(
    source: Iterator[Any], callback: Callable[[dict[str, Any]], Any], every: float, sources: list[LoaderMetrics]
) -> Iterator[Any]:
    """Pass items through; every `every` seconds and at the end, call `callback` with the item count and
    rate, and the counters of upstream loaders (bytes fetched and their rate, fetches in flight, skips)."""
    started = last = time.monotonic()
    count = 0

    def report() -> None:
        callback(metrics_report(count, time.monotonic() - started, sources))

    for item in source:
        count += 1
        yield item
        if time.monotonic() - last >= every:
            last = time.monotonic()
            report()
    report()
