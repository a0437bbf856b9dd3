"""`SingleFlight`: one call made for many concurrent callers on each event loop, all woken when it ends."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["SingleFlight"]


class SingleFlight:
    """Runs a call once for the callers that arrive while it is under way on their loop (a store reading its
    index for 1,000 first `get` calls), then wakes them all at once.

    Behind an `asyncio.Lock` the same callers woke one per loop turn, each starting its request a turn after
    the last. Callers check themselves whether the call did its job (it may have failed: the next caller then
    calls again). Pickles empty: the calls under way belong to this process's loops.
    """

    def __init__(self) -> None:
        self._running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()

    def __reduce__(self) -> tuple[type[SingleFlight], tuple[()]]:
        return SingleFlight, ()

    async def run(self, call: Callable[[], Awaitable[Any]]) -> None:
        """``await call()``, or, if a call is under way on this loop, wait for it to end (however it ends)."""
        loop = asyncio.get_running_loop()
        if (running := self._running.get(loop)) is not None:
            await running.wait()
            return
        running = self._running[loop] = asyncio.Event()
        try:
            await call()
        finally:
            del self._running[loop]
            running.set()
