"""Iterate an async iterable from sync code: it runs on the process's IO loop, one item per round trip.

Callers hand over chunks (a shard's worth of samples, say) so the cost per sample stays small.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from squirrel.runtime import run_sync

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
            run_sync(aclose())
