"""`Composable`: a lazy, re-iterable stream with chainable, bounded operators, run in the caller's thread.

``for batch in IterableSource(keys).async_map(fetch, max_concurrency=64).batched(16): ...``
Each ``for`` builds a fresh chain of generators from the source, so a pipeline whose source can be
iterated again gives the same result twice (with seeded shuffles).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from squirrel.iterstream import operators as ops
from squirrel.splits import current_split
from squirrel.stages import Stage

__all__ = ["Composable", "IterableSource"]

C = TypeVar("C", bound="Composable")


class Composable(Stage):
    """Base of every sync stream. Subclass it and override `__iter__` to write your own stage.

    Every stage answers the same questions about the chain above it, by asking its `source` (a stage
    adds its own answer where it has one): `set_epoch`, `epoch`, `split_kinds`, `loader_metrics`,
    `replay_problems` and `resumed`. That is how `to_torch_iterable` and `monitor` learn about the
    loader at the top, without looking for attributes.
    """

    def __init__(self, source: Iterable[Any] | Callable[[], Iterable[Any]] | None = None) -> None:
        self.source = source

    def upstream_stage(self) -> Composable | None:
        """The stage this one reads from, if it is a `Composable`."""
        return self.source if isinstance(self.source, Composable) else None

    def replay_problems(self) -> list[str]:
        """Stages here or upstream whose order a second pass would not repeat (unseeded shuffles)."""
        upstream = self.upstream_stage()
        return upstream.replay_problems() if upstream is not None else []

    def resumed(self, skip: int) -> Iterator[Any]:
        """A pass without its first `skip` items; a loader upstream may skip them without reading."""
        return itertools.islice(iter(self), skip, None)

    def __iter__(self) -> Iterator[Any]:
        if self.source is None:
            raise ValueError(f"{type(self).__name__} has no source to iterate")
        source = self.source
        if callable(source) and not isinstance(source, Iterable):
            source = source()
        return iter(source)

    def _then(self, operator: Callable[..., Iterator[Any]], *args: Any) -> Composable:
        return _Stage(self, operator, args)

    def map(self, fn: Callable[[Any], Any]) -> Composable:
        """Apply `fn` to each item, in this thread, in order."""
        return _Map(self, ops.map_items, (fn,))

    def filter(self, predicate: Callable[[Any], Any]) -> Composable:
        """Keep items for which `predicate` is true."""
        return self._then(ops.filter_items, predicate)

    def async_map(
        self,
        fn: Callable[[Any], Any],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
    ) -> Composable:
        """Apply `fn` to many items at once, never more than `max_concurrency` in flight.

        Plain functions run in a thread pool or on `executor` (``ThreadPoolExecutor``,
        ``ProcessPoolExecutor``, a ``dask.distributed.Client``); coroutine functions on the IO loop.
        Results come in source order unless `ordered` is False (then in completion order).
        """
        return self._then(ops.async_map_items, fn, max_concurrency, ordered, executor)

    def prefetch(self, size: int) -> Composable:
        """Compute up to `size` items ahead of the consumer in a background thread."""
        return self._then(ops.prefetch_items, size)

    def batched(
        self,
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[Any]], Any] | None = None,
    ) -> Composable:
        """Group items into lists of `batchsize` (the last may be shorter unless dropped), then collate."""
        return self._then(ops.batched_items, batchsize, drop_last_if_not_full, collation_fn)

    def shuffle(self, size: int, seed: int | str | None = None) -> Composable:
        """Shuffle within a buffer of `size` items; the same `seed` gives the same order."""
        return _Shuffle(self, ops.shuffle_items, (size, seed))

    def take(self, n: int) -> Composable:
        """Only the first `n` items."""
        return self._then(ops.take_items, n)

    def loop(self, n: int | None = None) -> Composable:
        """Iterate the stream `n` times over (forever when None); the source must be re-iterable.

        A pass that yields nothing ends the loop: looping an empty source (or a rank's empty share of a
        store) would otherwise spin, re-listing the store thousands of times a second.
        """
        return _Loop(self, n)

    def flatten(self) -> Composable:
        """Yield the elements of each item."""
        return self._then(ops.flatten_items)

    def zip_index(self) -> Composable:
        """Yield ``(index, item)`` pairs."""
        return self._then(ops.zip_index_items)

    def monitor(self, callback: Callable[[dict[str, Any]], Any], every: float = 10.0) -> Composable:
        """Call `callback` every `every` seconds and at the end with items, items/s and, from upstream
        loaders, bytes and bytes/s fetched, fetches in flight and objects skipped.
        `squirrel.metrics.log_metrics` is a ready callback that logs them.
        """
        return self._then(ops.monitor_items, callback, every, self.loader_metrics())

    def tqdm(self, **tqdm_kwargs: Any) -> Composable:
        """Show a tqdm progress bar while iterating."""
        return _Tqdm(self, tqdm_kwargs)

    def split_by_rank_pytorch(self, rank: int | None = None, world_size: int | None = None) -> Composable:
        """Keep every `world_size`-th item from `rank` (from torch.distributed, the arguments or RANK/WORLD_SIZE).

        Prefer a loader's ``get_iter(split_by_rank=True)``, which splits keys before anything is fetched.
        """
        return _ItemSplit(self, "rank", rank, world_size)

    def split_by_worker_pytorch(self) -> Composable:
        """Keep every n-th item from this DataLoader worker's id (n = number of workers).

        Prefer a loader's ``get_iter(split_by_worker=True)``, which splits keys before anything is fetched.
        """
        return _ItemSplit(self, "worker", None, None)

    def to_torch_iterable(self) -> Any:
        """This stream as a `torch.utils.data.IterableDataset` (see `squirrel.iterstream.torch`)."""
        from squirrel.iterstream.torch import TorchIterable

        return TorchIterable(self)

    def compose(self, constructor: Callable[..., C], *args: Any, **kwargs: Any) -> C:
        """Append a stage of your own: ``constructor(*args, **kwargs)`` with this stream as its source."""
        stage = constructor(*args, **kwargs)
        stage.source = self
        return stage

    def collect(self) -> list[Any]:
        """Iterate to the end and return every item in a list."""
        return list(self)

    def join(self) -> None:
        """Iterate to the end, discarding items (for streams run for their side effects)."""
        for _ in self:
            pass


class IterableSource(Composable):
    """A stream over an iterable, or a callable returning one (called anew at each iteration)."""


class _Stage(Composable):
    def __init__(self, source: Composable, operator: Callable[..., Iterator[Any]], args: tuple[Any, ...]) -> None:
        super().__init__(source)
        self.upstream = source
        self.operator = operator
        self.args = args

    def __iter__(self) -> Iterator[Any]:
        return self.operator(iter(self.upstream), *self.args)


class _Map(_Stage):
    def resumed(self, skip: int) -> Iterator[Any]:
        return map(self.args[0], self.upstream.resumed(skip))  # a map keeps positions: skip upstream


class _Shuffle(_Stage):
    def replay_problems(self) -> list[str]:
        size, seed = self.args
        own = [f".shuffle({size}) without seed="] if size > 1 and seed is None else []
        return own + self.upstream.replay_problems()


class _ItemSplit(Composable):
    source: Composable

    def __init__(self, source: Composable, kind: str, rank: int | None, world_size: int | None) -> None:
        super().__init__(source)
        self.kind = kind
        self.rank = rank
        self.world_size = world_size

    def split_kinds(self) -> frozenset[str]:
        return super().split_kinds() | {self.kind}

    def __iter__(self) -> Iterator[Any]:
        split = current_split(self.kind == "rank", self.kind == "worker", self.rank, self.world_size)
        return itertools.islice(iter(self.source), split.index, None, split.readers)


class _Loop(Composable):
    source: Composable

    def __init__(self, source: Composable, n: int | None) -> None:
        super().__init__(source)
        self.n = n

    def __iter__(self) -> Iterator[Any]:
        done = 0
        while self.n is None or done < self.n:
            empty = True
            for item in self.source:
                empty = False
                yield item
            if empty:  # another pass would yield nothing either: looping on would spin (or flood a store)
                return
            done += 1


class _Tqdm(Composable):
    source: Composable

    def __init__(self, source: Composable, tqdm_kwargs: dict[str, Any]) -> None:
        super().__init__(source)
        self.tqdm_kwargs = tqdm_kwargs

    def __iter__(self) -> Iterator[Any]:
        from tqdm.auto import tqdm

        with tqdm(**self.tqdm_kwargs) as bar:
            for item in self.source:
                bar.update(1)
                yield item
