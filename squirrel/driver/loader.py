"""`RecordLoader`: the blocking face of `AsyncRecordLoader`, and the base of every sync loader.

A pass runs the async pipeline (`squirrel.aio.pipeline.Pass.objects`) on the IO loop: objects are
fetched there, `prefetch` ahead, and cross to this thread in batches through the runtime's hand-over.
Small objects on local disk and memory:// (records, small shards) are read in groups here instead
(`Pass.objects_here`), where a read costs less than the hop. Decoding and ordering run here, in the
consumer's thread (``decode_in="consumer"``), so the loop only does I/O and nothing crosses threads twice.
The plan, its I/O (`open_pass`, `quota`, `replay`) and the pipeline are the async face's own: only the
loop that drives them differs.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, ClassVar

from squirrel._runtime import iterate, run_sync
from squirrel.aio.loaders import AsyncLoaderStream, AsyncRecordLoader, open_pass, quota, replay
from squirrel.driver.record import RecordStore
from squirrel.driver.twin import SyncTwin, constructor, delegated_stream, shared
from squirrel.iterstream.base import Composable
from squirrel.sample import Sample
from squirrel.stages import BlockingPlannedStage

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Sequence

    from squirrel.aio.pipeline import Fetched, Pass, Rest
    from squirrel.plan import LoadPlan

__all__ = ["LoaderStream", "RecordLoader", "samples_of"]

HANDOVER_SHARE = 4
"""Objects between the IO loop and the consumer's thread (the batch it is yielding, and those waiting):
a 1/HANDOVER_SHARE of `prefetch` more, at least two so the next object is ready when one is done."""


def handover_capacity(prefetch: int) -> int:
    """The capacity of a sync pass's hand-over for `prefetch` (see `HANDOVER_SHARE`). With room for one
    object only, each object waited for two thread wake-ups after the last: 15% slower on 12 MB shards."""
    return max(2, prefetch // HANDOVER_SHARE)


def _rest(run: Pass, fetched: Fetched) -> Rest:
    return lambda: iterate(lambda: run.source.read_rest(fetched), capacity=1)


def samples_of(run: Pass) -> Iterator[Any]:
    """The samples of pass `run`, decoded and ordered in this thread (the sync face of `Pass.chunks`).

    Samples leave a chunk at a time through `itertools.chain`, so no Python frame is resumed per sample.
    """
    return itertools.chain.from_iterable(_ordered_chunks(run))


def _ordered_chunks(run: Pass) -> Iterator[Sequence[Any]]:
    order = run.plan.order()
    if run.read_group is not None:  # small objects on local disk or memory://: read here (see Pass)
        objects: Generator[Fetched, None, None] = run.objects_here()
    else:
        objects = iterate(run.objects, capacity=handover_capacity(run.plan.prefetch))
    try:
        for fetched in objects:
            yield from map(order.push, run.decode(fetched, _rest(run, fetched)))
            del fetched  # its buffer goes back to the pool once the consumer lets go of its samples
        yield order.drain()
    finally:
        objects.close()


class LoaderStream(BlockingPlannedStage, Composable[Sample]):
    """The stream a loader's `get_iter` returns: re-iterable, with `set_epoch` for a new order.

    The blocking face of `AsyncLoaderStream` (`aio`): the same store, plan and counters; each pass runs the
    async face's pipeline on the IO loop and decodes in this thread (see the module docstring).
    """

    aio: AsyncLoaderStream

    def replay_problems(self) -> list[str]:
        """Why a pass of this stream could not be replayed exactly (an unseeded shuffle), if so."""
        if self.plan.reshuffles_each_pass:
            return ["get_iter(shuffle_key_buffer=..., shuffle_item_buffer=...) without seed="]
        return []

    def __iter__(self) -> Iterator[Sample]:
        limit = run_sync(quota(self.aio.store, self.plan)) if self.plan.equalize else None
        if limit is None:
            return self.one_pass()
        return itertools.islice(_repeat_passes(self.one_pass), limit)

    def one_pass(self, plan: LoadPlan | None = None) -> Iterator[Sample]:
        """One pass over this reader's samples (of `plan`, by default the stream's own)."""
        plan = plan or self.plan
        return samples_of(run_sync(open_pass(self.aio.store, plan, self.metrics, self.aio.pool)))

    def resumed(self, skip: int) -> Iterator[Sample]:
        """This reader's pass without its first `skip` samples, for a resume mid-epoch.

        With the store's index, objects whose samples all came before are not read: placeholders of
        their sample count take their place, so the item shuffle (which depends only on counts and the
        seed) replays exactly, and only objects that still hold unseen samples are fetched. Otherwise
        (see `LoadPlan.replay`) the skipped samples are read and dropped.
        """
        plan = run_sync(replay(self.aio.store, self.plan, skip)) if not self.plan.equalize else None
        if plan is None:
            return itertools.islice(iter(self), skip, None)
        return itertools.islice(self.one_pass(plan), skip, None)


def _repeat_passes(one_pass: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Pass after pass over the same samples (for "pad"), stopping if a pass yields nothing."""
    while True:
        empty = True
        for sample in one_pass():
            empty = False
            yield sample
        if empty:
            return


class RecordLoader(SyncTwin):
    """Streams every sample of a record store: ``for sample in RecordLoader(url).get_iter(): ...``.

    Every argument is its async twin's (`squirrel.aio.AsyncRecordLoader`).
    """

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncRecordLoader
    aio: AsyncRecordLoader
    store_class: ClassVar[type[RecordStore]] = RecordStore

    @constructor(AsyncRecordLoader)
    def __init__(self) -> None:
        """A loader of the store at `url` (nothing is read until `get_iter` is iterated)."""

    compression: shared[str | None] = shared("The compression of the store's objects.")
    default_max_concurrency: shared[int] = shared("Requests in flight when `get_iter` is not told.")
    default_prefetch: shared[int] = shared("Objects held ahead of the consumer when `get_iter` is not told.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get_store(self) -> RecordStore:
        """The loader's store, for map-style access (`get`, `set`, `keys`)."""
        return self.store_class.wrapping(self.aio.get_store())

    get_iter = delegated_stream(AsyncRecordLoader.get_iter, LoaderStream)
