"""The zarr driver's blocking store and loader: the async twins (`squirrel.aio.zarr`) run on squirrel's IO loop.

Every method is one call through `squirrel._runtime` (`run_sync`, `iterate`) into `AsyncZarrStore` /
`AsyncZarrLoader`, plus wrapping the result; `close()` (or ``with``) releases the filesystem they acquired.

Why zarr is pointed at squirrel's IO loop: `ZarrLoader.get_store()` hands out a `zarr.Group`, zarr's own
blocking face, and fetchers call it (``root[key][:]``). zarr runs those calls through
`zarr.core.sync.sync`, on the loop in ``zarr.core.sync.loop[0]``, which zarr otherwise starts in a thread
of its own ("zarr_io"). The group's `FsspecStore` holds an async filesystem, and an async filesystem
belongs to the loop it was made on (its aiohttp session, for gs://, does): used from zarr's loop, a
filesystem made on squirrel's fails ("attached to a different loop"), and one made on zarr's loop is a
second filesystem nobody releases, whose pending tasks are destroyed at exit. So before the sync face uses
zarr, it sets ``zarr.core.sync.loop[0]`` and ``iothread[0]`` to squirrel's IO loop and thread
(`_share_io_loop`): one loop, one IO thread, one filesystem per store. The check runs at each use, since
a forked child resets both (zarr clears its globals after a fork, and squirrel's runtime starts a new loop
there). A zarr loop started before (by direct use of zarr) keeps running for what was opened on it.

At exit zarr's own handler stops and closes ``loop[0]``; the loop is squirrel's, which outlives it (daemon
threads run until the very end, and filesystems close their sessions on it then). So the first binding
registers a handler, run before zarr's (handlers run last-registered first), that hands zarr its slot back
empty, and zarr's handler then has no loop to stop.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import zarr
import zarr.core.sync as zarr_sync

from squirrel._runtime import io_loop, io_thread, iterate, run_sync
from squirrel.aio.zarr import AsyncZarrLoader, AsyncZarrLoaderStream, AsyncZarrStore
from squirrel.aio.zarr import fetch as fetch_async
from squirrel.driver.loader import handover_capacity
from squirrel.driver.twin import SyncTwin, constructor, delegated_stream, shared
from squirrel.iterstream.base import Composable
from squirrel.stages import BlockingPlannedStage

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine, Iterator

    from squirrel.sample import Sample, Shard

__all__ = ["ZarrLoader", "ZarrLoaderStream", "ZarrStore", "fetch"]

T = TypeVar("T")

_bound_loop: asyncio.AbstractEventLoop | None = None
_exit_handler_registered = False


def _unbind_at_exit() -> None:
    """Empty zarr's loop slot if it holds squirrel's loop, so zarr's exit handler does not stop it."""
    if _bound_loop is not None and zarr_sync.loop[0] is _bound_loop:
        zarr_sync.loop[0] = None
        zarr_sync.iothread[0] = None


def _share_io_loop() -> None:
    """Make zarr's blocking API run on squirrel's IO loop (a no-op when it already does).

    Binding twice from two threads at once is harmless: both write the same loop and thread.
    """
    global _bound_loop, _exit_handler_registered
    loop = io_loop()
    if zarr_sync.loop[0] is loop:
        return
    _bound_loop = loop
    zarr_sync.iothread[0] = io_thread()
    zarr_sync.loop[0] = loop
    if not _exit_handler_registered:
        _exit_handler_registered = True
        atexit.register(_unbind_at_exit)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """`run_sync(coro)`, with zarr bound to the IO loop first."""
    try:
        _share_io_loop()
    except BaseException:
        coro.close()
        raise
    return run_sync(coro)


def fetch(root: zarr.Group, key: str) -> Any:
    """The default fetcher: the node `key` of the root group (a `zarr.Array` or `zarr.Group`), read lazily.

    `KeyError` if the root group has no such node.
    """
    return root[key]


class ZarrStore(SyncTwin):
    """Blocking face of `AsyncZarrStore`: ``set(sample)``, ``get(key)``, ``keys()``; one group per sample.

    Use it as ``with ZarrStore(url) as store:``, or call `close`, to release its filesystem.
    `ValueError` at construction for storage options the protocol does not honour (``max_connections``).
    """

    async_class: ClassVar[type[AsyncZarrStore]] = AsyncZarrStore
    aio: AsyncZarrStore

    @constructor(AsyncZarrStore)
    def __init__(self) -> None:
        """Open the zarr hierarchy at `url` (nothing is read until a method needs it)."""

    storage_options: shared[dict[str, Any]] = shared("The options the store's filesystem is made with.")

    def open_root(self, mode: str = "r") -> zarr.Group:
        """The root `zarr.Group` (zarr modes: "r", "r+", "a", "w", "w-"); its calls run on squirrel's IO loop.

        `FileNotFoundError` naming the URL if there is no group there (in a reading mode).
        """
        return zarr.Group(_run(self.aio.open_root(mode)))

    def list_keys(self) -> list[str]:
        """The names of the root group's children, sorted, from one listing; empty if nothing is stored yet."""
        return _run(self.aio.list_keys())

    def keys(self) -> Iterator[str]:
        """Every key in the store, sorted (see `list_keys`)."""
        return iter(self.list_keys())

    def fetch(self, key: str) -> list[Sample]:
        """The sample stored under `key`, as a one-item list; `KeyError` naming key and URL if there is none."""
        return _run(self.aio.fetch(key))

    def get(self, key: str) -> Iterator[Sample]:
        """The sample stored under `key` (numpy fields as arrays, the rest from attributes); `KeyError` if none."""
        return iter(self.fetch(key))

    def set(self, item: Sample | Shard) -> None:
        """Write `item`, a sample (or each sample of a shard), as a group named by its key, replacing any old one.

        Nothing is written if any sample is bad: `EncodeError`, `ValueError` or `TypeError` as for
        `AsyncZarrStore.set`.
        """
        _run(self.aio.set(item))


class ZarrLoaderStream(BlockingPlannedStage, Composable[Any]):
    """The stream of `ZarrLoader.get_iter`: ``fetcher(root, key)`` for this reader's keys, in key order.

    Blocking face of `AsyncZarrLoaderStream`: each pass runs it on squirrel's IO loop and hands results
    over to the consuming thread in batches; plain fetchers get the root as a `zarr.Group`.
    """

    aio: AsyncZarrLoaderStream

    def __iter__(self) -> Iterator[Any]:
        _share_io_loop()  # fetchers call the root's blocking zarr API: it must run on the loop the pass runs on
        return iterate(self.aio.__aiter__, capacity=handover_capacity(self.aio.plan.prefetch))


def _blocking_stream(stream: AsyncZarrLoaderStream) -> ZarrLoaderStream:
    """The blocking face of `stream`: a plain fetcher gets the root as a `zarr.Group` (zarr's blocking API), and
    the default fetcher returns blocking nodes (`fetch`)."""
    fetcher = fetch if stream.fetcher is fetch_async else stream.fetcher
    return ZarrLoaderStream(AsyncZarrLoaderStream(stream.store, fetcher, stream.plan, root_face=zarr.Group))


class ZarrLoader(SyncTwin):
    """Reads a zarr hierarchy by top-level key: ``ZarrLoader(url).get_iter(fetcher_func=fetcher)``.

    Blocking face of `AsyncZarrLoader`. Use it as ``with ZarrLoader(url) as loader:``, or call `close`,
    to release its filesystem.
    """

    async_class: ClassVar[type[AsyncZarrLoader]] = AsyncZarrLoader
    aio: AsyncZarrLoader

    @constructor(AsyncZarrLoader)
    def __init__(self) -> None:
        """A loader of the zarr hierarchy at `url`."""
        self.store = ZarrStore.wrapping(self.aio.store)

    storage_options: shared[dict[str, Any]] = shared("The options the store's filesystem is made with.")

    def get_store(self, mode: str = "r") -> zarr.Group:
        """The root `zarr.Group` (zarr modes: "r", "r+", "a", "w", "w-"); its calls run on squirrel's IO loop.

        `FileNotFoundError` naming the URL if there is no group there (in a reading mode).
        """
        return zarr.Group(_run(self.aio.get_store(mode)))

    get_iter = delegated_stream(AsyncZarrLoader.get_iter, _blocking_stream)
