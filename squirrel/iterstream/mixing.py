"""The sync face of mixing: several sync streams mixed into one (`MixedStream`, `mix`).

``for sample in mix([a.get_iter(split_by_rank=True), b.get_iter(split_by_rank=True)], [3, 1], seed=0): ...``
The choice of the next source, the stop rules, the `Stage` answers and the state are `squirrel.mixing`'s
(`Chooser`, `MixCursor`, `MixedStage`); only the loop that reads the sources is this module's own, with
`resumed`, which replays the draws of skipped items without reading them.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from squirrel.chain import T
from squirrel.iterstream.base import Composable
from squirrel.mixing import MixedStage

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from squirrel.mix_cursor import MixCursor

__all__ = ["MixedStream", "mix"]

_END = object()


def _open(source: Iterable[Any], skip: int) -> Iterator[Any]:
    """`source`'s pass without its first `skip` items: a stream skips them its own way (a loader without
    reading whole objects it can pass over), a plain iterable by iterating."""
    if isinstance(source, Composable):
        return source.resumed(skip) if skip else iter(source)
    return itertools.islice(source, skip, None) if skip else iter(source)


def _close(iterators: dict[int, Iterator[Any]]) -> None:
    for iterator in iterators.values():
        if isinstance(iterator, Generator):
            iterator.close()
    iterators.clear()


class MixedStream(MixedStage[T], Composable[T]):
    """Several sync streams (or re-iterable iterables) of items of type `T` mixed into one; see `mix`."""

    def replay_problems(self) -> list[str]:
        """Why a pass could not be replayed exactly: an unseeded draw, or a source's unseeded shuffle."""
        return self._replay_problems()

    def _replay_problems(self) -> list[str]:
        found = super()._replay_problems()
        upstream = [source.replay_problems() for source in self.sources if isinstance(source, Composable)]
        return found + [problem for problems in upstream for problem in problems]

    def __iter__(self) -> Iterator[Any]:
        return self._items(self._start(), {})

    def resumed(self, skip: int) -> Iterator[Any]:
        """A pass without its first `skip` items (for `to_torch_iterable`'s resume).

        The draws of the skipped items are replayed without reading them, and each source is resumed after
        the items it gave (a loader passes over whole objects). When a source turns out to have run out
        among the skipped items, the pass is read again from its start and its first `skip` items dropped.
        Raises `ValueError` when a pass could not be replayed (see `state_dict`).
        """
        return self._resumed(skip)

    def _resumed(self, skip: int) -> Iterator[Any]:
        cursor = self._replayed(skip)
        opened = self._open_taken(cursor)
        if opened is None:
            yield from itertools.islice(self._items(self._cursor(cursor.chooser.seed), {}), skip, None)
        else:
            yield from self._items(cursor, opened)

    def _open_taken(self, cursor: MixCursor) -> dict[int, Iterator[Any]] | None:
        """Each source opened after the items `cursor` took from it; None if one has fewer items than that."""
        opened: dict[int, Iterator[Any]] = {}
        for index, taken in enumerate(cursor.taken):
            if taken:
                opened[index] = _open(self.sources[index], taken - 1)
                if next(opened[index], _END) is _END:  # its last skipped item is not there: it ran out before
                    _close(opened)
                    return None
        return opened

    def _items(self, cursor: MixCursor, opened: dict[int, Iterator[Any]]) -> Iterator[Any]:
        self._live = cursor
        try:
            while (index := cursor.next_source()) is not None:
                iterator = opened.get(index)
                if iterator is None:
                    iterator = opened[index] = _open(self.sources[index], cursor.taken[index])
                item = next(iterator, _END)
                if item is _END:
                    del opened[index]
                    cursor.ran_out(index)
                    continue
                cursor.took(index)
                yield item
        finally:
            _close(opened)


mix = MixedStream
"""``mix(sources, weights=None, seed=None, stop="first", mode="sample")``: the items of `sources` mixed into one
stream, a `MixedStream` (see its ``__init__`` for the arguments)."""
