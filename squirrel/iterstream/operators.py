"""The sync stream operators, each a generator over an iterator, run in the consumer's thread.

Their async twins live in `squirrel.aio.operators`; batching and shuffling are shared through
`squirrel.batching` and `squirrel.order`.
Closing a generator (break, error, garbage collection) cancels work in flight and joins owned threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import queue
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from squirrel._runtime import io_loop, run_sync
from squirrel.aio.executors import is_async_callable
from squirrel.markers import DONE, Failure
from squirrel.metrics import LoaderMetrics
from squirrel.metrics import report as metrics_report

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from squirrel.batching import Grouper
    from squirrel.stages import Stage
    from squirrel.transforms import MapCalls

__all__ = [
    "as_concurrent_future",
    "async_map_items",
    "filter_items",
    "flatten_items",
    "grouped_items",
    "map_items",
    "monitor_items",
    "prefetch_items",
    "take_items",
    "tqdm_items",
    "zip_index_items",
]


class _ConsumerLeft(Exception):
    """Raised where a prefetch producer thread waits on upstream work once its consumer has left."""


_PRODUCER_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "squirrel_prefetch_stop", default=None
)
"""In a prefetch's producer thread, the event its consumer sets on leaving (each thread has its own context)."""


def _stop_event() -> threading.Event | None:
    """The stop event of the prefetch producer thread running this code (set when its consumer leaves), if any."""
    return _PRODUCER_STOP.get()


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


class _LoopCalls:
    """The calls of a coroutine function `fn` for `async_map_items`, each a task on the IO loop."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.loop = io_loop()
        self.running: set[asyncio.Task[Any]] = set()  # the calls under way; only touched on the IO loop

    async def _run(self, item: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None  # run_coroutine_threadsafe runs each call as a task
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return await self.fn(item)

    def submit(self, item: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(self._run(item), self.loop)

    async def _settle(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self, abandoned: bool) -> None:
        """After `abandoned` calls were cancelled: cancel the calls still under way and wait until they have ended."""
        if abandoned and not sys.is_finalizing():
            run_sync(self._settle())


class _PoolCalls:
    """The calls of a plain function `fn` for `async_map_items`, on `executor` or on a thread pool owned here."""

    def __init__(self, fn: Callable[[Any], Any], executor: Any | None, max_concurrency: int) -> None:
        self.fn = fn
        self.owned_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if executor is None:
            self.owned_pool = executor = concurrent.futures.ThreadPoolExecutor(
                min(max_concurrency, 32), thread_name_prefix="squirrel-map"
            )
        self.executor = executor

    def submit(self, item: Any) -> concurrent.futures.Future[Any]:
        return as_concurrent_future(self.executor.submit(self.fn, item))

    def close(self, abandoned: bool) -> None:
        """Shut the owned thread pool down (its calls were cancelled), waiting for the calls under way."""
        if self.owned_pool is not None:
            self.owned_pool.shutdown(wait=True, cancel_futures=True)


def _finished(pending: deque[concurrent.futures.Future[Any]], ordered: bool) -> Iterator[Any]:
    """Results of `pending` calls once one is done: the oldest call's if `ordered`, else every done call's."""
    if ordered:
        _wait_first([pending[0]])
        yield pending.popleft().result()
        return
    _wait_first(pending)
    for future in [f for f in pending if f.done()]:
        pending.remove(future)
        yield future.result()


def async_map_items(source: Iterator[Any], fn: Callable[[Any], Any], options: MapCalls) -> Iterator[Any]:
    """`fn(item)` with at most ``options.max_concurrency`` calls in flight, in source order if ``options.ordered``.

    Coroutine functions run on the IO loop; plain functions on ``options.executor`` or an owned thread pool.
    """
    max_concurrency, ordered = options.max_concurrency, options.ordered
    calls = _LoopCalls(fn) if is_async_callable(fn) else _PoolCalls(fn, options.executor, max_concurrency)
    pending: deque[concurrent.futures.Future[Any]] = deque()
    try:
        for item in source:
            pending.append(calls.submit(item))
            while len(pending) >= max_concurrency:
                yield from _finished(pending, ordered)
        while pending:
            yield from _finished(pending, ordered)
    finally:
        for future in pending:
            future.cancel()
        calls.close(abandoned=bool(pending))


class _Prefetcher(threading.Thread):
    """The producer thread of a prefetch: pulls `source` into `buffer` (at most `size` items) until its
    consumer leaves, which sets `stop` (upstream waits in this thread then give up, see `_wait_first`)."""

    def __init__(self, source: Iterator[Any], size: int) -> None:
        super().__init__(name="squirrel-prefetch", daemon=True)
        self.source = source
        self.buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.stop = threading.Event()

    def put(self, item: Any) -> bool:
        """Put `item` in the buffer once there is room; False if the consumer left first."""
        while not self.stop.is_set():
            try:
                self.buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        _PRODUCER_STOP.set(self.stop)  # this thread's own context: code upstream finds the event there
        source = self.source
        try:
            for item in source:
                if not self.put(item):
                    return
            self.put(DONE)
        except BaseException as exc:
            self.put(Failure(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def _take(buffer: queue.Queue[Any], outer_stop: threading.Event | None) -> Any:
    """The next item of a prefetch's `buffer` (`DONE` after the last), or the error raised upstream.

    `outer_stop` is the stop event of the prefetch whose producer runs this one, if any: `_ConsumerLeft` once set.
    """
    while True:
        try:
            item = buffer.get(timeout=None if outer_stop is None else 0.05)
        except queue.Empty:
            if outer_stop is not None and outer_stop.is_set():
                raise _ConsumerLeft from None
            continue
        if isinstance(item, Failure):
            raise item.error
        return item


def prefetch_items(source: Iterator[Any], size: int) -> Iterator[Any]:
    """Pull up to `size` items ahead of the consumer in a background thread."""
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    producer = _Prefetcher(source, size)
    producer.start()
    outer_stop = _stop_event()  # set if this prefetch itself runs in another prefetch's producer
    try:
        while (item := _take(producer.buffer, outer_stop)) is not DONE:
            yield item
    finally:
        producer.stop.set()
        producer.join()


def grouped_items(source: Iterator[Any], new_grouper: Callable[[], Grouper[Any]]) -> Iterator[Any]:
    """What a fresh ``new_grouper()`` (a batcher, sliding window or shuffle buffer) releases as the items of
    `source` go in, then what it still holds."""
    grouper = new_grouper()
    for item in source:
        yield from grouper.push(item)
    yield from grouper.drain()


def take_items(source: Iterator[Any], n: int | None) -> Iterator[Any]:
    """The first `n` items (all when None); stops pulling from the source after them."""
    if n is None:
        yield from source
        return
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


def tqdm_items(source: Iterator[Any], tqdm_kwargs: dict[str, Any], upstream: Stage) -> Iterator[Any]:
    """Pass items through, counting them on a ``tqdm.auto.tqdm(**tqdm_kwargs)`` progress bar, of
    ``total=upstream.length()`` unless `tqdm_kwargs` gives one (asked once the pass has started: a loader's
    pass has read its store's index by then)."""
    from tqdm.auto import tqdm

    if "total" not in tqdm_kwargs:
        tqdm_kwargs = {**tqdm_kwargs, "total": upstream.length()}
    with tqdm(**tqdm_kwargs) as bar:
        for item in source:
            bar.update(1)
            yield item


def zip_index_items(source: Iterator[Any], pad_length: int | None) -> Iterator[tuple[int | str, Any]]:
    """``(index, item)`` pairs, counting from 0; the index a string of at least `pad_length` digits if given."""
    if pad_length is None:
        yield from enumerate(source)
        return
    for index, item in enumerate(source):
        yield str(index).zfill(pad_length), item


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
