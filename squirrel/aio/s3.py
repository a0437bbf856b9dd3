"""s3fs's class as squirrel uses it: retried by squirrel's `RetryPolicy` alone while one is running.

Two layers retry an S3 request underneath squirrel. botocore's client retries connection errors, 5xx and
throttling itself (legacy mode: 5 attempts in all, or ``AWS_MAX_ATTEMPTS``), and s3fs wraps each call in
`s3fs.core._error_wrapper`, which tries timeouts, dropped connections and "SlowDown" ``retries`` (5) times.
Under a policy of 8 attempts a 503 was sent 8 x 5 times, an attempt spent its whole ``request_timeout`` in
botocore's backoff, and the deadline was overrun by a retry squirrel never saw.

`S3FileSystem` here turns botocore's retries off (one attempt per request: ``config_kwargs={"retries":
{"total_max_attempts": 1}}``, unless the user's ``config_kwargs`` say how to retry), and tries each call
once while `squirrel.aio.retry.with_retries` runs it (`policy_retries_active`); anywhere else (zarr's
`FsspecStore`, `FileDriver`, any caller without a policy) s3fs retries as it does by default. The policy
knows botocore's errors (`squirrel.aio.retry.is_transient`).

Imported only when an s3:// filesystem is asked for: s3fs is an optional install.
"""

from __future__ import annotations

from typing import Any

import s3fs  # type: ignore[import-untyped]  # s3fs ships no py.typed marker

from squirrel.aio.retry import policy_retries_active

__all__ = ["S3FileSystem"]


class S3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]  # s3fs is untyped (Any)
    """s3fs's `S3FileSystem`, retried only by squirrel's policy while one runs (see the module's docstring).

    A plain module-level subclass: it pickles (fsspec pickles a filesystem as its class and options) and
    unpickles as what it was.
    """

    own_retries: int = s3fs.S3FileSystem.retries
    """s3fs's own count of tries per call (5), used outside a squirrel policy; ``fs.retries = n`` sets it."""

    def __init__(self, *args: Any, config_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        config = dict(config_kwargs or {})
        config.setdefault("retries", {"total_max_attempts": 1})  # a dict of its own: botocore adds to it
        super().__init__(*args, config_kwargs=config, **kwargs)

    @property
    def retries(self) -> int:
        """How many times s3fs tries a call: once under a squirrel policy, else s3fs's own count."""
        return 1 if policy_retries_active() else self.own_retries

    @retries.setter
    def retries(self, count: int) -> None:
        self.own_retries = count
