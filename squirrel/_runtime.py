"""The process's one IO loop, and the only ways sync code reaches it: `run_sync`, `iterate`, `sync_context`.

The loop runs in a daemon thread, started on first use. `run_sync` runs a coroutine there as a task that
a timeout or Ctrl-C cancels (waiting until it has unwound); `sync_context` wraps an async context manager
for ``with`` through an anyio `BlockingPortal`, started only when first needed. Everything here is reset
in a forked child (the parent's loop thread does not exist there), lock included, so a PyTorch
`DataLoader` worker starts its own loop, and through `squirrel.aio.fs` its own filesystems, on first use.

Sync iteration of an async iterator (`iterate`) runs the iterator in a task on the loop that hands items
to the consuming thread through a bounded buffer: the consumer takes everything ready in one lock, so the
cost per item is an append, not a round trip between threads.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio.from_thread import BlockingPortal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Generator
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

__all__ = ["io_loop", "io_thread", "iterate", "on_io_loop", "run_sync", "sync_context"]

T = TypeVar("T")


@dataclass
class _Runtime:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    portal: BlockingPortal | None = None  # started on the first `sync_context`


_lock = threading.Lock()
_runtime: _Runtime | None = None


def _reset_after_fork() -> None:
    global _lock, _runtime
    _lock = threading.Lock()  # the parent's could have been held by a thread that does not exist here
    _runtime = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _start() -> _Runtime:
    loop = asyncio.new_event_loop()
    running = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name="squirrel-io", daemon=True)
    thread.start()
    running.wait()
    return _Runtime(loop, thread)


def _get() -> _Runtime:
    global _runtime
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = _start()
            runtime = _runtime
    return runtime


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's IO loop, running in a daemon thread; started on first call (and anew after a fork)."""
    return _get().loop


def io_thread() -> threading.Thread:
    """The daemon thread the IO loop runs in (started with the loop)."""
    return _get().thread


def on_io_loop() -> bool:
    """Whether the calling code runs on the IO loop's own thread (where a blocking call would deadlock)."""
    runtime = _runtime
    return runtime is not None and threading.current_thread() is runtime.thread


def _refuse_reentry(what: str) -> None:
    if on_io_loop():
        raise RuntimeError(f"{what} was called on squirrel's own IO loop, where it would deadlock: await the async API")


class _Call(Generic[T]):
    """A coroutine running as a task on the IO loop, watched from another thread.

    `result` waits for it; `cancel` cancels it and, from any thread but the loop's, waits until it has
    unwound (also when it was cancelled before it started: it is then closed and never runs).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> None:
        self.loop = loop
        self.coro = coro
        self.outcome: Future[T] = Future()
        self.finished = threading.Event()
        self.task: asyncio.Task[T] | None = None
        loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.outcome.cancelled():
            self.coro.close()
            self.finished.set()
            return
        self.task = self.loop.create_task(self.coro)
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[T]) -> None:
        if not self.outcome.done():
            if task.cancelled():
                self.outcome.cancel()
            elif (error := task.exception()) is not None:
                self.outcome.set_exception(error)
            else:
                self.outcome.set_result(task.result())
        self.finished.set()

    def result(self, timeout: float | None = None) -> T:
        return self.outcome.result(timeout)

    def done(self) -> bool:
        return self.outcome.done()

    def cancel(self) -> None:
        self.outcome.cancel()
        self.loop.call_soon_threadsafe(self._cancel_task)
        if not on_io_loop() and not sys.is_finalizing():  # at exit the loop's daemon thread no longer runs
            self.finished.wait()

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the IO loop and block until it finishes; return its result or raise its error.

    Works from any thread but the IO loop's own (`RuntimeError` there: it would wait on itself), including
    a thread that runs an event loop of its own. If `timeout` seconds pass first (`TimeoutError`), or the
    waiting thread is interrupted (`KeyboardInterrupt`), the coroutine is cancelled and this returns only
    once it has finished unwinding, so nothing it started is left running.
    """
    try:
        _refuse_reentry("run_sync")
    except RuntimeError:
        coro.close()
        raise
    call = _Call(_get().loop, coro)
    try:
        return call.result(timeout)
    except BaseException as error:
        if call.done():
            raise
        call.cancel()
        if isinstance(error, TimeoutError):
            name = getattr(coro, "__qualname__", repr(coro))  # a native coroutine has one; `Coroutine` promises none
            raise TimeoutError(f"{name} did not finish within {timeout} s and was cancelled") from None
        raise


def _portal(runtime: _Runtime) -> BlockingPortal:
    """The runtime's anyio portal, started on first use (anyio's start-up costs ~40 ms, so a process that
    only streams never pays it)."""
    with _lock:
        if runtime.portal is None:
            ready: Future[BlockingPortal] = Future()

            async def serve() -> None:
                async with BlockingPortal() as portal:
                    ready.set_result(portal)
                    await portal.sleep_until_stopped()

            runtime.loop.call_soon_threadsafe(lambda: runtime.loop.create_task(serve()))
            runtime.portal = ready.result()
        return runtime.portal


def sync_context(manager: AbstractAsyncContextManager[T]) -> AbstractContextManager[T]:
    """`manager` as a blocking context manager: its ``__aenter__`` and ``__aexit__`` run on the IO loop
    (through an anyio `BlockingPortal`)."""
    _refuse_reentry("sync_context")
    return _portal(_get()).wrap_async_context_manager(manager)


class _Handover:
    """Items crossing from a producer task on the IO loop to one consuming thread, at most `capacity` held.

    The producer only appends to a deque (atomic under the GIL); the consumer empties it in one go. A
    sleeping consumer is woken once the producer's task gives the loop back (`call_soon`), not at each
    item: everything the iterator yields without waiting (a group of objects read together, say) then
    crosses in one batch, and the threads wake each other once per batch instead of once per item (a
    wake-up costs 50-100 µs here). Both sides check the other's waiting flag after setting their own
    under the lock, so no wake-up is lost.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[Any] = deque()
        self.ready = threading.Condition(threading.Lock())
        self.consumer_waiting = False
        self.producer_waiting = False
        self.wake_scheduled = False
        self.taken = 0  # items of the consumer's current batch, still held until it has yielded them all
        self.done = False
        self.error: BaseException | None = None
        self.space = asyncio.Event()  # set by the consumer once it took items (binds to the loop on first wait)

    async def produce(self, make_iterator: Callable[[], AsyncIterator[Any]]) -> None:
        items, capacity = self.items, self.capacity
        iterator = make_iterator()  # made here, on the loop that drives it
        try:
            async for item in iterator:
                items.append(item)
                if self.consumer_waiting and not self.wake_scheduled:
                    self.wake_scheduled = True
                    asyncio.get_running_loop().call_soon(self._wake)
                if len(items) + self.taken >= capacity:
                    with self.ready:
                        self.space.clear()
                        self.producer_waiting = len(items) + self.taken >= capacity
                    if self.producer_waiting:
                        await self.space.wait()
        except Exception as error:  # handed to the consumer, raised there after the items before it
            self.error = error
        finally:
            try:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                with self.ready:
                    self.done = True
                    self.ready.notify()

    def _wake(self) -> None:
        self.wake_scheduled = False
        with self.ready:
            self.ready.notify()

    def take(self) -> tuple[list[Any], bool]:
        """Every item ready now (waiting for at least one), and whether nothing more will come. They stay
        counted against `capacity` until `release`."""
        items = self.items
        if not items and not self.done:
            with self.ready:
                self.consumer_waiting = True
                while not items and not self.done:
                    self.ready.wait()
                self.consumer_waiting = False
        done = self.done  # read before the items: an item appended later is taken next time
        batch = [items.popleft() for _ in range(len(items))]
        self.taken = len(batch)
        return batch, done and not items

    def release(self, loop: asyncio.AbstractEventLoop) -> None:
        """The consumer has yielded its batch: that room is free again, so a waiting producer goes on."""
        self.taken = 0
        if self.producer_waiting:
            with self.ready:
                if self.producer_waiting:
                    self.producer_waiting = False
                    loop.call_soon_threadsafe(self.space.set)


def iterate(make_iterator: Callable[[], AsyncIterator[T]], capacity: int = 256) -> Generator[T, None, None]:
    """Yield the items of ``make_iterator()``, an async iterator driven by a task on the IO loop.

    Up to `capacity` items are held between the task and this thread; they cross in batches (all that
    are ready at once). An error raised by the iterator is raised here, after the items before it.
    Closing this generator early (break, error, garbage collection) cancels the task and waits for it.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    _refuse_reentry("iterate")
    runtime = _get()
    handover = _Handover(capacity)
    call = _Call(runtime.loop, handover.produce(make_iterator))
    try:
        while True:
            items, finished = handover.take()
            yield from items
            items.clear()  # the consumer has them: held here until the next batch, they would double the memory held
            handover.release(runtime.loop)
            if finished:
                break
        call.result()
        if handover.error is not None:
            raise handover.error
    finally:
        if not call.done():
            call.cancel()
