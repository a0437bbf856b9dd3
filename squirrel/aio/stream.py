"""`AsyncComposable`: a lazy, re-iterable async stream with chainable, bounded operators.

``await AsyncIterableSource(keys).async_map(fetch, max_concurrency=64).prefetch(8).batched(16).collect()``
Each ``async for`` builds a fresh chain of async generators from the source; leaving it early cancels
what is in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio import operators as ops
from squirrel.chain import Chain

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
    from types import ModuleType


__all__ = ["AsyncComposable", "AsyncIterableSource"]


class AsyncComposable(Chain["AsyncComposable"]):
    """Base of every async stream. Subclass it and override `__aiter__` to write your own stage.

    Its operators (`map`, `async_map`, `batched`, ...) are `squirrel.chain.Chain`'s, the same as the sync
    `Composable`'s. Like it, every stage answers `set_epoch`, `split_kinds` and `loader_metrics` for the
    chain above it by asking its `source`; a loader's stream answers for itself.
    """

    _operators: ClassVar[ModuleType] = ops

    def __init__(self, source: Iterable[Any] | AsyncIterable[Any] | Callable[[], Any] | None = None) -> None:
        self.source = source

    def upstream_stage(self) -> AsyncComposable | None:
        """The stage this one reads from, if it is an `AsyncComposable`."""
        return self.source if isinstance(self.source, AsyncComposable) else None

    def __aiter__(self) -> AsyncIterator[Any]:
        if self.source is None:
            raise ValueError(f"{type(self).__name__} has no source to iterate")
        return ops.iterate(self.source)

    def _then(self, operator: Callable[..., AsyncIterator[Any]], *args: Any, **_resume: Any) -> AsyncComposable:
        return _Stage(self, operator, args)  # the async face has no resume: `_resume` (see `Chain._then`) unused

    def _loop(self, n: int | None) -> AsyncComposable:
        return _Loop(self, n)

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
