"""`Chain`: the operators of a stream, declared and documented once for both faces.

`squirrel.iterstream.Composable` (sync) and `squirrel.aio.AsyncComposable` (async) inherit every chainable
operator from here, so the two faces have the same names, parameters, defaults and docstrings by
construction. A face supplies what differs: its operator functions (`_operators`, the module
`squirrel.iterstream.operators` or `squirrel.aio.operators`, whose functions have the same names) and the
stage classes: `_then` (an operator over the stream's iterator) and `_loop` (a stage that iterates its
source again).

The conveniences squirrel-core users know behave as in squirrel-core 0.20: ``take(None)``, ``shuffle()``
with a buffer of 1,000, extra arguments of ``map`` and ``async_map`` passed to the function,
``zip_index(pad_length=...)``, ``sliding(...)`` and ``loop(n)``.

Both faces are generic in their item type (``Composable[T]``, ``AsyncComposable[T]``; `T` is covariant, as a
stream is only read), and `Chain` in the face's stream class `S` (``Composable[T]``) too: the operators that
keep the item type return `S`. Python has no higher-kinded types to say "the same face, of items `U`", so the
operators that change the item type (`map`, `async_map`, `batched`, `sliding`, `flatten`, `zip_index`) have
one overload per face, told apart by `S`; their one implementation and docstring are here.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Generic, overload

from typing_extensions import TypeVar  # `default=`: typing has it from Python 3.13 only

from squirrel.arguments import bind_extra
from squirrel.batching import Batcher, Window
from squirrel.lengths import batches, same, taken, windows
from squirrel.order import ShuffleBuffer
from squirrel.stages import Operator, Stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
    from types import ModuleType
    from typing import Concatenate, Literal, ParamSpec

    from squirrel.aio.stream import AsyncComposable
    from squirrel.iterstream.base import Composable
    from squirrel.lengths import LengthRule

    P = ParamSpec("P")

__all__ = ["DEFAULT_SHUFFLE_SIZE", "Chain"]

T = TypeVar("T", covariant=True, default=Any)
"""The item type of a stream; a bare ``Composable`` (or ``AsyncComposable``) has items of any type."""
S = TypeVar("S", bound="Chain[Any, Any]", covariant=True)
U = TypeVar("U")
C = TypeVar("C")

DEFAULT_SHUFFLE_SIZE = 1000
"""The shuffle buffer of ``shuffle()`` without a size (squirrel-core's default)."""


class Chain(Stage, Generic[S, T]):
    """The chainable operators of a stream of items of type `T` whose stages are of type `S` (the face's
    stream class of `T`, e.g. ``Composable[T]``).

    Every operator returns a new stage reading from this one; nothing runs until the stream is iterated.
    """

    _operators: ClassVar[ModuleType]

    def _then(
        self,
        function: Callable[..., Any],
        *args: Any,
        keeps_positions: bool = False,
        unseeded: str = "",
        length: LengthRule | None = None,
    ) -> S:
        """A stage applying ``function(iterator, *args)`` to this stream's items: see `Operator`."""
        return self._apply(Operator(function, args, keeps_positions, unseeded, length))

    def _apply(self, operator: Operator) -> S:
        """The face's `OperatorStage` applying `operator` to this stream's items."""
        raise NotImplementedError

    def _loop(self, n: int | None) -> S:
        """A stage iterating this stream `n` times over (see `loop`)."""
        raise NotImplementedError

    @overload
    def map(
        self: Chain[Composable[Any], T], fn: Callable[Concatenate[T, P], U], *args: P.args, **kwargs: P.kwargs
    ) -> Composable[U]: ...
    @overload
    def map(
        self: Chain[AsyncComposable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncComposable[U]: ...
    @overload
    def map(
        self: Chain[AsyncComposable[Any], T], fn: Callable[Concatenate[T, P], U], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncComposable[U]: ...
    def map(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Chain[Any, Any]:
        """Apply ``fn(item, *args, **kwargs)`` to each item, one at a time, in order.

        On the sync face `fn` runs in the consumer's thread; on the async face a coroutine function is
        awaited on the loop and a plain one called inline.
        """
        return self._then(self._operators.map_items, bind_extra(fn, args, kwargs), keeps_positions=True, length=same)

    def filter(self, predicate: Callable[[T], object]) -> S:
        """Keep the items for which `predicate` (plain, or a coroutine function on the async face) is true."""
        return self._then(self._operators.filter_items, predicate)

    @overload
    def async_map(
        self: Chain[Composable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Composable[U]: ...
    @overload
    def async_map(
        self: Chain[Composable[Any], T],
        fn: Callable[Concatenate[T, P], U],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Composable[U]: ...
    @overload
    def async_map(
        self: Chain[AsyncComposable[Any], T],
        fn: Callable[Concatenate[T, P], Coroutine[Any, Any, U]],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncComposable[U]: ...
    @overload
    def async_map(
        self: Chain[AsyncComposable[Any], T],
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
        return self._then(self._operators.async_map_items, mapped, max_concurrency, ordered, executor, length=same)

    def prefetch(self, size: int) -> S:
        """Compute up to `size` items ahead of the consumer (a background thread on the sync face, a task on
        the async face)."""
        return self._then(self._operators.prefetch_items, size, length=same)

    @overload
    def batched(
        self: Chain[Composable[Any], T], batchsize: int, drop_last_if_not_full: bool = False, collation_fn: None = None
    ) -> Composable[list[T]]: ...
    @overload
    def batched(
        self: Chain[Composable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool,
        collation_fn: Callable[[list[T]], U],
    ) -> Composable[U]: ...
    @overload
    def batched(
        self: Chain[Composable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        *,
        collation_fn: Callable[[list[T]], U],
    ) -> Composable[U]: ...
    @overload
    def batched(
        self: Chain[AsyncComposable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: None = None,
    ) -> AsyncComposable[list[T]]: ...
    @overload
    def batched(
        self: Chain[AsyncComposable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool,
        collation_fn: Callable[[list[T]], U],
    ) -> AsyncComposable[U]: ...
    @overload
    def batched(
        self: Chain[AsyncComposable[Any], T],
        batchsize: int,
        drop_last_if_not_full: bool = False,
        *,
        collation_fn: Callable[[list[T]], U],
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
        self: Chain[Composable[Any], T],
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
        self: Chain[Composable[Any], T],
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
        self: Chain[AsyncComposable[Any], T],
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
        self: Chain[AsyncComposable[Any], T],
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

    def shuffle(self, size: int = DEFAULT_SHUFFLE_SIZE, seed: int | str | None = None) -> S:
        """Shuffle within a buffer of `size` items (1,000 by default; 0 or 1: no shuffle); the same `seed`
        gives the same order, None a new one each pass. `ValueError` for a negative size."""
        if size < 0:
            raise ValueError(f"shuffle buffer size must be >= 0, got {size}")
        unseeded = f".shuffle({size}) without seed=" if size > 1 and seed is None else ""
        buffer = functools.partial(ShuffleBuffer.seeded, max(size, 1), seed)
        return self._then(self._operators.grouped_items, buffer, unseeded=unseeded, length=same)

    def take(self, n: int | None) -> S:
        """Only the first `n` items (all of them when `n` is None)."""
        return self._then(self._operators.take_items, n, length=taken(n))

    def loop(self, n: int | None = None) -> S:
        """Iterate the stream `n` times over (forever when None); the source must be re-iterable.

        A pass that yields nothing ends the loop: looping an empty source (or a rank's empty share of a
        store) would otherwise spin, re-listing the store thousands of times a second.
        """
        return self._loop(n)

    @overload
    def flatten(self: Chain[Composable[Any], Iterable[U]]) -> Composable[U]: ...
    @overload
    def flatten(self: Chain[AsyncComposable[Any], AsyncIterable[U]]) -> AsyncComposable[U]: ...
    @overload
    def flatten(self: Chain[AsyncComposable[Any], Iterable[U]]) -> AsyncComposable[U]: ...
    def flatten(self) -> Chain[Any, Any]:
        """Yield the elements of each item (on the async face, an item may be an async iterable)."""
        return self._then(self._operators.flatten_items)

    @overload
    def zip_index(self: Chain[Composable[Any], T], pad_length: None = None) -> Composable[tuple[int, T]]: ...
    @overload
    def zip_index(self: Chain[Composable[Any], T], pad_length: int) -> Composable[tuple[str, T]]: ...
    @overload
    def zip_index(self: Chain[AsyncComposable[Any], T], pad_length: None = None) -> AsyncComposable[tuple[int, T]]: ...
    @overload
    def zip_index(self: Chain[AsyncComposable[Any], T], pad_length: int) -> AsyncComposable[tuple[str, T]]: ...
    def zip_index(self, pad_length: int | None = None) -> Chain[Any, Any]:
        """Yield ``(index, item)`` pairs, counting from 0; with `pad_length`, the index is a string padded
        with zeros to at least that many digits (``"007"``), as squirrel-core gives it."""
        return self._then(self._operators.zip_index_items, pad_length, length=same)

    def monitor(self, callback: Callable[[dict[str, Any]], Any], every: float = 10.0) -> S:
        """Call `callback` every `every` seconds and at the end with items, items/s and, from upstream
        loaders, bytes and bytes/s fetched, fetches in flight and objects skipped.
        `squirrel.metrics.log_metrics` is a ready callback that logs them.
        """
        return self._then(self._operators.monitor_items, callback, every, self.loader_metrics(), length=same)

    def tqdm(self, **tqdm_kwargs: Any) -> S:
        """Show a tqdm progress bar while iterating (`tqdm_kwargs` go to ``tqdm.auto.tqdm``).

        The bar's total, and so its ETA, is the stream's length when it is known as a pass starts (see
        `length`: a sized source, a loader's store index; on the async face the index is read on the loop);
        a ``total=`` given here wins.
        """
        return self._then(self._operators.tqdm_items, tqdm_kwargs, self, length=same)

    def compose(self, constructor: Callable[..., C], *args: Any, **kwargs: Any) -> C:
        """Append a stage of your own: ``constructor(*args, **kwargs)`` with this stream as its `source`."""
        stage = constructor(*args, **kwargs)
        stage.source = self  # type: ignore[attr-defined]  # every stage of either face has a source
        return stage
