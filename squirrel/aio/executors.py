"""Run one call of a user's function on the loop, in a thread pool, or on any executor, and await it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["await_executor_future", "call", "is_async_callable"]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling `fn` returns an awaitable to run on the loop (coroutine functions, async __call__)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


async def await_executor_future(future: Any) -> Any:
    """Await a future from any executor: `concurrent.futures` directly, else (dask) via `add_done_callback`.

    If the awaiting task is cancelled, the future is cancelled too.
    """
    if isinstance(future, concurrent.futures.Future):
        return await asyncio.wrap_future(future)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: Any) -> None:
        loop.call_soon_threadsafe(_set_done, waiter)

    future.add_done_callback(wake)
    try:
        await waiter
    except asyncio.CancelledError:
        future.cancel()
        raise
    return await asyncio.to_thread(future.result)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def call(fn: Callable[[Any], Any], item: Any, executor: Any | None) -> Any:
    """`fn(item)`: awaited on the loop if `fn` is async, else run on `executor` (a thread pool when None)."""
    if is_async_callable(fn):
        return await fn(item)
    if executor is None:
        return await asyncio.to_thread(fn, item)
    return await await_executor_future(executor.submit(fn, item))
