"""Retries for object-store requests: capped exponential backoff with jitter, a per-attempt timeout and an
overall deadline. Transient failures (timeouts, dropped connections, HTTP 408/429/5xx) are retried;
permanent ones (missing objects, permissions, bad data) are raised at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from squirrel.errors import SquirrelError

T = TypeVar("T")

TRANSIENT_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})


class DeadlineExceeded(SquirrelError, TimeoutError):
    """A request kept failing (or hanging) until its overall deadline passed."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. The defaults suit a cloud bucket; tests shrink them."""

    attempts: int = 8
    """Tries in all, the first included."""
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    request_timeout: float | None = 120.0
    """Longest a single attempt may take (None: no limit)."""
    deadline: float | None = 600.0
    """Longest all attempts together may take (None: no limit)."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Sleep before retry number `attempt` (1-based): full jitter under a capped exponential."""
        return rng.uniform(0, min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1, request_timeout=None, deadline=None)


def is_transient(error: BaseException) -> bool:
    """Whether `error` may go away if the same request is simply tried again."""
    if isinstance(error, FileNotFoundError | PermissionError | FileExistsError | IsADirectoryError):
        return False
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    code = getattr(error, "code", None) or getattr(error, "status", None)
    if isinstance(code, int):
        return code in TRANSIENT_HTTP_CODES
    # client-side connection, payload and protocol errors of the HTTP libraries fsspec uses
    return type(error).__module__.split(".")[0] in ("aiohttp", "requests")


async def with_retries(request: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run ``await request()`` under `policy`; `what` names the request in the final error."""
    started = time.monotonic()
    rng = random.Random()
    for attempt in range(1, policy.attempts + 1):
        limits = [policy.request_timeout]
        if policy.deadline is not None:
            limits.append(policy.deadline - (time.monotonic() - started))
        limit = min((t for t in limits if t is not None), default=None)
        try:
            async with asyncio.timeout(limit):
                return await request()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == policy.attempts:
                raise
            elapsed = time.monotonic() - started
            pause = policy.backoff(attempt, rng)
            if policy.deadline is not None and elapsed + pause >= policy.deadline:
                raise DeadlineExceeded(
                    f"{what}: still failing after {elapsed:.1f} s and {attempt} attempts "
                    f"({type(error).__name__}: {error})"
                ) from error
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")
