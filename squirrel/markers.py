"""What a prefetch's producer puts in its queue besides items: the end of the stream, and an error.

Shared by the sync and async `prefetch` operators.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DONE", "Failure"]

DONE: Final = object()
"""Put after the last item."""


class Failure:
    """An error raised upstream of a prefetch, carried through its queue and raised at the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
