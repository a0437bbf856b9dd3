"""squirrel's ``max_connections`` storage option: how many HTTP connections a gs:// store keeps open at once."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_CONNECTIONS", "MAX_CONNECTIONS", "check_max_connections"]

MAX_CONNECTIONS = "max_connections"
"""squirrel's own storage option for gs:// stores: the most HTTP connections the store's filesystem keeps
open at once (see `check_max_connections`). Never passed on to gcsfs itself."""

DEFAULT_MAX_CONNECTIONS = 100
"""aiohttp's default connection pool size per session, which gcsfs uses unless told otherwise."""


def check_max_connections(value: object) -> int | None:
    """`value` as a ``max_connections`` storage option: a positive int, or None for the default.

    The default is aiohttp's 100 connections per filesystem. A service with more requests in flight than
    that queues them for a free connection; raising the limit lets more run at once, but each connection is
    an open file descriptor, and the usual ``ulimit -n`` of 1024 is soon exhausted, hence the modest default.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{MAX_CONNECTIONS} must be a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{MAX_CONNECTIONS} must be a positive int, got {value!r}")
    return value
