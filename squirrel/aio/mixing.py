"""The async face of mixing: several async streams (or iterables) mixed into one (`AsyncMixedStream`, `mix`).

The choice of the next source, the stop rules, the `Stage` answers and the state are `squirrel.mixing`'s;
only the loop that reads the sources is this module's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squirrel.aio.operators import close, iterate
from squirrel.aio.stream import AsyncComposable
from squirrel.chain import T
from squirrel.mixing import MixedStage

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable

    from squirrel.mix_cursor import MixCursor

__all__ = ["AsyncMixedStream", "mix"]

_END = object()


async def _skipped(iterator: AsyncIterator[Any], skip: int) -> AsyncIterator[Any]:
    """`iterator` without its first `skip` items (read and dropped)."""
    try:
        async for item in iterator:
            if skip:
                skip -= 1
                continue
            yield item
    finally:
        await close(iterator)


def _open(source: Iterable[Any] | AsyncIterable[Any], skip: int) -> AsyncIterator[Any]:
    iterator = iterate(source)
    return _skipped(iterator, skip) if skip else iterator


class AsyncMixedStream(MixedStage[T], AsyncComposable[T]):
    """Several async streams (or iterables) of items of type `T` mixed into one; see `mix`.

    A resumed pass (`load_state_dict`) reads and drops the items already taken from each source: the async
    streams have no hook to pass over them without reading.
    """

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items(self._start())

    async def _items(self, cursor: MixCursor) -> AsyncIterator[Any]:
        opened: dict[int, AsyncIterator[Any]] = {}
        try:
            while (index := cursor.next_source()) is not None:
                iterator = opened.get(index)
                if iterator is None:
                    iterator = opened[index] = _open(self.sources[index], cursor.taken[index])
                item = await anext(iterator, _END)
                if item is _END:
                    await close(opened.pop(index))
                    cursor.ran_out(index)
                    continue
                cursor.took(index)
                yield item
        finally:
            for iterator in opened.values():
                await close(iterator)


mix = AsyncMixedStream
"""``mix(sources, weights=None, seed=None, stop="first", mode="sample")``: the items of async `sources` (or
iterables) mixed into one stream, an `AsyncMixedStream`: the async twin of `squirrel.iterstream.mixing.mix`,
with the same arguments, draw, stop rules, state and errors."""
