"""The zarr driver's blocking store and loader.

`ZarrLoader.get_store()` hands out a `zarr.Group`, zarr's own blocking face: its calls run on zarr's IO
loop, so the root is opened there (`zarr.core.sync.sync`, as `zarr.api.synchronous` does). A loader runs
sync fetchers such as ``root[key][:]`` in a thread pool, so many keys are read at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import zarr
from zarr.core.sync import sync as zarr_sync

from squirrel.aio.loader import LoadPlan
from squirrel.aio.zarr import AsyncZarrLoader, AsyncZarrStore
from squirrel.iterstream.base import Composable, IterableSource
from squirrel.runtime import run_sync
from squirrel.sample import Sample, Shard


def fetch(root: zarr.Group, key: str) -> Any:
    """The default fetcher: the node `key` of the root group (a `zarr.Array` or `zarr.Group`), read lazily."""
    return root[key]


class ZarrStore:
    """Blocking face of `AsyncZarrStore`: ``set(sample)``, ``get(key)``, ``keys()``; one group per sample."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.aio = AsyncZarrStore(url, **storage_options)

    @property
    def url(self) -> str:
        """The root group's URL."""
        return self.aio.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def get(self, key: str) -> Iterator[Sample]:
        """The sample stored under `key` (numpy fields as arrays, the rest from attributes); `KeyError` if none."""
        return iter(run_sync(self.aio.fetch(key)))

    def set(self, item: Sample | Shard) -> None:
        """Write a sample (or each sample of a shard) as a group named by its key."""
        run_sync(self.aio.set(item))

    def keys(self) -> Iterator[str]:
        """Every key in the store, sorted."""
        return iter(run_sync(self.aio.list_keys()))


class ZarrLoaderStream(Composable):
    """The stream of `ZarrLoader.get_iter`: ``fetcher(root, key)`` for this reader's keys, in order."""

    def __init__(self, loader: ZarrLoader, fetcher: Callable[[zarr.Group, str], Any], plan: LoadPlan) -> None:
        super().__init__(None)
        self.loader = loader
        self.fetcher = fetcher
        self.plan = plan

    @property
    def split_kinds(self) -> frozenset[str]:
        """Which splits this stream applies ("rank", "worker")."""
        return self.plan.split_kinds

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch` (with the seed) for the order of the next iteration."""
        self.plan.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        plan = self.plan
        root = self.loader.get_store("r")
        keys = plan.key_iterator if plan.key_iterator is not None else run_sync(self.loader.aio.store.list_keys())
        stream = (
            IterableSource(plan.share(keys, plan.split()))
            .async_map(functools.partial(self.fetcher, root), max_concurrency=plan.max_concurrency)
            .prefetch(plan.prefetch)
        )
        return iter(stream)


class ZarrLoader:
    """Reads a zarr hierarchy by top-level key: ``ZarrLoader(url).get_iter(fetcher_func=fetcher)``."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.aio = AsyncZarrLoader(url, **storage_options)

    @property
    def url(self) -> str:
        """The root group's URL."""
        return self.aio.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def get_store(self, mode: str = "r") -> zarr.Group:
        """The root `zarr.Group` (zarr modes: "r", "r+", "a", "w", "w-"); `FileNotFoundError` if there is none."""
        return zarr.Group(zarr_sync(self.aio.get_store(mode)))

    def get_iter(
        self,
        fetcher_func: Callable[[zarr.Group, str], Any] = fetch,
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
    ) -> ZarrLoaderStream:
        """``fetcher_func(root, key)`` for each top-level key of the root group, as a re-iterable stream.

        Args:
            fetcher_func: a function of the root `zarr.Group` and a key, e.g. ``lambda g, k: g[k][:]``;
                calls run in a thread pool, `max_concurrency` at once, results kept in key order.
            key_iterator: keys to read, in this order; all top-level keys (sorted) when None.
            max_concurrency: fetcher calls in flight at once.
            prefetch: results held ready ahead of the consumer.
            shuffle_key_buffer, seed, epoch, split_by_rank, split_by_worker, rank, world_size: as for
                `RecordLoader.get_iter`.
        """
        plan = self.aio.get_iter(
            fetcher_func,
            key_iterator,
            max_concurrency,
            prefetch,
            shuffle_key_buffer,
            seed,
            epoch,
            split_by_rank,
            split_by_worker,
            rank,
            world_size,
        ).plan
        return ZarrLoaderStream(self, fetcher_func, plan)
