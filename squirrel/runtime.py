"""The process's one IO loop, and `run_sync`, the bridge every blocking call of the sync face goes through.

The loop is fsspec's IO loop (a daemon thread started on first use), so squirrel and any fsspec sync
filesystem share one loop and one set of connections. fsspec replaces it in a forked child, so a
PyTorch `DataLoader` worker gets its own loop and, through `squirrel.aio.fs`, its own filesystems.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import fsspec.asyn

T = TypeVar("T")


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's IO loop, running in a daemon thread; started on first call (and again after fork)."""
    return fsspec.asyn.get_loop()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the IO loop and block until it finishes; return its result or raise its error.

    Works from any thread, including one that runs an event loop of its own. If the waiting thread is
    interrupted (KeyboardInterrupt), the coroutine is cancelled rather than left running.
    """
    loop = io_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError(
            "a blocking squirrel call was made on squirrel's own IO loop; await the squirrel.aio API instead"
        )
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
