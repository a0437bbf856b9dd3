"""`AsyncComposable`: a lazy, re-iterable async stream with chainable, bounded operators.

``await AsyncIterableSource(keys).async_map(fetch, max_concurrency=64).prefetch(8).batched(16).collect()``
Each ``async for`` builds a fresh chain of async generators from the source; leaving it early cancels
what is in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from squirrel.aio import operators as ops
from squirrel.stages import Stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable


__all__ = ["AsyncComposable", "AsyncIterableSource"]

C = TypeVar("C", bound="AsyncComposable")


class AsyncComposable(Stage):
    """Base of every async stream. Subclass it and override `__aiter__` to write your own stage.

    Like the sync `Composable`, every stage answers `set_epoch`, `split_kinds` and `loader_metrics` for
    the chain above it by asking its `source`; a loader's stream answers for itself.
    """

    def __init__(self, source: Iterable[Any] | AsyncIterable[Any] | Callable[[], Any] | None = None) -> None:
        self.source = source

    def upstream_stage(self) -> AsyncComposable | None:
        """The stage this one reads from, if it is an `AsyncComposable`."""
        return self.source if isinstance(self.source, AsyncComposable) else None

    def __aiter__(self) -> AsyncIterator[Any]:
        if self.source is None:
            raise ValueError(f"{type(self).__name__} has no source to iterate")
        return ops.iterate(self.source)

    def _then(self, operator: Callable[..., AsyncIterator[Any]], *args: Any) -> AsyncComposable:
        return _Stage(self, operator, args)

    def map(self, fn: Callable[[Any], Any]) -> AsyncComposable:
        """Apply `fn` (plain or coroutine function) to each item, one at a time, in order."""
        return self._then(ops.map_items, fn)

    def filter(self, predicate: Callable[[Any], Any]) -> AsyncComposable:
        """Keep items for which `predicate` (plain or coroutine function) is true."""
        return self._then(ops.filter_items, predicate)

    def async_map(
        self,
        fn: Callable[[Any], Any],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
    ) -> AsyncComposable:
        """Apply `fn` to many items at once, never more than `max_concurrency` in flight.

        Coroutine functions run on the loop; plain functions in a thread pool, or on `executor`
        (``ThreadPoolExecutor``, ``ProcessPoolExecutor``, a ``dask.distributed.Client``). Results come in
        source order unless `ordered` is False (then in completion order).
        """
        return self._then(ops.async_map_items, fn, max_concurrency, ordered, executor)

    def prefetch(self, size: int) -> AsyncComposable:
        """Compute up to `size` items ahead of the consumer in a background task."""
        return self._then(ops.prefetch_items, size)

    def batched(
        self,
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[Any]], Any] | None = None,
    ) -> AsyncComposable:
        """Group items into lists of `batchsize` (the last may be shorter unless dropped), then collate."""
        return self._then(ops.batched_items, batchsize, drop_last_if_not_full, collation_fn)

    def shuffle(self, size: int, seed: int | str | None = None) -> AsyncComposable:
        """Shuffle within a buffer of `size` items; the same `seed` gives the same order."""
        return self._then(ops.shuffle_items, size, seed)

    def take(self, n: int) -> AsyncComposable:
        """Only the first `n` items."""
        return self._then(ops.take_items, n)

    def loop(self, n: int | None = None) -> AsyncComposable:
        """Iterate the stream `n` times over (forever when None); the source must be re-iterable.

        A pass that yields nothing ends the loop: looping an empty source (or a rank's empty share of a
        store) would otherwise spin, re-listing the store thousands of times a second.
        """
        return _Loop(self, n)

    def flatten(self) -> AsyncComposable:
        """Yield the elements of each item."""
        return self._then(ops.flatten_items)

    def zip_index(self) -> AsyncComposable:
        """Yield ``(index, item)`` pairs."""
        return self._then(ops.zip_index_items)

    def monitor(self, callback: Callable[[dict[str, Any]], Any], every: float = 10.0) -> AsyncComposable:
        """Call `callback` every `every` seconds and at the end with items, items/s and, from upstream
        loaders, bytes and bytes/s fetched, fetches in flight and objects skipped.
        `squirrel.metrics.log_metrics` is a ready callback that logs them.
        """
        return self._then(ops.monitor_items, callback, every, self.loader_metrics())

    def tqdm(self, **tqdm_kwargs: Any) -> AsyncComposable:
        """Show a tqdm progress bar while iterating."""
        return _Tqdm(self, tqdm_kwargs)

    def compose(self, constructor: Callable[..., C], *args: Any, **kwargs: Any) -> C:
        """Append a stage of your own: ``constructor(*args, **kwargs)`` with this stream as its source."""
        stage = constructor(*args, **kwargs)
        stage.source = self
        return stage

    async def collect(self) -> list[Any]:
        """Iterate to the end and return every item in a list."""
        async with ops.closing(aiter(self)) as iterator:
            return [item async for item in iterator]

    async def join(self) -> None:
        """Iterate to the end, discarding items (for streams run for their side effects)."""
        async with ops.closing(aiter(self)) as iterator:
            async for _ in iterator:
                pass


class AsyncIterableSource(AsyncComposable):
    """A stream over an iterable, an async iterable, or a callable returning one."""


class _Stage(AsyncComposable):
    def __init__(
        self, source: AsyncComposable, operator: Callable[..., AsyncIterator[Any]], args: tuple[Any, ...]
    ) -> None:
        super().__init__(source)
        self.upstream = source
        self.operator = operator
        self.args = args

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.operator(aiter(self.upstream), *self.args)


class _Loop(AsyncComposable):
    def __init__(self, source: AsyncComposable, n: int | None) -> None:
        super().__init__(source)
        self.upstream = source
        self.n = n

    async def __aiter__(self) -> AsyncIterator[Any]:
        done = 0
        while self.n is None or done < self.n:
            empty = True
            async with ops.closing(aiter(self.upstream)) as iterator:
                async for item in iterator:
                    empty = False
                    yield item
            if empty:  # another pass would yield nothing either: looping on would spin (or flood a store)
                return
            done += 1


class _Tqdm(AsyncComposable):
    def __init__(self, source: AsyncComposable, tqdm_kwargs: dict[str, Any]) -> None:
        super().__init__(source)
        self.upstream = source
        self.tqdm_kwargs = tqdm_kwargs

    async def __aiter__(self) -> AsyncIterator[Any]:
        from tqdm.auto import tqdm

        with tqdm(**self.tqdm_kwargs) as bar:
            async with ops.closing(aiter(self.upstream)) as iterator:
                async for item in iterator:
                    bar.update(1)
                    yield item
