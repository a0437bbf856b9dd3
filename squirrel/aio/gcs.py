"""gcsfs classes that leave retrying to squirrel's `RetryPolicy` while one is running, so retries never nest.

gcsfs retries every HTTP request itself: `gcsfs.retry.retry_request` wraps `GCSFileSystem._request` (which
`_cat_file`, `_pipe_file`, `_ls`, `_info`, `_rm_file` all go through) with 6 tries and 1+2+4+8+16 s of
backoff. The count is fixed when gcsfs's class is defined: setting ``retries`` on a filesystem changes
nothing, and a ``retries=`` keyword collides with the decorator's own argument. Under a policy of 8
attempts, a dead endpoint then took 8 x 34 s to fail.

The subclasses here override `_request`: while `squirrel.aio.retry.with_retries` runs the request
(`policy_retries_active`), the HTTP call is made once, unwrapped, and the policy decides what to retry;
anywhere else (zarr's `FsspecStore`, `FileDriver`, any caller without a policy) they behave exactly as
gcsfs does. gcsfs's classes themselves are untouched, so other users of gcsfs in the same process keep
its retries.

They also take squirrel's ``max_connections`` option (`LimitedConnections`): the size of the aiohttp
connection pool of the filesystem's session, which gcsfs leaves at aiohttp's default of 100. An asynchronous
instance is freed with its last user, its session closed on its loop (`GoneWithItsUsers`). And a write into
a bucket that does not exist says so (`MissingBucketErrors`), where gcsfs's error is the bare upload URL.

The classes are plain module-level subclasses, so a filesystem pickles (fsspec pickles a filesystem as its
class and options) and unpickles as what it was.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

import aiohttp
import gcsfs.core
from gcsfs.retry import HttpError, validate_response

from squirrel.aio.connections import DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS, check_max_connections
from squirrel.aio.retry import is_transient, policy_retries_active

__all__ = [
    "GCSFileSystem",
    "GoneWithItsUsers",
    "LimitedConnections",
    "MissingBucketErrors",
    "PolicyRetriedRequests",
    "options_read_from_kwargs",
    "policy_retried_class",
]

if TYPE_CHECKING:
    from collections.abc import Awaitable

    class _GcsfsBase:
        """What the mixins use of the gcsfs class they are mixed into (gcsfs is untyped): its session and requests."""

        _session: aiohttp.ClientSession | None
        session_kwargs: dict[str, Any]
        asynchronous: bool
        mirror_sync_methods: bool

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def split_path(self, path: str) -> tuple[str, str, str | None]: ...

        session: aiohttp.ClientSession
        requests_timeout: Any

        async def _set_session(self) -> aiohttp.ClientSession: ...
        async def _cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any: ...
        def url(self, path: str) -> str: ...
        def _get_headers(self, headers: dict[str, str] | None) -> dict[str, str]: ...
        def _get_params(self, kwargs: dict[str, Any]) -> dict[str, Any]: ...
        async def _request(self, *args: Any, **kwargs: Any) -> Any: ...
        async def _exists(self, path: str, **kwargs: Any) -> bool: ...
        async def _pipe_file(self, path: str, data: Any, *args: Any, **kwargs: Any) -> Any: ...
        async def _put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> Any: ...

else:
    _GcsfsBase = object  # at run time the mixins' next class is gcsfs's own (see the subclasses below)

_gcsfs_request = gcsfs.core.GCSFileSystem._request
_request_once = getattr(_gcsfs_request, "__wrapped__", None)
"""gcsfs's `_request` without its retry decorator (None if a gcsfs release stops exposing it)."""


_LARGE_BODY = getattr(aiohttp.payload, "TOO_LARGE_BYTES_BODY", 2**20)
"""The largest body of raw bytes aiohttp sends without a warning."""


class PolicyRetriedRequests(_GcsfsBase):
    """Mixin for a gcsfs class: one try per HTTP request while a squirrel `RetryPolicy` is retrying it.

    An upload body over `_LARGE_BODY` goes to aiohttp as a file-like object, which it sends a piece at a time:
    given raw bytes (what gcsfs hands it), aiohttp warns (`ResourceWarning`) that sending them may hold the
    loop, and under warnings-as-errors every write of a shard over 1 MiB failed.

    A whole object read under a policy (what every store read is) goes straight to one GET on gcsfs's
    session, with gcsfs's URL, headers, query and error translation, past the four layers of coroutines
    gcsfs's `_cat_file` stacks on it: 1,000 concurrent `store.get` over loopback took 13% less time
    (their objects made the garbage collector run less often, too).
    """

    async def _request(self, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > _LARGE_BODY:
            kwargs["data"] = io.BytesIO(data)  # gcsfs rewinds it for each of its own tries
        if _request_once is None or not policy_retries_active():
            return await super()._request(*args, **kwargs)
        try:
            return await _request_once(self, *args, **kwargs)
        except HttpError as error:
            raise _translated(error) from error

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> Any:
        if start is not None or end is not None or kwargs or _request_once is None or not policy_retries_active():
            return await super()._cat_file(path, start=start, end=end, **kwargs)
        url = self.url(path)
        await self._set_session()
        headers, params = self._get_headers(None), self._get_params({})
        async with self.session.request("GET", url, params=params, headers=headers, timeout=self.requests_timeout) as r:
            status, contents = r.status, await r.read()
        try:
            validate_response(status, contents, url)
        except HttpError as error:
            raise _translated(error) from error
        return contents


def _translated(error: HttpError) -> Exception:
    """gcsfs's `HttpError` as gcsfs's retry wrapper raises it (its one translation: requester pays)."""
    if error.code == 400 and "requester pays" in str(error.message):
        return ValueError("Bucket is requester pays. Set `requester_pays=True` when creating the GCSFileSystem.")
    untranslated: Exception = error
    return untranslated


class LimitedConnections(_GcsfsBase):
    """Mixin for a gcsfs class: ``max_connections=n`` bounds the HTTP connections its session keeps open at once.

    gcsfs builds its aiohttp session lazily, on the loop that uses it, in `_set_session`; a ``connector`` in
    ``session_kwargs`` replaces aiohttp's default one (100 connections). So the connector is made there too,
    on the running loop, and only for that call: ``session_kwargs`` and the filesystem's options (what it
    pickles as) are left as given. The option is taken off before gcsfs's ``__init__`` sees it.

    None (the default) leaves gcsfs's session exactly as gcsfs makes it. A limit is not applied when gcsfs
    presents a client certificate (mutual TLS) on a connector of its own; a warning says so.
    """

    max_connections: int | None

    def __init__(self, *args: Any, max_connections: int | None = None, **kwargs: Any) -> None:
        self.max_connections = check_max_connections(max_connections)
        if self.max_connections is not None and "connector" in (kwargs.get("session_kwargs") or {}):
            raise ValueError(
                f"give either {MAX_CONNECTIONS} or a connector in session_kwargs, not both "
                f"({MAX_CONNECTIONS}={self.max_connections!r})"
            )
        super().__init__(*args, **kwargs)

    def _presents_client_cert(self) -> bool:
        """Whether gcsfs will build its own connector, to present a client certificate (see its `_set_session`)."""
        return bool(getattr(self, "_use_client_cert", False)) and str(getattr(self, "_location", "")).startswith(
            "https://"
        )

    async def _set_session(self) -> aiohttp.ClientSession:
        limit = self.max_connections
        if limit is None or self._session is not None or "connector" in self.session_kwargs:
            return await super()._set_session()
        if self._presents_client_cert():
            if limit != DEFAULT_MAX_CONNECTIONS:
                warnings.warn(
                    f"{MAX_CONNECTIONS}={limit} is not applied: gcsfs presents a client certificate (mutual TLS) "
                    f"on a connection pool of its own, of aiohttp's default {DEFAULT_MAX_CONNECTIONS} connections",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return await super()._set_session()
        given = self.session_kwargs
        self.session_kwargs = {**given, "connector": aiohttp.TCPConnector(limit=limit)}
        try:
            return await super()._set_session()
        finally:
            self.session_kwargs = given


class GoneWithItsUsers(_GcsfsBase):
    """Mixin for a gcsfs class: an asynchronous instance (what squirrel's stores use) is freed as soon as its
    last user drops it, while its loop still runs, so gcsfs's finalizer closes its session there.

    fsspec gives each instance blocking twins of its async methods, closures over the instance: a reference
    cycle that kept a dropped filesystem, with its session, its sockets and its event loop, alive until a
    garbage collection, when the loop was usually closed and its connections could no longer be closed.
    An asynchronous instance gets no twins: they could not be called on its own loop anyway. A blocking
    instance (``asynchronous=False``) keeps them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.asynchronous:
            self.mirror_sync_methods = False  # read by fsspec when __init__ returns (`fsspec.spec._Cached`)


class MissingBucketErrors(_GcsfsBase):
    """Mixin for a gcsfs class: a write into a bucket that does not exist raises `FileNotFoundError` "bucket
    'x' does not exist (writing gs://x/key)".

    gcsfs turns the 404 of the upload into ``FileNotFoundError(<upload URL>)``, a bare URL. An upload creates
    its object, so a 404 usually means the bucket is missing; the bucket is looked up (one request, on
    this path only) before saying so, and any other 404 is raised as gcsfs raised it.
    """

    async def _pipe_file(self, path: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._naming_a_missing_bucket(path, super()._pipe_file(path, data, *args, **kwargs))

    async def _put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> Any:
        return await self._naming_a_missing_bucket(rpath, super()._put_file(lpath, rpath, *args, **kwargs))

    async def _naming_a_missing_bucket(self, path: str, write: Awaitable[Any]) -> Any:
        """``await write`` (a write to `path`), its `FileNotFoundError` replaced by one naming the bucket if
        that is missing (see `_raise_if_bucket_missing`)."""
        try:
            return await write
        except FileNotFoundError as error:
            await self._raise_if_bucket_missing(path, error)
            raise

    async def _raise_if_bucket_missing(self, path: str, error: FileNotFoundError) -> None:
        """`FileNotFoundError` naming the bucket and the object `path` when the bucket of `path` does not exist.

        Returns when it exists, or when it cannot be looked up (a writer may lack the right to read bucket
        metadata): gcsfs's own error is then the one to raise. A transient error of the lookup propagates,
        for the store's `RetryPolicy` to retry the write.
        """
        bucket, key, _ = self.split_path(path)
        try:
            exists = await self._exists(bucket)
        except (OSError, HttpError) as lookup_error:
            if is_transient(lookup_error):
                raise
            return
        if not exists:
            raise FileNotFoundError(f"bucket {bucket!r} does not exist (writing gs://{bucket}/{key})") from error


class GCSFileSystem(
    PolicyRetriedRequests,
    LimitedConnections,
    GoneWithItsUsers,
    MissingBucketErrors,
    gcsfs.core.GCSFileSystem,  # type: ignore[misc]  # gcsfs is untyped (Any)
):
    """gcsfs's plain `GCSFileSystem` (what squirrel uses with an endpoint), retried only by squirrel's policy."""


_CLASSES: dict[type, type] = {gcsfs.core.GCSFileSystem: GCSFileSystem}
_OPTIONS_READ_FROM_KWARGS: dict[type, frozenset[str]] = {}

try:
    from gcsfs.extended_gcsfs import ExtendedGcsFileSystem as _ExtendedGcsFileSystem
    from gcsfs.retry import DEFAULT_RETRY_CONFIG
except ImportError:  # an older gcsfs: the plain class is the only one
    pass
else:

    class ExtendedGcsFileSystem(
        PolicyRetriedRequests,
        LimitedConnections,
        GoneWithItsUsers,
        MissingBucketErrors,
        _ExtendedGcsFileSystem,  # type: ignore[misc]  # gcsfs is untyped (Any)
    ):
        """gcsfs's extended class (zonal and HNS buckets), retried only by squirrel's policy over HTTP.

        Its gRPC calls to Google's Storage Control API keep their own retry settings (``retry_timeout`` & co).
        """

    _CLASSES[_ExtendedGcsFileSystem] = ExtendedGcsFileSystem
    _OPTIONS_READ_FROM_KWARGS[ExtendedGcsFileSystem] = frozenset(
        {*(f"retry_{name}" for name in DEFAULT_RETRY_CONFIG), "memmove_max_workers"}
    )


def policy_retried_class(cls: type) -> type:
    """The subclass of gcsfs class `cls` defined here, or `cls` itself for a class this module does not know."""
    return _CLASSES.get(cls, cls)


def options_read_from_kwargs(cls: type) -> frozenset[str]:
    """The storage options gcsfs class `cls` reads from its ``**kwargs`` instead of naming them: for the
    extended class, the retry settings of Google's Storage Control API (``retry_timeout`` & co) and
    ``memmove_max_workers``. `squirrel.aio.storage_options` accepts them beside the named ones."""
    return _OPTIONS_READ_FROM_KWARGS.get(cls, frozenset())
