"""Retries for object-store requests: capped exponential backoff with jitter, a per-attempt timeout and an
overall deadline. Transient failures (timeouts, dropped connections, HTTP 408/429/5xx, S3's throttling)
are retried; permanent ones (missing objects, permissions, bad data) are raised at once.

`with_retries` is the only retry layer a store request goes through: while it runs a request, the
filesystems squirrel opens try each HTTP call once (`policy_retries_active`; see `squirrel.aio.gcs` and
`squirrel.aio.s3`), so gcsfs's, s3fs's and botocore's own retries never multiply the policy's. When retries
run out the error is a `StoreUnavailable` (a `ConnectionError`), a `StoreTimeout` (also a `TimeoutError`)
when the last attempt timed out, or a `DeadlineExceeded` when the deadline passed; each names the request
and chains the last error.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING, TypeVar

from squirrel.errors import DeadlineExceeded, StoreTimeout, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "NO_RETRY",
    "SHORTEST_ATTEMPT",
    "DeadlineExceeded",
    "RetryPolicy",
    "StoreTimeout",
    "StoreUnavailable",
    "is_transient",
    "policy_retries_active",
    "with_retries",
]

T = TypeVar("T")
logger = logging.getLogger(__name__)

TRANSIENT_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})

TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
    }
)
"""The error codes of S3 (and of the AWS services botocore retries the same way) that say "try again": busy,
throttled, an internal error, a request that timed out."""

_BOTO_PACKAGES = ("botocore", "aiobotocore")

_policy_retries = contextvars.ContextVar("squirrel_policy_retries", default=False)


def policy_retries_active() -> bool:
    """Whether the running request is retried by `with_retries`, so lower layers should try it only once."""
    return _policy_retries.get()


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. The defaults suit a cloud bucket; tests shrink them.

    Why these numbers. Between attempts the policy waits 0.5, 1, 2, 4, 8, 8, 8 s, each with equal jitter
    (half of it fixed, half random), so 8 attempts spread over 15.75 to 31.5 s of waiting. A cloud bucket's
    transient errors (GCS's 503 and 429 when a bucket or object is hot, 5xx on a backend restart) come in
    bursts of seconds, and GCS asks for exponential backoff from about 1 s: a burst of up to 15 s is
    always ridden out, most up to 30 s (gcsfs's own budget, which this replaces, was about 34 s).
    An endpoint that refuses connections (server down, a wrong ``endpoint_url`` or
    ``STORAGE_EMULATOR_HOST``, a dead port) costs nothing per attempt, so it fails after those 16 to 32 s,
    not minutes. `request_timeout` lets one attempt move a large shard over a slow link; `deadline`
    bounds everything, an endpoint that drops packets or a server that accepts and never answers included.

    Args:
        attempts: tries in all, the first included (default 8).
        initial_backoff: longest wait before the first retry, in seconds (default 0.5); it doubles with each
            further retry.
        max_backoff: longest wait between two attempts, in seconds (default 8).
        request_timeout: longest a single attempt may take, in seconds (default 120; None: no limit).
        deadline: longest all attempts together may take, waits included (default 180; None: no limit).
    """

    attempts: int = 8
    """Tries in all, the first included."""
    initial_backoff: float = 0.5
    """Longest wait before the first retry (seconds); it doubles with each further retry."""
    max_backoff: float = 8.0
    """Longest wait between two attempts (seconds)."""
    request_timeout: float | None = 120.0
    """Longest a single attempt may take (None: no limit)."""
    deadline: float | None = 180.0
    """Longest all attempts together may take, waits included (None: no limit)."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Sleep before retry number `attempt` (1-based): equal jitter under a capped exponential, drawn from `rng`.

        Half the cap is always waited, so retries spread over a predictable window; the random half keeps
        many clients that failed together from retrying in lockstep.
        """
        cap = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return cap / 2 + rng.uniform(0, cap / 2)


NO_RETRY = RetryPolicy(attempts=1, request_timeout=None, deadline=None)


def is_transient(error: BaseException) -> bool:
    """Whether `error` may go away if the same request is simply tried again.

    Knows the errors of the clients under fsspec: aiohttp's and requests', gcsfs's, and botocore's (s3fs's
    client; see `_boto_transient`). An error whose retries already ran out (`StoreUnavailable`) is not
    transient: retrying it would nest retries.
    """
    if isinstance(error, StoreUnavailable):
        return False
    if isinstance(error, FileNotFoundError | PermissionError | FileExistsError | IsADirectoryError):
        return False
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    boto_verdict = _boto_transient(error)
    if boto_verdict is not None:
        return boto_verdict
    code = getattr(error, "code", None) or getattr(error, "status", None)
    if isinstance(code, int):
        # gcsfs: an expired token answers 401 "Invalid Credentials" until it is refreshed
        return code in TRANSIENT_HTTP_CODES or (code == 401 and "Invalid Credentials" in str(error))
    package = _package(error)
    if package in ("gcsfs", "google"):
        from gcsfs.retry import is_retriable  # already imported: the error came from there

        return bool(is_retriable(error))  # a token refresh failing, a checksum mismatch
    # client-side connection, payload and protocol errors of the HTTP libraries fsspec uses
    return package in ("aiohttp", "requests")


def _package(error: BaseException | None) -> str:
    """The top-level package that defines the type of `error` (``builtins`` for None)."""
    return type(error).__module__.split(".")[0]


def _boto_transient(error: BaseException) -> bool | None:
    """Whether an error of s3fs's client is transient: a botocore or aiobotocore error, or the `OSError` s3fs
    makes of a botocore ``ClientError`` (its cause); None for any other error.

    A ``ClientError`` is transient for an HTTP status in `TRANSIENT_HTTP_CODES` or an S3 code in
    `TRANSIENT_S3_CODES`; any other botocore error when it is about the connection (refused, reset, timed
    out, closed early) or a response cut short or garbled (throttling S3 endpoints have sent invalid XML).
    """
    if _package(error) not in _BOTO_PACKAGES:
        if not isinstance(error, OSError) or _package(error.__cause__) not in _BOTO_PACKAGES:
            return None
        error = error.__cause__  # type: ignore[assignment]  # not None: its package is botocore's
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # a ClientError: the service answered with an error
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in TRANSIENT_HTTP_CODES or response.get("Error", {}).get("Code") in TRANSIENT_S3_CODES
    # already imported: the error came from there (botocore comes with s3fs, an optional install)
    from botocore import exceptions, parsers  # type: ignore[import-untyped]

    retried = (exceptions.ConnectionError, exceptions.HTTPClientError, exceptions.IncompleteReadError)
    return isinstance(error, (*retried, parsers.ResponseParserError))


SHORTEST_ATTEMPT = 0.05
"""Seconds below which no attempt is started once the deadline is that close (after a backoff that a busy
machine let oversleep): an attempt given less than a loopback round trip only times out, and its timeout
would hide the error that made the request fail (the last real attempt's, which is raised instead)."""


def _describe(error: BaseException, limit: float | None) -> str:
    if isinstance(error, TimeoutError) and not str(error) and limit is not None:
        return f"TimeoutError: no answer within {limit:.3g} s"
    return f"{type(error).__name__}: {error}"


async def with_retries(request: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run ``await request()`` under `policy`; `what` names the request (its URL, say) in the final error.

    Permanent errors are raised at once, the same object, with a note naming `what` (shown with its
    traceback: the error of an object store's client seldom names the object). Transient ones are retried;
    when attempts or time run out, a `StoreUnavailable`, `StoreTimeout` or `DeadlineExceeded` naming `what`
    is raised from the last.
    """
    started = time.monotonic()
    rng: random.Random | None = None  # made at the first failure: seeding one costs more than most requests
    token = _policy_retries.set(True)
    previous: tuple[Exception, str] | None = None  # the last failed attempt's error and its description
    try:
        for attempt in range(1, policy.attempts + 1):
            limit = policy.request_timeout
            if policy.deadline is not None:
                left = policy.deadline - (time.monotonic() - started)
                if previous is not None and left < SHORTEST_ATTEMPT:  # a backoff that overslept the deadline
                    error, last = previous
                    tried = f"{attempt - 1} attempts in {time.monotonic() - started:.1f} s"
                    raise DeadlineExceeded(
                        f"{what}: out of time (deadline {policy.deadline:g} s) after {tried}; last error: {last}",
                        request=what,
                        attempts=attempt - 1,
                        elapsed=time.monotonic() - started,
                    ) from error
                limit = left if limit is None else min(limit, left)
            try:
                async with asyncio.timeout(limit):
                    return await request()
            except Exception as error:
                if not is_transient(error):
                    error.add_note(f"{what}: not retried (a permanent error)")
                    raise
                elapsed = time.monotonic() - started
                tried = f"{attempt} attempt{'s' if attempt > 1 else ''} in {elapsed:.1f} s"
                last = _describe(error, limit)
                rng = rng or random.Random()
                pause = 0.0 if attempt == policy.attempts else policy.backoff(attempt, rng)
                if policy.deadline is not None and elapsed + pause >= policy.deadline:
                    raise DeadlineExceeded(
                        f"{what}: out of time (deadline {policy.deadline:g} s) after {tried}; last error: {last}",
                        request=what,
                        attempts=attempt,
                        elapsed=elapsed,
                    ) from error
                if attempt == policy.attempts:
                    kind = StoreTimeout if isinstance(error, TimeoutError) else StoreUnavailable
                    raise kind(
                        f"{what}: gave up after {tried}; last error: {last}",
                        request=what,
                        attempts=attempt,
                        elapsed=elapsed,
                    ) from error
                previous = (error, last)
                logger.debug("%s: attempt %d failed (%s); retrying in %.2f s", what, attempt, last, pause)
                await asyncio.sleep(pause)
    finally:
        _policy_retries.reset(token)
    raise AssertionError("unreachable")
