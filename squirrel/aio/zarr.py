"""The zarr driver, async: a zarr v3 hierarchy on any fsspec filesystem, through `zarr.storage.FsspecStore`.

`AsyncZarrStore` keeps one group per sample, named by its key: numpy fields become arrays of the group,
every other field (numbers, strings, lists, dicts: JSON) an attribute. `AsyncZarrLoader` opens the root
group on the running loop and calls a fetcher on it for each top-level key, many keys at once.

Each store acquires the running loop's shared filesystem (`squirrel.aio.fs`) on first use and holds it
until `aclose` (or ``async with``) releases it; the last user closes its network session. This module is
also the one implementation of the blocking face (`squirrel.driver.zarr`), which runs it on squirrel's IO
loop: that is why `AsyncZarrLoaderStream` can hand a plain fetcher the root as a blocking `zarr.Group`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.storage import FsspecStore

from squirrel.aio.executors import is_async_callable
from squirrel.aio.fs import LoopFilesystems
from squirrel.aio.operators import closing, run_all
from squirrel.aio.releasable import Releasable
from squirrel.aio.storage_options import check_storage_options, split_protocol
from squirrel.aio.stores.writes import MAX_CONCURRENT_WRITES
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource
from squirrel.errors import EncodeError
from squirrel.metrics import LoaderMetrics
from squirrel.plan import LoadPlan
from squirrel.sample import Sample, Shard, validate_key
from squirrel.stages import PlannedStage

if TYPE_CHECKING:
    from zarr.core.common import AccessModeLiteral

__all__ = ["AsyncZarrLoader", "AsyncZarrLoaderStream", "AsyncZarrStore", "fetch"]

_METADATA_NAMES = frozenset({"zarr.json"})

_ACCESS_MODES: dict[str, AccessModeLiteral] = {"r": "r", "r+": "r+", "a": "a", "w": "w", "w-": "w-"}
"""zarr's modes of opening a group, by name."""


def _access_mode(mode: str) -> AccessModeLiteral:
    """`mode` as one of zarr's access modes; `ValueError` for any other string."""
    try:
        return _ACCESS_MODES[mode]
    except KeyError:
        raise ValueError(f"zarr mode must be one of {list(_ACCESS_MODES)}, got {mode!r}") from None


class AsyncZarrStore(Releasable):
    """Samples as zarr groups under a root group: ``await store.set(sample)``, ``store.get(key)``, ``keys()``.

    Arrays keep dtype and shape (a numpy scalar comes back as a numpy scalar). A group is many objects,
    so a write is not atomic: a reader may see a sample's group before all its arrays are written.
    Use it as ``async with AsyncZarrStore(url) as store:``, or call `aclose`, to release its filesystem.
    `ValueError` at construction for storage options the protocol does not honour (``max_connections``).

    Args:
        url: the root group's folder: a local path, ``memory://...``, ``gs://bucket/prefix``, ``s3://...``.
        **storage_options: options of the url's filesystem (``endpoint_url``, ``token``, ...).
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/") or url
        self.storage_options = storage_options
        self._protocol, _ = split_protocol(self.url)
        check_storage_options(self._protocol, storage_options, url=self.url, parameters=type(self).__init__)
        self._filesystems = LoopFilesystems(self._protocol, storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def aclose(self) -> None:
        """Release this store's filesystem on the running loop (closing its session if it was the last user).

        The store stays usable: its next call acquires a filesystem again. Groups and arrays opened
        before (`open_root`) hold the released filesystem and should not be used after this.
        """
        await self._filesystems.release()

    def _zarr_store(self, read_only: bool = True) -> FsspecStore:
        """A zarr store over the root folder, on the running loop's shared filesystem (acquired once per loop)."""
        fs = self._filesystems.get()
        return FsspecStore(fs, read_only=read_only, path=fs._strip_protocol(self.url).rstrip("/"))

    async def open_root(self, mode: str = "r") -> zarr.AsyncGroup:
        """The root group, opened on the running loop (zarr modes: "r", "r+", "a", "w", "w-").

        `FileNotFoundError` naming the URL if there is no group there (in a reading mode).
        """
        try:
            access = _access_mode(mode)
            return await zarr_async.open_group(store=self._zarr_store(read_only=access == "r"), mode=access)
        except FileNotFoundError:
            raise FileNotFoundError(f"no zarr group at {self.url}") from None

    async def list_keys(self) -> list[str]:
        """The names of the root group's children, sorted, from one listing (no read per child).

        An empty list if nothing is stored at the URL yet.
        """
        names = [name async for name in self._zarr_store().list_dir("")]
        return sorted(name for name in names if name not in _METADATA_NAMES and not name.startswith("."))

    async def keys(self) -> AsyncIterator[str]:
        """Yield every key in the store, sorted (see `list_keys`)."""
        for key in await self.list_keys():
            yield key

    async def fetch(self, key: str) -> list[Sample]:
        """The sample stored under `key`, as a one-item list.

        `KeyError` naming the key and URL if there is no such group; `ValueError` for an invalid key.
        """
        try:
            group = await zarr_async.open_group(store=self._zarr_store(), path=validate_key(key), mode="r")
        except FileNotFoundError:
            raise KeyError(f"no group {key!r} in {self!r} (looked under {self.url}/{key})") from None
        value: dict[str, Any] = dict(group.attrs)
        arrays = sorted([(name, node) async for name, node in group.members() if isinstance(node, zarr.AsyncArray)])
        data = await asyncio.gather(*(node.getitem(...) for _, node in arrays))
        value.update((name, array) for (name, _), array in zip(arrays, data, strict=True))
        return [Sample(value, key)]

    async def get(self, key: str) -> AsyncIterator[Sample]:
        """Yield the sample stored under `key` (see `fetch`; `KeyError` if there is none)."""
        for sample in await self.fetch(key):
            yield sample

    async def set(self, item: Sample | Shard) -> None:
        """Write `item`, a sample (or each sample of a shard), as a group named by its key, replacing any old one.

        Every sample is checked before anything is written, so a bad value writes nothing: `EncodeError`
        for a value that is not a dict, an object array or a non-array field that is not JSON;
        `ValueError` for an invalid key or field name; `TypeError` for anything but a Sample or Shard.
        """
        if isinstance(item, Sample):
            samples = [item]
        elif isinstance(item, Shard):
            samples = item.value
        else:
            raise TypeError(f"{type(self).__name__}.set takes a Sample or a Shard, got {type(item).__name__}")
        groups = [_split_fields(sample) for sample in samples]
        root = await self.open_root("a")

        async def write(key: str, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> None:
            group = await root.create_group(key, overwrite=True, attributes=attributes)
            await run_all([functools.partial(group.create_array, name, data=array) for name, array in arrays.items()])

        await run_all([functools.partial(write, *group) for group in groups], limit=MAX_CONCURRENT_WRITES)


def _split_fields(sample: Sample) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """A sample's key, its numpy fields (arrays) and its other fields (attributes), checked for zarr."""
    if not isinstance(sample.value, Mapping):
        raise EncodeError(f"zarr stores dict values, got {type(sample.value).__name__} in sample {sample.key!r}")
    arrays, attributes = {}, {}
    for name, value in sample.value.items():
        if isinstance(value, np.ndarray | np.generic):
            if value.dtype.hasobject:
                raise EncodeError(f"sample {sample.key!r}: field {name!r} is an object array, which zarr cannot hold")
            arrays[validate_key(str(name))] = np.asarray(value)
        else:
            attributes[str(name)] = value
    try:
        json.dumps(attributes)
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"sample {sample.key!r}: non-array fields must be JSON ({exc})") from None
    return validate_key(sample.key), arrays, attributes


async def fetch(group: zarr.AsyncGroup, key: str) -> Any:
    """The default async fetcher: the node `key` of the root group (an `AsyncArray` or `AsyncGroup`).

    `KeyError` if the root group has no such node.
    """
    return await group.getitem(key)


class AsyncZarrLoaderStream(PlannedStage, AsyncComposable[Any]):
    """The async stream of `AsyncZarrLoader.get_iter`: ``fetcher(root, key)`` for this reader's keys, in order.

    Re-iterable: each pass opens the root group, lists the keys (unless the plan names them) and plans
    this reader's share with the plan's seed and epoch. A coroutine fetcher gets the root `zarr.AsyncGroup`;
    a plain one runs in a thread pool and gets ``root_face(root)``, the `AsyncGroup` itself by default
    (the blocking face passes `zarr.Group`, whose calls run on the loop this stream is iterated on).
    """

    def __init__(
        self,
        store: AsyncZarrStore,
        fetcher: Callable[[Any, str], Any],
        plan: LoadPlan,
        root_face: Callable[[zarr.AsyncGroup], Any] | None = None,
    ) -> None:
        super().__init__(None)
        self.store = store
        self.fetcher = fetcher
        self.plan = plan
        self.metrics = LoaderMetrics()
        self.root_face = root_face

    async def __aiter__(self) -> AsyncIterator[Any]:
        plan, store = self.plan, self.store
        root = await store.open_root("r")
        keys = plan.key_iterator if plan.key_iterator is not None else await store.list_keys()
        if self.root_face is not None and not is_async_callable(self.fetcher):
            root = self.root_face(root)
        fetched = (
            AsyncIterableSource(plan.share(keys, plan.split()))
            .async_map(functools.partial(self.fetcher, root), max_concurrency=plan.max_concurrency)
            .prefetch(plan.prefetch)
        )
        async with closing(aiter(fetched)) as results:
            async for result in results:
                yield result


class AsyncZarrLoader(Releasable):
    """Reads a zarr hierarchy by top-level key: ``AsyncZarrLoader(url).get_iter(fetcher_func=...)``.

    Use it as ``async with AsyncZarrLoader(url) as loader:``, or call `aclose`, to release its filesystem.

    Args:
        url: the root group's folder, as for `AsyncZarrStore`.
        **storage_options: options of the url's filesystem, as for `AsyncZarrStore`.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self.storage_options = storage_options
        self.store = AsyncZarrStore(url, **storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def aclose(self) -> None:
        """Release the store's filesystem on the running loop (see `AsyncZarrStore.aclose`)."""
        await self.store.aclose()

    async def get_store(self, mode: str = "r") -> zarr.AsyncGroup:
        """The root group, opened on the running loop (zarr modes: "r", "r+", "a", "w", "w-").

        `FileNotFoundError` naming the URL if there is no group there (in a reading mode).
        """
        return await self.store.open_root(mode)

    def get_iter(
        self,
        fetcher_func: Callable[[Any, str], Any] = fetch,
        key_iterator: Iterable[str] | None = None,
        max_concurrency: int = 16,
        prefetch: int = 16,
        shuffle_key_buffer: int = 1,
        seed: int | str | None = None,
        epoch: int = 0,
        split_by_rank: bool = False,
        split_by_worker: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> AsyncZarrLoaderStream:
        """``fetcher_func(root, key)`` for each top-level key of the root group, as a re-iterable stream.

        Args:
            fetcher_func: a function of the root group and a key. A coroutine function runs on the IO loop
                and gets the root `zarr.AsyncGroup`, e.g. ``async def f(g, k): return await (await
                g.getitem(k)).getitem(...)``. A plain function runs in a thread pool: on the blocking face
                (`ZarrLoader`) it gets the root as a `zarr.Group`, e.g. ``lambda g, k: g[k][:]``; here, the
                `AsyncGroup`. The default returns the node itself (the lazy array or group). Results keep
                key order.
            key_iterator: keys to read, in this order; all top-level keys (sorted) when None.
            max_concurrency: fetcher calls in flight at once (default 16).
            prefetch: results held ready ahead of the consumer (default 16).
            shuffle_key_buffer: shuffle the keys within a buffer of this many (default 1: key order).
            seed, epoch: the shuffle's seed (None: a new order each pass) and epoch (default 0), as for
                `AsyncRecordLoader.get_iter`.
            split_by_rank, split_by_worker, rank, world_size: give each DDP rank and DataLoader worker its
                own share of the keys (default: every reader reads every key), as for
                `AsyncRecordLoader.get_iter` (keys are planned by `squirrel.plan.LoadPlan`).

        `ValueError` here for `max_concurrency` or `prefetch` below 1. While iterating: `FileNotFoundError`
        if there is no root group, and whatever the fetcher raises, at its key.
        """
        plan = LoadPlan(
            key_iterator=list(key_iterator) if key_iterator is not None else None,
            max_concurrency=max_concurrency,
            prefetch=prefetch,
            shuffle_key_buffer=shuffle_key_buffer,
            seed=seed,
            epoch=epoch,
            split_by_rank=split_by_rank,
            split_by_worker=split_by_worker,
            rank=rank,
            world_size=world_size,
        )
        return AsyncZarrLoaderStream(self.store, fetcher_func, plan)
