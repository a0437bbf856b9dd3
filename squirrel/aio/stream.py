"""`AsyncComposable`: a lazy, re-iterable async stream with chainable, bounded operators.

``await AsyncIterableSource(keys).async_map(fetch, max_concurrency=64).prefetch(8).batched(16).collect()``
Each ``async for`` builds a fresh chain of async generators from the source; leaving it early cancels
what is in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio import operators as ops
from squirrel.chain import T
from squirrel.stages import LoopStage, Operator, OperatorStage, length_of
from squirrel.transforms import Transforms

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
    from types import ModuleType


__all__ = ["AsyncComposable", "AsyncIterableSource"]


class AsyncComposable(Transforms["AsyncComposable[T]", T]):
    """Base of every async stream of items of type `T`. Subclass it and override `__aiter__` to write your own
    stage.

    Its operators (`map`, `async_map`, `batched`, ...) are `squirrel.chain.Chain`'s, the same as the sync
    `Composable`'s. Like it, every stage answers `set_epoch`, `split_kinds` and `loader_metrics` for the
    chain above it by asking its `source`; a loader's stream answers for itself.
    """

    _operators: ClassVar[ModuleType] = ops

    def __init__(
        self,
        source: Iterable[T] | AsyncIterable[T] | Callable[[], Iterable[T] | AsyncIterable[T]] | None = None,
    ) -> None:
        self.source = source

    def upstream_stage(self) -> AsyncComposable[Any] | None:
        """The stage this one reads from, if it is an `AsyncComposable`."""
        return self.source if isinstance(self.source, AsyncComposable) else None

    def __aiter__(self) -> AsyncIterator[T]:
        if self.source is None:
            raise ValueError(f"{type(self).__name__} has no source to iterate")
        return ops.iterate(self.source)

    def known_length(self) -> int:
        """The length of the source this stage iterates as it is (`squirrel.stages.length_of`); `UnknownLength`
        for a subclass with its own `__aiter__` that does not answer here, and for a source of unknown length.

        Reads nothing: a loader's stream upstream answers once its index is read (`load_length` reads it).
        """
        if type(self).__aiter__ is not AsyncComposable.__aiter__:
            return super().known_length()
        return length_of(self.source)

    def _apply(self, operator: Operator) -> AsyncComposable[Any]:
        return _Stage(self, operator)  # the async face has no resume: the operator's resume fields go unused

    def _loop(self, n: int | None) -> AsyncComposable[T]:
        return _Loop(self, n)

    async def collect(self) -> list[T]:
        """Iterate to the end and return every item in a list."""
        async with ops.closing(aiter(self)) as iterator:
            return [item async for item in iterator]

    async def join(self) -> None:
        """Iterate to the end, discarding items (for streams run for their side effects)."""
        async with ops.closing(aiter(self)) as iterator:
            async for _ in iterator:
                pass


class AsyncIterableSource(AsyncComposable[T]):
    """A stream over an iterable, an async iterable, or a callable returning one."""


class _Stage(OperatorStage, AsyncComposable):
    upstream: AsyncComposable

    def __aiter__(self) -> AsyncIterator[Any]:
        return aiter(self.operator.function(aiter(self.upstream), *self.operator.args))


class _Loop(LoopStage, AsyncComposable):
    upstream: AsyncComposable

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
