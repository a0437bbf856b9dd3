"""URL -> async fsspec filesystem, shared per (process, event loop) and closed by its last user.

Every filesystem squirrel uses is an fsspec `AsyncFileSystem` bound to the loop that uses it: gcsfs and
other async implementations natively, local and memory filesystems through fsspec's thread wrapper.
Nothing loop-bound crosses a fork: a child process starts with an empty pool.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.local import LocalFileSystem

from squirrel.aio.connections import MAX_CONNECTIONS, check_max_connections

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem
    from fsspec.asyn import AsyncFileSystem

__all__ = [
    "CONNECT_TIMEOUT",
    "acquire_filesystem",
    "check_storage_options",
    "close_filesystem",
    "filesystem_class_and_options",
    "gcs_endpoint",
    "is_blocking",
    "is_local",
    "open_filesystem",
    "release_filesystem",
    "split_protocol",
]

_GCS_PROTOCOLS = ("gs", "gcs")
_CONNECTIONLESS_PROTOCOLS = ("file", "local", "memory")
"""Filesystems that open no network connections: ``max_connections`` is checked, then ignored."""


def split_protocol(url: str) -> tuple[str, str]:
    """`("gs", "bucket/path")` for ``gs://bucket/path``; `("file", url)` for a plain local path."""
    protocol, _, rest = url.partition("://")
    if not rest:
        return "file", url
    return protocol, rest


def is_local(fs: AsyncFileSystem) -> bool:
    """Whether `fs` is the local disk (where atomic writes need a temp file and a rename)."""
    return isinstance(getattr(fs, "sync_fs", None), LocalFileSystem)


def is_blocking(fs: AsyncFileSystem) -> bool:
    """Whether `fs` wraps a blocking filesystem (local disk, memory://): its calls are best made in
    batches from one worker thread (``fs.sync_fs``), not one thread hop each."""
    return isinstance(fs, AsyncFileSystemWrapper)


CONNECT_TIMEOUT = 10.0
"""Seconds gcsfs may take to open a TCP connection, unless ``requests_timeout`` is given: an endpoint that
drops packets then fails each attempt in seconds (aiohttp's default under gcsfs is to wait for the OS,
about two minutes), and squirrel's `RetryPolicy` decides whether to try again."""


def gcs_endpoint(storage_options: dict[str, Any]) -> str | None:
    """The endpoint a gs:// store talks to when one is set (``endpoint_url``, else ``STORAGE_EMULATOR_HOST``),
    as a URL; None for Google's own."""
    endpoint = storage_options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
    if not endpoint:
        return None
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint.rstrip("/")


def check_storage_options(protocol: str, storage_options: dict[str, Any]) -> None:
    """Refuse a ``max_connections`` that is not a positive int, or that `protocol` would silently not honour.

    gs:// honours it; local and memory:// filesystems open no connections, so they accept and ignore it;
    any other protocol refuses it (its own library has its own knob, e.g. s3fs's
    ``config_kwargs={"max_pool_connections": n}``). Stores call this when built, so errors come early.
    """
    if storage_options.get(MAX_CONNECTIONS) is None:
        return
    check_max_connections(storage_options[MAX_CONNECTIONS])
    if protocol not in _GCS_PROTOCOLS + _CONNECTIONLESS_PROTOCOLS:
        raise ValueError(
            f"{MAX_CONNECTIONS} is supported for gs:// (and ignored for local and memory://), not for {protocol}://"
        )


def _gcs_filesystem_class_and_options(options: dict[str, Any]) -> tuple[type[AbstractFileSystem], dict[str, Any]]:
    """Pick gcsfs's plain class when an endpoint is given: its default class asks Google's gRPC control
    API about each bucket and retries for a minute when that is unreachable (a local server).

    Either way the class is squirrel's subclass (`squirrel.aio.gcs`), whose requests are retried by the
    store's `RetryPolicy` alone, with a connect timeout of `CONNECT_TIMEOUT`, and which takes squirrel's own
    ``max_connections`` option (gcsfs itself never sees it).
    """
    import aiohttp
    import gcsfs.core

    from squirrel.aio.gcs import LimitedConnections, policy_retried_class  # imported here only: gcsfs is slow to import

    endpoint = gcs_endpoint(options)
    if options.get(MAX_CONNECTIONS) is None:  # None: the default pool, and gcsfs's classes exactly as they are
        options = {key: value for key, value in options.items() if key != MAX_CONNECTIONS}
    options = {
        "use_listings_cache": False,
        "requests_timeout": aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        **options,
    }
    if endpoint:
        cls = policy_retried_class(gcsfs.core.GCSFileSystem)
        options.setdefault("token", "anon")
        options["endpoint_url"] = endpoint
    else:
        cls = policy_retried_class(fsspec.get_filesystem_class("gs"))
    if MAX_CONNECTIONS in options and not issubclass(cls, LimitedConnections):
        raise ValueError(f"{MAX_CONNECTIONS} is not supported by the gs:// filesystem class {cls.__qualname__}")
    return cls, options


def filesystem_class_and_options(
    protocol: str, storage_options: dict[str, Any]
) -> tuple[type[AbstractFileSystem], dict[str, Any]]:
    """The fsspec class for `protocol` and the options to build it with, for sync and async use alike.

    For gs:// this is where an endpoint (``endpoint_url`` or ``STORAGE_EMULATOR_HOST``) selects gcsfs's plain class.
    ``max_connections`` is checked (`check_storage_options`) and dropped for the protocols that ignore it.
    """
    check_storage_options(protocol, storage_options)
    if protocol in _GCS_PROTOCOLS:
        return _gcs_filesystem_class_and_options(storage_options)
    options = {key: value for key, value in storage_options.items() if key != MAX_CONNECTIONS}
    return fsspec.get_filesystem_class(protocol), options


def open_filesystem(protocol: str, storage_options: dict[str, Any]) -> AsyncFileSystem:
    """A new async filesystem for `protocol`, bound to the running loop."""
    loop = asyncio.get_running_loop()
    cls, options = filesystem_class_and_options(protocol, storage_options)
    if getattr(cls, "async_impl", False):
        return cls(asynchronous=True, loop=loop, skip_instance_cache=True, **options)
    if protocol in ("file", "local"):
        options = {"auto_mkdir": True, **options}
    return AsyncFileSystemWrapper(cls(**options), asynchronous=True)


async def close_filesystem(fs: AsyncFileSystem) -> None:
    """Close the network session of `fs`, if it has one (gcsfs, aiohttp-based filesystems)."""
    session = getattr(fs, "_session", None)
    if session is not None and not getattr(session, "closed", True):
        await session.close()


@dataclass
class _Entry:
    fs: AsyncFileSystem
    users: int = 0


@dataclass
class _Pool:
    by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Entry]] = field(
        default_factory=weakref.WeakKeyDictionary
    )


_pool = _Pool()
_inherited: list[_Pool] = []


def _forget_after_fork() -> None:
    # The parent's filesystems hold its sockets. Keep them referenced (never finalised, so nothing is
    # written to a socket the parent still uses) and start the child with an empty pool.
    global _pool
    _inherited.append(_pool)
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_after_fork)


def _pool_key(protocol: str, storage_options: dict[str, Any]) -> str:
    return f"{protocol}|{sorted(storage_options.items())!r}"


def acquire_filesystem(protocol: str, storage_options: dict[str, Any]) -> AsyncFileSystem:
    """The running loop's shared filesystem for (`protocol`, `storage_options`); pair with `release`."""
    loop = asyncio.get_running_loop()
    entries = _pool.by_loop.setdefault(loop, {})
    key = _pool_key(protocol, storage_options)
    entry = entries.get(key)
    if entry is None:
        entry = entries[key] = _Entry(open_filesystem(protocol, storage_options))
    entry.users += 1
    return entry.fs


async def release_filesystem(fs: AsyncFileSystem) -> None:
    """Drop one use of `fs` (from `acquire_filesystem` on the running loop); the last use closes it."""
    entries = _pool.by_loop.get(asyncio.get_running_loop(), {})
    for key, entry in list(entries.items()):
        if entry.fs is fs:
            entry.users -= 1
            if entry.users <= 0:
                del entries[key]
                await close_filesystem(fs)
            return
