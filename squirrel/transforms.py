"""`Transforms`: the stream operators that change the item type (`map`, `async_map`, `batched`, `sliding`,
`flatten`, `zip_index`), declared and documented once for both faces, as `squirrel.chain.Chain` declares
those that keep it.

Each has one implementation and one docstring, and one typed overload per face: Python has no
higher-kinded types to say "the same face, of items `U`", so ``Composable[T].map(f)`` is typed
``Composable[U]`` and ``AsyncComposable[T].map(f)`` ``AsyncComposable[U]`` by overloads told apart by the
face's stream class `S`. On the async face, a coroutine function's awaited result is the new item type.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from squirrel.arguments import bind_extra
from squirrel.batching import Batcher, Window
from squirrel.chain import Chain, S, T, U
from squirrel.lengths import batches, same, windows

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
    from typing import Concatenate, Literal, ParamSpec

    from squirrel.aio.stream import AsyncComposable
    from squirrel.iterstream.base import Composable

    P = ParamSpec("P")

__all__ = ["MapCalls", "Transforms"]


@dataclass(frozen=True, slots=True)
class MapCalls:
    """How `Transforms.async_map` calls its function: at most `max_concurrency` calls in flight, results in
    source order if `ordered`, plain functions on `executor` (None: a thread pool of the operator's own).

    `ValueError` when made with `max_concurrency` below 1: where the user calls ``async_map``.
    """

    max_concurrency: int
    ordered: bool
    executor: Any | None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")


class Transforms(Chain[S, T]):
    """`Chain`'s operators, and those that change the item type: the base of both faces' streams."""

    @overload
    def map(
        self: Transforms[Composable[Any], T], fn: Callable[Concatenate[T, P], U], *args: P.args, **kwargs: P.kwargs
    ) -> Composable[U]: ...
    @overload
    def map(
        self: Transforms[AsyncComposable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncComposable[U]: ...
    @overload
    def map(
        self: Transforms[AsyncComposable[Any], T], fn: Callable[Concatenate[T, P], U], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncComposable[U]: ...
    def map(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Chain[Any, Any]:
        """Apply ``fn(item, *args, **kwargs)`` to each item, one at a time, in order.

        On the sync face `fn` runs in the consumer's thread; on the async face a coroutine function is
        awaited on the loop and a plain one called inline.
        """
        return self._then(self._operators.map_items, bind_extra(fn, args, kwargs), keeps_positions=True, length=same)

    @overload
    def async_map(
        self: Transforms[Composable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Composable[U]: ...
    @overload
    def async_map(
        self: Transforms[Composable[Any], T],
        fn: Callable[Concatenate[T, P], U],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Composable[U]: ...
    @overload
    def async_map(
        self: Transforms[AsyncComposable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncComposable[U]: ...
    @overload
    def async_map(
        self: Transforms[AsyncComposable[Any], T],
        fn: Callable[Concatenate[T, P], U],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncComposable[U]: ...
    def async_map(
        self,
        fn: Callable[..., Any],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Chain[Any, Any]:
        """Apply ``fn(item, *args, **kwargs)`` to many items at once, never more than `max_concurrency` in flight.

        Coroutine functions run on the IO loop; plain functions in a thread pool, or on `executor`
        (``ThreadPoolExecutor``, ``ProcessPoolExecutor``, a ``dask.distributed.Client``). Results come in
        source order unless `ordered` is False (then in completion order). The first error raised by `fn`
        is raised here, and what is in flight is cancelled. Extra arguments for `fn` are best given as
        keywords: positional ones come after the three options.
        """
        mapped = bind_extra(fn, args, kwargs)
        calls = MapCalls(max_concurrency, ordered, executor)
        return self._then(self._operators.async_map_items, mapped, calls, length=same)

    @overload
    def batched(
        self: Transforms[Composable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: None = None,
    ) -> Composable[list[T]]: ...
    @overload
    def batched(
        self: Transforms[Composable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[T]], U] = ...,
    ) -> Composable[U]: ...
    @overload
    def batched(
        self: Transforms[AsyncComposable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: None = None,
    ) -> AsyncComposable[list[T]]: ...
    @overload
    def batched(
        self: Transforms[AsyncComposable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[T]], U] = ...,
    ) -> AsyncComposable[U]: ...
    def batched(
        self,
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[Any]], Any] | None = None,
    ) -> Chain[Any, Any]:
        """Group items into lists of `batchsize`; the last may be shorter, unless `drop_last_if_not_full`
        (default False) drops it. `collation_fn` (default None: the list itself) turns each list into the
        batch, e.g. stacking arrays.

        `ValueError` here if `batchsize` is below 1.
        """
        Batcher.check(batchsize)
        batcher = functools.partial(Batcher, batchsize, drop_last_if_not_full, collation_fn)
        return self._then(self._operators.grouped_items, batcher, length=batches(batchsize, drop_last_if_not_full))

    @overload
    def sliding(
        self: Transforms[Composable[Any], T],
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: Literal[False] = False,
    ) -> Composable[list[T]]: ...
    @overload
    def sliding(
        self: Transforms[Composable[Any], T],
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: bool = False,
    ) -> Composable[list[T | None]]: ...
    @overload
    def sliding(
        self: Transforms[AsyncComposable[Any], T],
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: Literal[False] = False,
    ) -> AsyncComposable[list[T]]: ...
    @overload
    def sliding(
        self: Transforms[AsyncComposable[Any], T],
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: bool = False,
    ) -> AsyncComposable[list[T | None]]: ...
    def sliding(
        self,
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: bool = False,
    ) -> Chain[Any, Any]:
        """Lists of `window_size` consecutive items, each window `stride` items after the last.

        Args:
            window_size: items per window (at least 2).
            deepcopy: give each window deep copies of its items (for stages that mutate them); else the
                windows share the items (each window is a list of its own).
            stride: how far each window moves (1 to `window_size`).
            drop_last_if_not_full: only full windows; when False, the windows at the end shrink by
                `stride` each, down to `min_window_size` items (or are padded with None to `window_size`
                with `fill_nan_on_partial`).
            min_window_size: the shortest end window kept (1 to `window_size - 1`).
            fill_nan_on_partial: pad the end windows with None instead of shrinking them.

        `ValueError` here for sizes out of range. A source shorter than one window gives one short window
        (or none when `drop_last_if_not_full`); an empty source gives none.
        """
        Window.check(window_size, stride, min_window_size)
        options = (deepcopy, stride, drop_last_if_not_full, min_window_size, fill_nan_on_partial)
        length = windows(window_size, stride, drop_last_if_not_full, min_window_size, fill_nan_on_partial)
        window = functools.partial(Window, window_size, *options)
        return self._then(self._operators.grouped_items, window, length=length)

    @overload
    def flatten(self: Transforms[Composable[Any], Iterable[U]]) -> Composable[U]: ...
    @overload
    def flatten(self: Transforms[AsyncComposable[Any], AsyncIterable[U]]) -> AsyncComposable[U]: ...
    @overload
    def flatten(self: Transforms[AsyncComposable[Any], Iterable[U]]) -> AsyncComposable[U]: ...
    def flatten(self) -> Chain[Any, Any]:
        """Yield the elements of each item (on the async face, an item may be an async iterable)."""
        return self._then(self._operators.flatten_items)

    @overload
    def zip_index(self: Transforms[Composable[Any], T], pad_length: None = None) -> Composable[tuple[int, T]]: ...
    @overload
    def zip_index(self: Transforms[Composable[Any], T], pad_length: int) -> Composable[tuple[str, T]]: ...
    @overload
    def zip_index(
        self: Transforms[AsyncComposable[Any], T], pad_length: None = None
    ) -> AsyncComposable[tuple[int, T]]: ...
    @overload
    def zip_index(self: Transforms[AsyncComposable[Any], T], pad_length: int) -> AsyncComposable[tuple[str, T]]: ...
    def zip_index(self, pad_length: int | None = None) -> Chain[Any, Any]:
        """Yield ``(index, item)`` pairs, counting from 0; with `pad_length`, the index is a string padded
        with zeros to at least that many digits (``"007"``), as squirrel-core gives it."""
        return self._then(self._operators.zip_index_items, pad_length, length=same)
