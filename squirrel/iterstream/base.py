"""`Composable`: a lazy, re-iterable stream with chainable, bounded operators, run in the caller's thread.

``for batch in IterableSource(keys).async_map(fetch, max_concurrency=64).batched(16): ...``
Each ``for`` builds a fresh chain of generators from the source, so a pipeline whose source can be
iterated again gives the same result twice (with seeded shuffles).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.chain import Chain
from squirrel.iterstream import operators as ops
from squirrel.splits import current_split

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["Composable", "IterableSource"]


class Composable(Chain["Composable"]):
    """Base of every sync stream. Subclass it and override `__iter__` to write your own stage.

    Every stage answers the same questions about the chain above it, by asking its `source` (a stage
    adds its own answer where it has one): `set_epoch`, `epoch`, `split_kinds`, `loader_metrics`,
    `replay_problems` and `resumed`. That is how `to_torch_iterable` and `monitor` learn about the
    loader at the top, without looking for attributes.
    """

    _operators: ClassVar[ModuleType] = ops

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

    def _then(
        self, operator: Callable[..., Iterator[Any]], *args: Any, keeps_positions: bool = False, unseeded: str = ""
    ) -> Composable:
        return _Stage(self, operator, args, keeps_positions, unseeded)

    def _loop(self, n: int | None) -> Composable:
        return _Loop(self, n)

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
    """An operator over the upstream stage's iterator, with what resume needs to know of it (`Chain._then`)."""

    def __init__(
        self,
        source: Composable,
        operator: Callable[..., Iterator[Any]],
        args: tuple[Any, ...],
        keeps_positions: bool,
        unseeded: str,
    ) -> None:
        super().__init__(source)
        self.upstream = source
        self.operator = operator
        self.args = args
        self.keeps_positions = keeps_positions
        self.unseeded = unseeded

    def __iter__(self) -> Iterator[Any]:
        return self.operator(iter(self.upstream), *self.args)

    def resumed(self, skip: int) -> Iterator[Any]:
        if self.keeps_positions:  # item i out is item i in: the upstream skips (a loader without reading)
            return self.operator(self.upstream.resumed(skip), *self.args)
        return super().resumed(skip)

    def replay_problems(self) -> list[str]:
        return ([self.unseeded] if self.unseeded else []) + self.upstream.replay_problems()


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
