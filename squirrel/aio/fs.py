"""URL -> async fsspec filesystem, shared per (process, event loop) and closed by its last user.

Which URLs and storage options are accepted, and which fsspec class serves each, is
`squirrel.aio.storage_options`'s; this module opens, shares and closes the filesystems.

Every filesystem squirrel uses is an fsspec `AsyncFileSystem` bound to the loop that uses it: gcsfs and
other async implementations natively, local and memory filesystems through fsspec's thread wrapper.
Nothing loop-bound crosses a fork: a child process starts with an empty pool.

The users of a filesystem (stores, zarr stores, staged files) hold it; the pool only finds it for the next
user on the same loop. A filesystem is bound to its loop, so a pool that held it would keep every loop it
ever served alive, closed or not, with the sockets of its session: 50 `asyncio.run` calls, 50 of each.
Held by its users, a filesystem goes with the last of them, and its session's connections with it. A user
that goes without releasing it (a store dropped without `aclose`) leaked it: a `ResourceWarning`
"unclosed squirrel store" says so, as aiohttp's "Unclosed client session" does. The exception is
squirrel's own IO loop (`squirrel._runtime`), which serves the blocking face for as long as the process
lives: the pool holds its filesystems, shared by every blocking store, which need no closing.
"""

from __future__ import annotations

import asyncio
import os
import warnings
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.local import LocalFileSystem

from squirrel._runtime import on_io_loop
from squirrel.aio.connections import MAX_CONNECTIONS
from squirrel.aio.storage_options import (
    GCS_PROTOCOLS,
    S3_PROTOCOLS,
    check_storage_options,
    filesystem_class,
    gcs_endpoint,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from fsspec import AbstractFileSystem
    from fsspec.asyn import AsyncFileSystem

__all__ = [
    "CONNECT_TIMEOUT",
    "LoopFilesystems",
    "acquire_filesystem",
    "close_filesystem",
    "filesystem_class_and_options",
    "is_blocking",
    "is_local",
    "open_filesystem",
    "release_filesystem",
    "verb_of",
]


def is_local(fs: AsyncFileSystem) -> bool:
    """Whether `fs` is the local disk (where atomic writes need a temp file and a rename)."""
    return isinstance(getattr(fs, "sync_fs", None), LocalFileSystem)


_VERBS: dict[str, str] = {
    "_cat_file": "reading",
    "_pipe_file": "writing",
    "_ls": "listing",
    "_exists": "looking up",
    "_rm_file": "removing",
}


def verb_of(method: Callable[..., object]) -> str:
    """How an error names what the async filesystem `method` was doing ("reading" for ``_cat_file``...)."""
    name: str = method.__name__
    return _VERBS.get(name, name.strip("_").replace("_", " "))


def is_blocking(fs: AsyncFileSystem) -> bool:
    """Whether `fs` wraps a blocking filesystem (local disk, memory://): its calls are best made in
    batches from one worker thread (``fs.sync_fs``), not one thread hop each."""
    return isinstance(fs, AsyncFileSystemWrapper)


CONNECT_TIMEOUT = 10.0
"""Seconds gcsfs may take to open a TCP connection, unless ``requests_timeout`` is given: an endpoint that
drops packets then fails each attempt in seconds (aiohttp's default under gcsfs is to wait for the OS,
about two minutes), and squirrel's `RetryPolicy` decides whether to try again."""


def _gcs_filesystem_class_and_options(options: dict[str, Any]) -> tuple[type[AbstractFileSystem], dict[str, Any]]:
    """The gs:// class (`filesystem_class`) and its options: the endpoint, if any, and gcsfs's defaults
    as squirrel wants them.

    squirrel's subclasses leave retrying to the store's `RetryPolicy`, connect with a timeout of
    `CONNECT_TIMEOUT`, and take squirrel's own ``max_connections`` option (gcsfs itself never sees it).
    """
    import aiohttp

    from squirrel.aio.gcs import LimitedConnections

    cls = filesystem_class("gs", options)
    endpoint = gcs_endpoint(options)
    if options.get(MAX_CONNECTIONS) is None:  # None: the default pool, and gcsfs's classes exactly as they are
        options = {key: value for key, value in options.items() if key != MAX_CONNECTIONS}
    options = {
        "use_listings_cache": False,
        "requests_timeout": aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        **options,
    }
    if endpoint:
        options.setdefault("token", "anon")
        options["endpoint_url"] = endpoint
    if MAX_CONNECTIONS in options and not issubclass(cls, LimitedConnections):
        raise ValueError(f"{MAX_CONNECTIONS} is not supported by the gs:// filesystem class {cls.__qualname__}")
    return cls, options


def filesystem_class_and_options(
    protocol: str, storage_options: dict[str, Any]
) -> tuple[type[AbstractFileSystem], dict[str, Any]]:
    """The fsspec class for `protocol` and the options to build it with, for sync and async use alike.

    For gs:// this is where an endpoint (``endpoint_url`` or ``STORAGE_EMULATOR_HOST``) selects gcsfs's plain
    class. gs:// and s3:// list without a listings cache unless ``use_listings_cache`` says otherwise. The
    options are checked (`check_storage_options`); ``max_connections`` is dropped for the protocols that
    ignore it.
    """
    check_storage_options(protocol, storage_options)
    if protocol in GCS_PROTOCOLS:
        return _gcs_filesystem_class_and_options(storage_options)
    options = {key: value for key, value in storage_options.items() if key != MAX_CONNECTIONS}
    if protocol in S3_PROTOCOLS:
        # s3fs caches listings by default: a store would never see the objects another process adds
        options = {"use_listings_cache": False, **options}
    return filesystem_class(protocol, options), options


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
    """Close the network session of `fs`, if it has one: gcsfs's aiohttp session, or s3fs's botocore client.

    s3fs closes its client itself only when garbage-collected, and only for a blocking filesystem: an async
    one left open keeps its aiohttp session and sockets until then ("Unclosed client session").
    """
    session = getattr(fs, "_session", None)
    if session is not None and not getattr(session, "closed", True):
        await session.close()
    s3_client = getattr(fs, "_s3creator", None)  # s3fs: the context that opened its client (`set_session`)
    if s3_client is not None:
        fs._s3creator = fs._s3 = None  # never reused: the next `set_session` opens a new client
        await s3_client.__aexit__(None, None, None)


@dataclass(eq=False)
class _Entry:
    """A loop's shared filesystem for one (protocol, options), held by its users (`fs` is None once they are
    gone), and how many of them have not released it yet."""

    ref: weakref.ReferenceType[AsyncFileSystem]
    what: str
    """What the filesystem serves, for the warning when it is dropped unreleased: ``gs:// at <endpoint>``."""
    pid: int = field(default_factory=os.getpid)
    """The process that opened it: a forked child that drops an inherited filesystem leaked nothing."""
    users: int = 0
    kept: AsyncFileSystem | None = None
    """The filesystem itself when the pool holds it too (on squirrel's IO loop), else None."""

    @property
    def fs(self) -> AsyncFileSystem | None:
        """The filesystem, or None when its users have all dropped it."""
        return self.ref()


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


def _describe(protocol: str, storage_options: dict[str, Any]) -> str:
    endpoint = gcs_endpoint(storage_options) if protocol in GCS_PROTOCOLS else None
    return f"{protocol}:// at {endpoint}" if endpoint else f"{protocol}://"


def _warn_if_unreleased(entry: _Entry) -> None:
    """Called when a networked filesystem is collected: `ResourceWarning` if users dropped it unreleased."""
    if entry.users > 0 and entry.pid == os.getpid():
        warnings.warn(
            f"unclosed squirrel store on {entry.what}: dropped without aclose(), it left its network session "
            "open until now; call aclose() or use async with",
            ResourceWarning,
            stacklevel=1,
        )


def _open_entry(protocol: str, storage_options: dict[str, Any]) -> tuple[AsyncFileSystem, _Entry]:
    """A new filesystem on the running loop and its pool entry: kept by the pool on squirrel's IO loop; else
    held by its users alone, and watched, when it has a network session, for being dropped unreleased
    (only when collected: at interpreter exit everything goes, and a warning then would be noise)."""
    fs = open_filesystem(protocol, storage_options)
    entry = _Entry(weakref.ref(fs), _describe(protocol, storage_options))
    if on_io_loop():
        entry.kept = fs
    elif not is_blocking(fs):
        weakref.finalize(fs, _warn_if_unreleased, entry).atexit = False
    return fs, entry


def acquire_filesystem(protocol: str, storage_options: dict[str, Any]) -> AsyncFileSystem:
    """The running loop's shared filesystem for (`protocol`, `storage_options`); pair with `release`.

    The caller holds the filesystem; the pool finds it for the next caller on the loop while one does (see
    the module's docstring). A networked filesystem collected while acquired (its users were dropped
    without `aclose`) emits a `ResourceWarning`; its own finalizer (gcsfs's) releases its connections.
    """
    entries = _pool.by_loop.setdefault(asyncio.get_running_loop(), {})
    key = _pool_key(protocol, storage_options)
    entry = entries.get(key)
    fs = entry.fs if entry is not None else None
    if entry is None or fs is None:
        fs, entry = _open_entry(protocol, storage_options)
        entries[key] = entry
    entry.users += 1
    return fs


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


class LoopFilesystems:
    """The filesystems one store acquired (`acquire_filesystem`), one per event loop it was used on.

    A loop that was closed without the store's `release` (an ``asyncio.run`` per call, no ``aclose``) loses
    its entry the next time the store is used, so a long-lived store never keeps dead loops and their
    sockets. Pickles empty: filesystems are loop-bound, and each process opens its own.
    """

    def __init__(self, protocol: str, storage_options: dict[str, Any]) -> None:
        self.protocol = protocol
        self.storage_options = storage_options
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncFileSystem] = (
            weakref.WeakKeyDictionary()  # a loop that is gone takes its entry with it
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["protocol"], state["storage_options"])  # type: ignore[misc]

    def get(self) -> AsyncFileSystem:
        """The running loop's filesystem, acquired on first use on that loop."""
        loop = asyncio.get_running_loop()
        fs = self._by_loop.get(loop)
        if fs is None:
            for closed in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[closed]
            fs = self._by_loop[loop] = acquire_filesystem(self.protocol, self.storage_options)
        return fs

    async def release(self) -> None:
        """Release the running loop's filesystem, if this store acquired one there."""
        fs = self._by_loop.pop(asyncio.get_running_loop(), None)
        if fs is not None:
            await release_filesystem(fs)
