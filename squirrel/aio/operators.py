"""The async stream operators, each an async generator over an async iterator.

Every buffer is bounded. Operators that start tasks own them: leaving early (break, error, aclose,
garbage collection) cancels whatever is still in flight and waits for it, so nothing leaks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from squirrel.aio.executors import call, is_async_callable
from squirrel.markers import DONE, Failure
from squirrel.metrics import LoaderMetrics
from squirrel.metrics import report as metrics_report

if TYPE_CHECKING:
    from squirrel.batching import Grouper
    from squirrel.stages import Stage
    from squirrel.transforms import MapCalls

__all__ = [
    "async_map_items",
    "close",
    "closing",
    "filter_items",
    "flatten_items",
    "grouped_items",
    "iterate",
    "map_items",
    "monitor_items",
    "prefetch_items",
    "run_all",
    "take_items",
    "tqdm_items",
    "uninterrupted",
    "zip_index_items",
]

T = TypeVar("T")
It = TypeVar("It", bound=AsyncIterator[Any])


async def iterate(
    source: Iterable[Any] | AsyncIterable[Any] | Callable[[], Iterable[Any] | AsyncIterable[Any]],
) -> AsyncIterator[Any]:
    """Iterate a sync iterable, an async iterable, or a callable returning either."""
    if callable(source) and not isinstance(source, Iterable | AsyncIterable):
        source = source()
    if isinstance(source, AsyncIterable):
        iterator = aiter(source)
        try:
            async for item in iterator:
                yield item
        finally:
            await close(iterator)
    else:
        for item in source:
            yield item


async def close(iterator: Any) -> None:
    """`aclose()` an async iterator if it supports it (our operators do; third-party ones may not), to its
    end even if this task is cancelled meanwhile (see `uninterrupted`).

    An async generator that has already finished has nothing left to run: it is not closed again (closing
    costs a task, which a store's `get` would pay on every call).
    """
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None and getattr(iterator, "ag_frame", True) is not None:
        await uninterrupted(aclose())


async def uninterrupted(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` to its end even if this task is cancelled meanwhile; then raise the cancellation.

    Cleanup (cancelling the tasks an operator owns, closing its upstream) that a second cancellation cut
    short would leave a generator half-closed, suspended in its ``finally``: the loop's shutdown, which
    closes every live async generator at once, then fails with "aclose(): asynchronous generator is
    already running". anyio shields cleanup the same way.
    """
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return future.result()


async def run_all(calls: Sequence[Callable[[], Awaitable[T]]], limit: int | None = None) -> list[T]:
    """Await every call concurrently, at most `limit` at once (None: all), and return their results in order.

    The first failure cancels the others and is raised as itself (not inside an `ExceptionGroup`), as one
    call alone would raise it. Calls, not coroutines: a call that never starts leaves no coroutine unawaited.
    """
    slots = asyncio.Semaphore(limit or max(1, len(calls)))

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await call()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(call)) for call in calls]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def map_items(source: AsyncIterator[Any], fn: Callable[[Any], Any]) -> AsyncIterator[Any]:
    """`fn(item)` for each item, one at a time; coroutine functions are awaited."""
    try:
        if is_async_callable(fn):
            async for item in source:
                yield await fn(item)
        else:
            async for item in source:
                yield fn(item)
    finally:
        await close(source)


async def filter_items(source: AsyncIterator[Any], predicate: Callable[[Any], Any]) -> AsyncIterator[Any]:
    """Items for which `predicate` (plain or coroutine function) is true."""
    is_async = is_async_callable(predicate)
    try:
        async for item in source:
            keep = await predicate(item) if is_async else predicate(item)
            if keep:
                yield item
    finally:
        await close(source)


async def _cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await uninterrupted(asyncio.gather(*tasks, return_exceptions=True))


async def async_map_items(source: AsyncIterator[Any], fn: Callable[[Any], Any], calls: MapCalls) -> AsyncIterator[Any]:
    """`fn(item)` with at most ``calls.max_concurrency`` calls in flight; source order kept if ``calls.ordered``.

    An error in a call is raised at that item with its traceback; the other calls are cancelled.
    """
    max_concurrency, ordered, executor = calls.max_concurrency, calls.ordered, calls.executor
    owned_pool = None
    if executor is None and not is_async_callable(fn):
        owned_pool = executor = ThreadPoolExecutor(min(max_concurrency, 32), thread_name_prefix="squirrel-map")
    pending: deque[asyncio.Task[Any]] = deque()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max_concurrency:
                try:
                    item = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                pending.append(asyncio.ensure_future(call(fn, item, executor)))
            if not pending:
                return
            if ordered:
                task = pending.popleft()
                yield await task
            else:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in pending if t in done]:
                    pending.remove(task)
                    yield task.result()
    finally:
        try:
            await _cancel_all(pending)
        finally:
            try:
                await close(source)
            finally:
                if owned_pool is not None:
                    owned_pool.shutdown(wait=False, cancel_futures=True)


async def prefetch_items(source: AsyncIterator[Any], size: int) -> AsyncIterator[Any]:
    """Pull up to `size` items ahead of the consumer in a background task."""
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)

    async def produce() -> None:
        try:
            async for item in source:
                await queue.put(item)
            await queue.put(DONE)
        except Exception as exc:  # handed to the consumer, raised there with its traceback
            await queue.put(Failure(exc))

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            item = await queue.get()
            if item is DONE:
                return
            if isinstance(item, Failure):
                raise item.error
            yield item
    finally:
        try:
            await _cancel_all([producer])
        finally:
            await close(source)


async def grouped_items(source: AsyncIterator[Any], new_grouper: Callable[[], Grouper[Any]]) -> AsyncIterator[Any]:
    """What a fresh ``new_grouper()`` (a batcher, sliding window or shuffle buffer) releases as the items of
    `source` go in, then what it still holds."""
    grouper = new_grouper()
    try:
        async for item in source:
            for released in grouper.push(item):
                yield released
    finally:
        await close(source)
    for released in grouper.drain():
        yield released


async def take_items(source: AsyncIterator[Any], n: int | None) -> AsyncIterator[Any]:
    """The first `n` items (all when None); stops pulling from the source after them."""
    count = 0
    try:
        while n is None or count < n:
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            yield item
            count += 1
    finally:
        await close(source)


async def flatten_items(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The elements of each item (each a sync or async iterable)."""
    try:
        async for item in source:
            if isinstance(item, AsyncIterable):
                async for element in item:
                    yield element
            else:
                for element in item:
                    yield element
    finally:
        await close(source)


async def tqdm_items(source: AsyncIterator[Any], tqdm_kwargs: dict[str, Any], upstream: Stage) -> AsyncIterator[Any]:
    """Pass items through, counting them on a ``tqdm.auto.tqdm(**tqdm_kwargs)`` progress bar, of
    ``total=await upstream.load_length()`` unless `tqdm_kwargs` gives one (which reads the stores' indexes
    upstream on this loop)."""
    from tqdm.auto import tqdm

    try:
        if "total" not in tqdm_kwargs:
            tqdm_kwargs = {**tqdm_kwargs, "total": await upstream.load_length()}
        with tqdm(**tqdm_kwargs) as bar:
            async for item in source:
                bar.update(1)
                yield item
    finally:
        await close(source)


async def zip_index_items(source: AsyncIterator[Any], pad_length: int | None) -> AsyncIterator[tuple[int | str, Any]]:
    """``(index, item)`` pairs, counting from 0; the index a string of at least `pad_length` digits if given."""
    index = 0
    try:
        async for item in source:
            yield (index if pad_length is None else str(index).zfill(pad_length)), item
            index += 1
    finally:
        await close(source)


async def monitor_items(
    source: AsyncIterator[Any], callback: Callable[[dict[str, Any]], Any], every: float, sources: list[LoaderMetrics]
) -> AsyncIterator[Any]:
    """Pass items through; every `every` seconds and at the end, call `callback` with the item count and
    rate, and the counters of upstream loaders (bytes fetched and their rate, fetches in flight, skips)."""
    started = last = time.monotonic()
    count = 0

    async def report() -> None:
        result = callback(metrics_report(count, time.monotonic() - started, sources))
        if isinstance(result, Awaitable):
            await result

    try:
        async for item in source:
            count += 1
            yield item
            if time.monotonic() - last >= every:
                last = time.monotonic()
                await report()
    finally:
        await close(source)
    await report()


class closing(Generic[It]):  # lower case: contextlib.closing's name, for async iterators
    """``async with closing(iterator) as it:`` closes `iterator` (see `close`) when the block exits.

    A class rather than a `contextlib.asynccontextmanager`: a pass enters one per object read on its own
    (a store's `get`), where the generator such a manager builds costs as much as the rest of the block.
    """

    __slots__ = ("iterator",)

    def __init__(self, iterator: It) -> None:
        self.iterator = iterator

    async def __aenter__(self) -> It:
        return self.iterator

    async def __aexit__(self, *exc_info: object) -> None:
        await close(self.iterator)
