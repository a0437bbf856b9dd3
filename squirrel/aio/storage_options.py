"""URLs and storage options: which protocols squirrel stores data on, which fsspec class serves each, and the
checks that refuse, before anything is opened, a URL or an option that class would not honour.

`squirrel.aio.fs` opens, shares and closes the filesystems; this module only answers questions about URLs
and options, and opens nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.dircache import DirCache

from squirrel.aio.connections import MAX_CONNECTIONS, check_max_connections
from squirrel.arguments import did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "CONNECTIONLESS_PROTOCOLS",
    "GCS_PROTOCOLS",
    "PROTOCOLS",
    "S3_PROTOCOLS",
    "check_storage_options",
    "filesystem_class",
    "gcs_endpoint",
    "reports_missing_deletes",
    "split_protocol",
    "supported_schemes",
]

GCS_PROTOCOLS = ("gs", "gcs")
S3_PROTOCOLS = ("s3", "s3a")
CONNECTIONLESS_PROTOCOLS = ("file", "local", "memory")
"""Filesystems that open no network connections: ``max_connections`` is checked, then ignored."""
PROTOCOLS = CONNECTIONLESS_PROTOCOLS + GCS_PROTOCOLS + S3_PROTOCOLS
"""What squirrel stores data on: local disk, memory, and object stores it can list, write and delete in."""

_SET_BY_SQUIRREL = ("asynchronous", "loop", "skip_instance_cache")
"""fsspec options squirrel sets itself (see `squirrel.aio.fs.open_filesystem`): each filesystem is a new one,
bound to its loop."""


def reports_missing_deletes(protocol: str) -> bool:
    """Whether deleting a missing object on `protocol` raises `FileNotFoundError` (S3 deletes it without a
    word, so a store looks the object up first to say "no key")."""
    return protocol not in S3_PROTOCOLS


def split_protocol(url: str) -> tuple[str, str]:
    """`("gs", "bucket/path")` for ``gs://bucket/path``; `("file", url)` for a plain local path."""
    protocol, _, rest = url.partition("://")
    if not rest:
        return "file", url
    return protocol, rest


def gcs_endpoint(storage_options: Mapping[str, Any]) -> str | None:
    """The endpoint a gs:// store talks to when one is set (``endpoint_url``, else ``STORAGE_EMULATOR_HOST``),
    as a URL; None for Google's own."""
    endpoint = storage_options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
    if not endpoint:
        return None
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint.rstrip("/")


def supported_schemes() -> str:
    """The URLs squirrel stores data at, for error messages: s3:// only when s3fs is installed."""
    schemes = ["a local path", "file://", "memory://", "gs://", "gcs://"]
    if importlib.util.find_spec("s3fs") is not None:
        schemes.append("s3://")
    return ", ".join(schemes)


def _check_protocol(protocol: str, where: str) -> None:
    """`ValueError` naming `where` unless squirrel stores data on `protocol` (see `supported_schemes`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"unsupported URL {where!r}: squirrel does not store data on {protocol}:// (use {supported_schemes()})"
        )


def _gcs_filesystem_class(options: Mapping[str, Any]) -> type[AbstractFileSystem]:
    """gcsfs's plain class when an endpoint is given (its default class asks Google's gRPC control API about
    each bucket and retries for a minute when that is unreachable, as a local server is), else its default;
    either way squirrel's subclass of it (`squirrel.aio.gcs`)."""
    import gcsfs.core

    from squirrel.aio.gcs import policy_retried_class  # imported here only: gcsfs is slow to import

    if gcs_endpoint(options):
        return policy_retried_class(gcsfs.core.GCSFileSystem)
    return policy_retried_class(fsspec.get_filesystem_class("gs"))


def filesystem_class(protocol: str, storage_options: Mapping[str, Any]) -> type[AbstractFileSystem]:
    """The fsspec class that serves `protocol` with `storage_options` (no check: see `check_storage_options`):
    for gs:// and s3:// squirrel's subclass of the class gcsfs or s3fs would use, which leaves retrying to
    squirrel's `RetryPolicy` (`squirrel.aio.gcs`, `squirrel.aio.s3`).

    `ImportError` (fsspec's, saying what to install) when the protocol's library is not installed.
    """
    if protocol in GCS_PROTOCOLS:
        return _gcs_filesystem_class(storage_options)
    cls: type[AbstractFileSystem] = fsspec.get_filesystem_class(protocol)  # fsspec's ImportError, if any
    if protocol in S3_PROTOCOLS:
        from squirrel.aio.s3 import S3FileSystem  # imported here only: s3fs is an optional install

        cls = S3FileSystem
    return cls


def _named_parameters(function: Callable[..., object]) -> list[str]:
    """The parameters of `function` a caller can pass by keyword (not ``self``, ``*args``, ``**kwargs``)."""
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(function).parameters.values()
    return [parameter.name for parameter in parameters if parameter.kind in keyword_kinds and parameter.name != "self"]


@functools.cache
def _options_of(cls: type) -> frozenset[str]:
    """The storage options filesystem class `cls` takes: the named parameters of its ``__init__`` and of
    those it passes its ``**kwargs`` on to, down to fsspec's base class (which takes any keyword and reads
    only its listings cache's), plus squirrel's ``max_connections``, less what squirrel sets itself."""
    names = {MAX_CONNECTIONS, *_named_parameters(DirCache.__init__)}
    for klass in cls.__mro__:
        if klass is AbstractFileSystem:
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        names.update(_named_parameters(init))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return frozenset(names.difference(_SET_BY_SQUIRREL))


@functools.cache
def _s3_session_options() -> frozenset[str]:
    """The options s3fs passes on from its ``**kwargs`` to the botocore session it opens: ``profile`` (a named
    AWS profile) and the session's other parameters."""
    session_class = importlib.import_module("aiobotocore.session").AioSession  # s3fs's dependency: installed
    return frozenset(_named_parameters(session_class.__init__))


def _accepted_options(protocol: str, cls: type) -> frozenset[str]:
    """`_options_of` `cls`, plus those gcsfs reads from its ``**kwargs`` for gs:// (`squirrel.aio.gcs`) and
    those s3fs hands to botocore's session for s3:// (`_s3_session_options`)."""
    if protocol in S3_PROTOCOLS:
        return _options_of(cls) | _s3_session_options()
    if protocol not in GCS_PROTOCOLS:
        return _options_of(cls)
    from squirrel.aio.gcs import options_read_from_kwargs

    return _options_of(cls) | options_read_from_kwargs(cls)


def _caller_parameters(parameters: Iterable[str] | Callable[..., object]) -> list[str]:
    return _named_parameters(parameters) if callable(parameters) else list(parameters)


def _check_option_names(
    protocol: str, options: Mapping[str, Any], where: str, parameters: Iterable[str] | Callable[..., object]
) -> None:
    """`TypeError` for the first option the url's filesystem class does not take (see `check_storage_options`)."""
    for name in options:
        if name in _SET_BY_SQUIRREL:
            raise TypeError(
                f"storage option {name!r} of {where} is set by squirrel: each store's filesystem is its own, "
                "bound to the event loop that uses it"
            )
    cls = filesystem_class(protocol, options)
    accepted = _accepted_options(protocol, cls)
    unknown = [name for name in options if name not in accepted]
    if not unknown:
        return
    message = (
        f"unexpected keyword argument {unknown[0]!r} for {where}: "
        f"neither a parameter nor a storage option of {cls.__name__}"
    )
    suggestion = did_you_mean(unknown[0], [*_caller_parameters(parameters), *sorted(accepted)])
    if suggestion:
        raise TypeError(message + suggestion)
    raise TypeError(f"{message} (its storage options: {', '.join(sorted(accepted))})")


def check_storage_options(
    protocol: str,
    storage_options: Mapping[str, Any],
    *,
    url: str | None = None,
    parameters: Iterable[str] | Callable[..., object] = (),
) -> None:
    """Refuse, before anything is opened, a URL or storage options the url's filesystem would not honour.

    Stores call this when built, so errors come early and name the store's `url` (else ``<protocol>://``):

    - `ValueError` for a protocol squirrel does not store data on (http(s)://, or anything fsspec knows
      that is not a local path, file://, memory://, gs://, gcs:// or s3://), listing those that it does.
      s3:// needs s3fs: without it, fsspec's `ImportError` says to install it.
    - `TypeError` for an option the filesystem class does not take, which fsspec would silently swallow
      (``compresion="gzip"``): the message suggests the closest of `parameters` (the caller's own
      parameter names, or the function whose they are, such as a store's ``type(self).__init__``) and of
      the filesystem's options, "did you mean 'compression'?". Also for ``asynchronous``, ``loop`` and
      ``skip_instance_cache``, which squirrel sets itself.
    - `TypeError`/`ValueError` for a ``max_connections`` that is not a positive int, or that `protocol`
      would silently not honour: gs:// honours it; local and memory:// filesystems open no connections,
      so they accept and ignore it; any other protocol refuses it (its own library has its own knob,
      e.g. s3fs's ``config_kwargs={"max_pool_connections": n}``).
    """
    where = url if url is not None else f"{protocol}://"
    _check_protocol(protocol, where)
    if storage_options.get(MAX_CONNECTIONS) is not None:
        check_max_connections(storage_options[MAX_CONNECTIONS])
        if protocol not in GCS_PROTOCOLS + CONNECTIONLESS_PROTOCOLS:
            raise ValueError(
                f"{MAX_CONNECTIONS} is supported for gs:// (and ignored for local and memory://), not for {protocol}://"
            )
    _check_option_names(protocol, storage_options, where, parameters)
