"""Iterate an async iterable from sync code: it runs on the process's IO loop, one item per round trip.

Callers hand over chunks (a shard's worth of samples, say) so the cost per sample stays small.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from squirrel.runtime import io_loop, run_sync

_END = object()


async def _next(iterator: AsyncIterator[Any]) -> Any:
    return await anext(iterator, _END)


def iterate_on_io_loop(make_iterator: Callable[[], AsyncIterator[Any]]) -> Iterator[Any]:
    """Yield the items of ``make_iterator()`` (an async iterator), driven on the IO loop.

    Closing this generator early closes the async iterator on the loop, cancelling its work.
    """
    iterator = make_iterator()
    try:
        while (item := run_sync(_next(iterator))) is not _END:
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not sys.is_finalizing():
            if _on_io_loop():  # closed (or garbage-collected) on the IO loop's own thread: it cannot block there
                io_loop().create_task(aclose())
            else:
                run_sync(aclose())


def _on_io_loop() -> bool:
    try:
        return asyncio.get_running_loop() is io_loop()
    except RuntimeError:
        return False
