"""`Composable`: a lazy, re-iterable stream with chainable, bounded operators, run in the caller's thread.

``for batch in IterableSource(keys).async_map(fetch, max_concurrency=64).batched(16): ...``
Each ``for`` builds a fresh chain of generators from the source, so a pipeline whose source can be
iterated again gives the same result twice (with seeded shuffles).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.chain import T
from squirrel.iterstream import operators as ops
from squirrel.splits import current_split
from squirrel.stages import LoopStage, Operator, OperatorStage, length_of
from squirrel.transforms import Transforms

if TYPE_CHECKING:
    from types import ModuleType

    from squirrel.iterstream.torch import TorchIterable

__all__ = ["Composable", "IterableSource"]


class Composable(Transforms["Composable[T]", T]):
    """Base of every sync stream of items of type `T`. Subclass it and override `__iter__` to write your own stage.

    Every stage answers the same questions about the chain above it, by asking its `source` (a stage
    adds its own answer where it has one): `set_epoch`, `epoch`, `split_kinds`, `loader_metrics`,
    `replay_problems` and `resumed`. That is how `to_torch_iterable` and `monitor` learn about the
    loader at the top, without looking for attributes.
    """

    _operators: ClassVar[ModuleType] = ops

    def __init__(self, source: Iterable[T] | Callable[[], Iterable[T]] | None = None) -> None:
        self.source = source

    def upstream_stage(self) -> Composable[Any] | None:
        """The stage this one reads from, if it is a `Composable`."""
        return self.source if isinstance(self.source, Composable) else None

    def replay_problems(self) -> list[str]:
        """Stages here or upstream whose order a second pass would not repeat (unseeded shuffles)."""
        upstream = self.upstream_stage()
        return upstream.replay_problems() if upstream is not None else []

    def resumed(self, skip: int) -> Iterator[T]:
        """A pass without its first `skip` items; a loader upstream may skip them without reading."""
        return itertools.islice(iter(self), skip, None)

    def known_length(self) -> int:
        """The length of the source this stage iterates as it is (`squirrel.stages.length_of`: a stage's, or
        a sized iterable's ``len()``); `UnknownLength` for a subclass with its own `__iter__` that does not
        answer here, and for a source of unknown length."""
        if type(self).__iter__ is not Composable.__iter__:
            return super().known_length()
        return length_of(self.source)

    async def load_length(self) -> int | None:
        """`length`, asked in a worker thread: a sync stream reads what it needs blocking (a loader's on
        squirrel's IO loop), which must not hold up the running loop (a sync source of an async mix)."""
        return await asyncio.to_thread(self.length)

    def __iter__(self) -> Iterator[T]:
        if self.source is None:
            raise ValueError(f"{type(self).__name__} has no source to iterate")
        source = self.source
        if callable(source) and not isinstance(source, Iterable):
            source = source()
        return iter(source)

    def _apply(self, operator: Operator) -> Composable[Any]:
        return _Stage(self, operator)

    def _loop(self, n: int | None) -> Composable[T]:
        return _Loop(self, n)

    def split_by_rank_pytorch(self, rank: int | None = None, world_size: int | None = None) -> Composable[T]:
        """Keep every `world_size`-th item from `rank` (from torch.distributed, the arguments or RANK/WORLD_SIZE).

        Prefer a loader's ``get_iter(split_by_rank=True)``, which splits keys before anything is fetched.
        """
        return _ItemSplit(self, "rank", rank, world_size)

    def split_by_worker_pytorch(self) -> Composable[T]:
        """Keep every n-th item from this DataLoader worker's id (n = number of workers).

        Prefer a loader's ``get_iter(split_by_worker=True)``, which splits keys before anything is fetched.
        """
        return _ItemSplit(self, "worker", None, None)

    def to_torch_iterable(self) -> TorchIterable[T]:
        """This stream as a `torch.utils.data.IterableDataset` (see `squirrel.iterstream.torch`)."""
        from squirrel.iterstream.torch import TorchIterable

        return TorchIterable(self)

    def collect(self) -> list[T]:
        """Iterate to the end and return every item in a list."""
        return list(iter(self))  # not list(self): it would ask len() for a size hint, reading a loader's index

    def join(self) -> None:
        """Iterate to the end, discarding items (for streams run for their side effects)."""
        for _ in self:
            pass


class IterableSource(Composable[T]):
    """A stream over an iterable, or a callable returning one (called anew at each iteration)."""


class _Stage(OperatorStage, Composable):
    """An operator over the upstream stage's iterator, with what resume needs to know of it (`Chain._then`)."""

    upstream: Composable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.operator.function(iter(self.upstream), *self.operator.args))

    def resumed(self, skip: int) -> Iterator[Any]:
        if self.operator.keeps_positions:  # item i out is item i in: the upstream skips (a loader without reading)
            return iter(self.operator.function(self.upstream.resumed(skip), *self.operator.args))
        return super().resumed(skip)

    def replay_problems(self) -> list[str]:
        unseeded = self.operator.unseeded
        return ([unseeded] if unseeded else []) + self.upstream.replay_problems()


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

    def known_length(self) -> int:
        split = current_split(self.kind == "rank", self.kind == "worker", self.rank, self.world_size)
        return len(range(split.index, self.source.known_length(), split.readers))


class _Loop(LoopStage, Composable):
    upstream: Composable

    def __iter__(self) -> Iterator[Any]:
        done = 0
        while self.n is None or done < self.n:
            empty = True
            for item in self.upstream:
                empty = False
                yield item
            if empty:  # another pass would yield nothing either: looping on would spin (or flood a store)
                return
            done += 1
