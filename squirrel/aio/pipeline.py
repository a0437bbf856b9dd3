"""The one data path of every loader: this reader's keys -> objects fetched with bounded concurrency and
inflated -> decoded samples, an object's worth (a chunk) at a time.

A format plugs in as an `ObjectSource` (a store): it reads a group of objects (`fetch_objects`) and
decodes one (`decode_object`, pure CPU, possibly pulling further chunks of a large object through the
`rest` callable it is given: csv's incremental reads). `Pass` runs one reader's pass of a `LoadPlan`:
`objects` fetches, `decode` decodes. Where decoding runs is the `decode_in` parameter of `chunks`:

- ``"consumer"``: the sync face iterates `objects` through the runtime's batched hand-over and decodes
  in its own thread. Measured fastest for it: decoding stays beside the consumer, the loop only waits
  on I/O, and nothing crosses threads twice.
- ``"worker"``: the async face decodes objects of `DECODE_IN_WORKER_BYTES` or more, and objects read in
  chunks, in a worker thread, so the loop keeps serving requests while a large shard is parsed; smaller
  ones are decoded inline, where a thread hop would cost more than the decoding (``"loop"``: all
  complete objects inline).

Small objects on local disk and memory:// (a record store's one-sample objects, small shards) are read in
groups (`ObjectSource.group_reader`) that grow from 8 objects to `prefetch` (at most `GROUP_SIZE`), so the
first sample comes early. Large ones are read one at a time, `SlowStart` widening the window as reads end.
The async face reads a group in one worker-thread hop, one group at a time; the sync face reads it in
the consumer's own thread (`Pass.objects_here`): a small read from the page cache costs a few µs, less
than the thread wake-ups that would move it elsewhere, and two threads taking turns at the GIL made each
read wait for the other's switch interval (measured over 3,000 one-sample records: 0.6x a serial
read-and-decode loop through the IO loop, 1.0x and more in the consumer's thread).

Bad objects (missing, corrupt) are raised where they stand in the order, or under ``on_error="skip"``
logged, counted and replaced by no samples.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.operators import close, closing, uninterrupted
from squirrel.aio.pacing import SlowStart, groups_of
from squirrel.aio.stream import AsyncIterableSource
from squirrel.errors import DecodeError
from squirrel.plan import CONSUMED, LoadPlan

if TYPE_CHECKING:
    from squirrel.codec.base import Buffer
    from squirrel.metrics import LoaderMetrics
    from squirrel.sample import Sample

__all__ = ["DECODE_IN_WORKER_BYTES", "GROUP_SIZE", "Fetched", "ObjectSource", "Pass", "ReadGroup", "Rest"]

logger = logging.getLogger("squirrel")

DECODE_IN_WORKER_BYTES = 256 * 1024
"""Under ``decode_in="worker"``, objects at least this large are decoded in a worker thread."""

GROUP_SIZE = 256
"""Most small objects read together (`ObjectSource.group_reader`): one thread hop, or one stretch of the
consumer's thread, serves them all."""

Rest = Callable[[], Iterable[bytes]]
"""Gives the chunks of an object after its first (`Fetched.complete` is False), in order, as they are read."""


@dataclass(slots=True)
class Fetched:
    """One object of a pass: its bytes, inflated (or the first chunk of an object read in chunks), or the
    samples that stand in for it (a placeholder of a resumed pass, or none for a skipped object).

    Never changed once made (not frozen only because a frozen dataclass costs three times as much to make,
    and a pass makes one per object).
    """

    key: str
    data: Buffer = b""
    complete: bool = True
    ready: list[Any] | None = None
    error: Exception | None = None


ReadGroup = Callable[[Sequence[str]], "list[Fetched]"]
"""Reads a group of objects in the calling thread, in the order of their keys (`ObjectSource.group_reader`)."""


class ObjectSource(Protocol):
    """What the pipeline needs of a store."""

    @property
    def reads_use_cpu(self) -> bool:
        """Whether reading an object keeps this machine's cores busy (local disk, memory://: copies from the
        page cache, inflating) rather than waiting on a server: such reads start one at a time (`SlowStart`)."""
        ...

    @property
    def whole_objects(self) -> bool:
        """Whether `decode_object` yields an object's samples as one chunk (what a resumed pass replays on)."""
        ...

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (errors name it)."""
        ...

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """Read, check and inflate `keys`, in their order; a missing or bad object comes back with its
        `error` set."""
        ...

    async def group_reader(self, keys: Sequence[str]) -> ReadGroup | None:
        """What reads a group of the objects `keys` as `fetch_objects` does, but in whichever thread calls
        it: for small objects on a blocking filesystem, read `GROUP_SIZE` at a time; None when each object
        is read on its own (object stores, large shards). Awaited on the loop of the pass (it binds that
        loop's filesystem)."""
        ...

    def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """The chunks of an incomplete object after its first, in order."""
        ...

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterable[Sequence[Sample]]:
        """The samples of one fetched object, in chunks (pure CPU but for `rest`): decoded at the call, as a
        list of one chunk, for a whole-object source; else an iterator that parses as it is taken."""
        ...


class Pass:
    """One pass of one reader over a `source`, following `plan`; counters go to `metrics`."""

    def __init__(
        self,
        source: ObjectSource,
        plan: LoadPlan,
        metrics: LoaderMetrics,
        keys: Sequence[str],
        read_group: ReadGroup | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        self.source = source
        self.plan = plan
        self.metrics = metrics
        self.keys = keys
        self.read_group = read_group  # the source's `group_reader`: small objects are read in groups
        # Recycled buffers pay off for large objects read one per request; small ones are read plainly. A
        # stream passes its own `pool`, kept from pass to pass (a fresh one faulted in new pages every pass).
        # A one-object pass has nothing to recycle.
        recycles = read_group is None and (pool is not None or len(keys) > 1)
        self.pool = (pool or BufferPool(max_buffers=plan.prefetch + 4)) if recycles else None

    def skipped(self, key: str, error: Exception) -> list[Any]:
        """A bad object: raise `error` under ``on_error="raise"``; under "skip" log and count it, and
        return no samples in its place."""
        if self.plan.on_error == "raise":
            raise error
        self.metrics.skipped += 1
        logger.warning("skipping %s: %s: %s", key, type(error).__name__, error)
        return []

    def objects(self) -> AsyncIterator[Fetched]:
        """This reader's objects in plan order, `prefetch` held ahead at most, `max_concurrency` requests."""
        groups = self._groups()
        first, second = next(groups, ()), next(groups, None)
        if second is None:  # one object (a store's `get`) or one group: nothing to overlap, no task to start
            return _Later(self, first)
        return self._overlapped(itertools.chain((first, second), groups))

    async def _overlapped(self, groups: Iterable[Sequence[str]]) -> AsyncIterator[Fetched]:
        """The objects of `groups`, fetched concurrently within the plan's bounds."""
        plan = self.plan
        requests = (
            SlowStart(plan.max_concurrency) if self.source.reads_use_cpu else asyncio.Semaphore(plan.max_concurrency)
        )

        async def fetch(group: Sequence[str]) -> list[Fetched]:
            async with requests:
                return await self._fetch(group)

        # One group at a time: reading many small files from several threads at once was slower (measured:
        # 16k objects/s with one group in flight, 13k with two), as each file's system calls retake the GIL.
        window = plan.prefetch if self.read_group is None else 1
        stream = AsyncIterableSource(groups).async_map(fetch, max_concurrency=window)
        async with closing(aiter(stream)) as results:
            async for group in results:
                for item in group:
                    yield item

    async def _fetch(self, group: Sequence[str]) -> list[Fetched]:
        """The objects of `group`, in order: read in one worker-thread hop when they are small
        (`read_group`), else by the source."""
        wanted = self._wanted(group)
        if not wanted:
            return self._completed(group, [])
        self.metrics.in_flight += len(wanted)
        try:
            if self.read_group is not None:
                return self._completed(group, await asyncio.to_thread(self.read_group, wanted))
            return self._completed(group, await self.source.fetch_objects(wanted, self.pool))
        finally:
            self.metrics.in_flight -= len(wanted)

    def objects_here(self) -> Generator[Fetched, None, None]:
        """This reader's objects in plan order, read a group at a time in the calling thread with the
        source's `group_reader` (`read_group`, which must be set): the sync face's path for small objects
        on local disk and memory:// (see the module docstring)."""
        if self.read_group is None:
            raise RuntimeError(f"{type(self.source).__name__} has no group reader: read its objects with objects()")
        read = self.read_group
        for group in self._groups():
            wanted = self._wanted(group)
            yield from self._completed(group, read(wanted) if wanted else [])

    def _groups(self) -> Iterator[Sequence[str]]:
        return groups_of(self.keys, min(GROUP_SIZE, self.plan.prefetch) if self.read_group is not None else 1)

    def _wanted(self, group: Sequence[str]) -> Sequence[str]:
        """The keys of `group` to read: all but those a resumed pass replaces by placeholders."""
        placeholders = self.plan.placeholders
        return [key for key in group if key not in placeholders] if placeholders else group

    def _completed(self, group: Sequence[str], fetched: list[Fetched]) -> list[Fetched]:
        """`group`'s objects in order: those `fetched` (in the order of the keys read), placeholders for the
        others; counted in the metrics."""
        metrics = self.metrics
        metrics.objects += len(fetched)
        if len(fetched) < len(group):
            by_key = {item.key: item for item in fetched}
            counts = self.plan.placeholders
            fetched = [by_key.get(key) or Fetched(key, ready=[CONSUMED] * counts[key]) for key in group]
        for item in fetched:
            if item.ready is None and item.error is None:
                metrics.bytes += len(item.data)
        return fetched

    def decode(self, fetched: Fetched, rest: Rest) -> Iterable[Sequence[Any]]:
        """The samples of `fetched` in chunks; a bad object is raised or skipped (see `skipped`).

        A whole object comes decoded, as a list of its one chunk (no generator per object: for small
        objects those cost as much as the decoding). Under "skip", the chunks of a streamed object decoded
        before its bad part stay delivered.
        """
        if fetched.error is not None:
            return [self.skipped(fetched.key, fetched.error)]
        if fetched.ready is not None:
            return [fetched.ready]
        try:
            chunks = _decode_collector_paused(self.source, fetched, rest)
        except DecodeError as error:
            return [self.skipped(fetched.key, error)]
        return chunks if isinstance(chunks, list) else self._streamed(fetched.key, chunks)

    def _streamed(self, key: str, chunks: Iterable[Sequence[Any]]) -> Generator[Sequence[Any], None, None]:
        """`chunks` of object `key` as its decoder parses them; a `DecodeError` among them is raised or skipped."""
        try:
            yield from chunks
        except DecodeError as error:
            yield self.skipped(key, error)

    def decoding(self, fetched: Fetched, rest: Rest) -> Generator[Sequence[Any], None, None]:
        """`decode`, run only as the chunks are taken (so a worker thread that takes them does the decoding)."""
        yield from self.decode(fetched, rest)

    def rest_on_loop(self, fetched: Fetched, loop: asyncio.AbstractEventLoop) -> Rest:
        """`Rest` for a decoder running in a worker thread while `loop` (which reads the object) waits for it."""

        def chunks() -> Iterator[bytes]:
            iterator = self.source.read_rest(fetched)
            try:
                while (chunk := asyncio.run_coroutine_threadsafe(_next_or_none(iterator), loop).result()) is not None:
                    yield chunk
            finally:
                asyncio.run_coroutine_threadsafe(close(iterator), loop).result()

        return chunks

    async def chunks(self, decode_in: str = "worker") -> AsyncIterator[Sequence[Any]]:
        """Decoded chunks of samples in plan order, for the async face (``"worker"`` or ``"loop"``)."""
        if decode_in not in ("worker", "loop"):
            raise ValueError(f"an async pass decodes in 'worker' or 'loop', got {decode_in!r}")
        async with closing(aiter(self.objects())) as objects:
            async for fetched in objects:
                small = decode_in == "loop" or len(fetched.data) < DECODE_IN_WORKER_BYTES
                if fetched.complete and small:
                    for samples in self.decode(fetched, _no_rest):
                        yield samples
                    continue
                decoded = self.decoding(fetched, self.rest_on_loop(fetched, asyncio.get_running_loop()))
                try:
                    while (chunk := await asyncio.to_thread(_next_chunk, decoded)) is not None:
                        yield chunk
                finally:  # the thread may still be in the decoder: it closes it once that returns
                    await uninterrupted(asyncio.to_thread(decoded.close))


class _Later:
    """The objects of a pass's one `group`, as an async iterator that fetches them when first asked: a
    one-object pass (a store's `get`) then builds no async generator, the costliest part of its machinery."""

    __slots__ = ("group", "items", "run")

    def __init__(self, run: Pass, group: Sequence[str]) -> None:
        self.run, self.group = run, group
        self.items: Iterator[Fetched] | None = None

    def __aiter__(self) -> _Later:
        return self

    async def __anext__(self) -> Fetched:
        if self.items is None:
            self.items = iter(await self.run._fetch(self.group))
        try:
            return next(self.items)
        except StopIteration:
            raise StopAsyncIteration from None


def _decode_collector_paused(source: ObjectSource, fetched: Fetched, rest: Rest) -> Iterable[Sequence[Any]]:
    """`source.decode_object(fetched, rest)` with Python's cycle collector paused (if it runs at all).

    Decoding a shard makes thousands of containers at once (a list per ``[key, value]`` pair, a dict per
    value) and none of them can form a cycle, yet each 700 of them set off a collection that scans them, and
    those still held moved on to older generations until a full collection scanned the whole heap (10-20 ms
    here, once every 1-2 passes of 20,000 samples). Paused meanwhile, 12 passes in one process read
    236k-268k samples/s, as with the collector off, against 216k-238k. (The `Sample`s themselves are made
    as the consumer takes them: `squirrel.codec.messagepack.SampleChunk`.) The collector runs again at the
    next allocation after the decode; it is left off if it was off (and a concurrent decode that found it
    paused leaves it to the one that paused it).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return source.decode_object(fetched, rest)
    finally:
        if enabled:
            gc.enable()


def _no_rest() -> Iterable[bytes]:
    return ()  # only complete objects are decoded on the loop


def _next_chunk(chunks: Iterator[Sequence[Any]]) -> Sequence[Any] | None:
    return next(chunks, None)


async def _next_or_none(iterator: AsyncIterator[bytes]) -> bytes | None:
    return await anext(iterator, None)
