"""The library's error types: every failure a user should handle has one of these, naming what and where."""

from __future__ import annotations

__all__ = [
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "SquirrelError",
    "StoreChanged",
    "StoreTimeout",
    "StoreUnavailable",
    "UnsafePayloadError",
]


class SquirrelError(Exception):
    """Base class of every error squirrel raises on purpose."""


class DecodeError(SquirrelError, ValueError):
    """Stored bytes could not be decoded: corrupt, truncated, or not in the expected format.

    The message names the object (its URL or path) and what is wrong with it.
    """


class UnsafePayloadError(DecodeError):
    """Stored bytes ask for something squirrel never does, such as unpickling an object array."""


class EncodeError(SquirrelError, TypeError):
    """A value cannot be written by a codec (an object array, a type the format cannot hold)."""


class StoreChanged(SquirrelError, RuntimeError):
    """A store kept changing under an operation that needs it to hold still: `write_index` while writers
    kept adding or replacing objects. The message names the store and what was done instead."""


class StoreUnavailable(SquirrelError, ConnectionError):
    """A request to a store kept failing transiently (endpoint unreachable, connection dropped, HTTP 408, 429
    or 5xx) until its `RetryPolicy` gave up.

    The message names the request (object URL, store URL and gs:// endpoint), the attempts made, the seconds
    spent and the last error, which is also chained as ``__cause__``. A `ConnectionError` (so an `OSError`),
    so ``except OSError`` clauses written for the raw network errors still catch it. Built with the
    `message`, and, as attributes, the `request`, the `attempts` made and the seconds `elapsed`.
    """

    def __init__(self, message: str, *, request: str = "", attempts: int = 0, elapsed: float = 0.0) -> None:
        super().__init__(message)
        self.request = request
        """The request that failed, as its caller named it (what it did to which object of which store)."""
        self.attempts = attempts
        """Attempts made, the first included."""
        self.elapsed = elapsed
        """Seconds from the first attempt to giving up."""


class StoreTimeout(StoreUnavailable, TimeoutError):
    """Retries of a store request ran out of time: its last attempt timed out, or the overall deadline passed.

    Also a `TimeoutError`, so ``except TimeoutError`` keeps catching a request that hangs. Built, as its base,
    with the `message`, the `request`, the `attempts` made and the seconds `elapsed`.
    """


class DeadlineExceeded(StoreTimeout):
    """A request kept failing (or hanging) until the overall deadline of its `RetryPolicy` passed.

    Built, as its base, with the `message`, the `request`, the `attempts` made and the seconds `elapsed`.
    """
