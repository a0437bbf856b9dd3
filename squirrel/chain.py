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
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from squirrel.batching import Batcher, Window
from squirrel.order import ShuffleBuffer
from squirrel.stages import Stage

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

__all__ = ["DEFAULT_SHUFFLE_SIZE", "Chain"]

S = TypeVar("S")
C = TypeVar("C")

DEFAULT_SHUFFLE_SIZE = 1000
"""The shuffle buffer of ``shuffle()`` without a size (squirrel-core's default)."""


def _bound(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
    """`fn` with `args` and `kwargs` after the item (itself when there are none)."""
    if not args and not kwargs:
        return fn
    return functools.partial(_call_with, fn, args, kwargs)


def _call_with(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], item: Any) -> Any:
    return fn(item, *args, **kwargs)


class Chain(Stage, Generic[S]):
    """The chainable operators of a stream whose stages are of type `S` (the face's stream class).

    Every operator returns a new stage reading from this one; nothing runs until the stream is iterated.
    """

    _operators: ClassVar[ModuleType]

    def _then(self, operator: Callable[..., Any], *args: Any, keeps_positions: bool = False, unseeded: str = "") -> S:
        """A stage applying ``operator(iterator, *args)`` to this stream's items. `keeps_positions`: item ``i``
        out is item ``i`` in (a resumed pass skips upstream); `unseeded`: why a second pass would not repeat
        this one's order (an unseeded shuffle), or empty."""
        raise NotImplementedError

    def _loop(self, n: int | None) -> S:
        """A stage iterating this stream `n` times over (see `loop`)."""
        raise NotImplementedError

    def map(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> S:
        """Apply ``fn(item, *args, **kwargs)`` to each item, one at a time, in order.

        On the sync face `fn` runs in the consumer's thread; on the async face a coroutine function is
        awaited on the loop and a plain one called inline.
        """
        return self._then(self._operators.map_items, _bound(fn, args, kwargs), keeps_positions=True)

    def filter(self, predicate: Callable[[Any], Any]) -> S:
        """Keep the items for which `predicate` (plain, or a coroutine function on the async face) is true."""
        return self._then(self._operators.filter_items, predicate)

    def async_map(
        self,
        fn: Callable[..., Any],
        max_concurrency: int = 16,
        ordered: bool = True,
        executor: Any | None = None,
        **kwargs: Any,
    ) -> S:
        """Apply ``fn(item, **kwargs)`` to many items at once, never more than `max_concurrency` in flight.

        Coroutine functions run on the IO loop; plain functions in a thread pool, or on `executor`
        (``ThreadPoolExecutor``, ``ProcessPoolExecutor``, a ``dask.distributed.Client``). Results come in
        source order unless `ordered` is False (then in completion order). The first error raised by `fn`
        is raised here, and what is in flight is cancelled. Extra arguments for `fn` are keywords only
        (its positional places are taken by the options).
        """
        return self._then(self._operators.async_map_items, _bound(fn, (), kwargs), max_concurrency, ordered, executor)

    def prefetch(self, size: int) -> S:
        """Compute up to `size` items ahead of the consumer (a background thread on the sync face, a task on
        the async face)."""
        return self._then(self._operators.prefetch_items, size)

    def batched(
        self,
        batchsize: int,
        drop_last_if_not_full: bool = False,
        collation_fn: Callable[[list[Any]], Any] | None = None,
    ) -> S:
        """Group items into lists of `batchsize` (the last may be shorter unless dropped), then collate.

        `ValueError` here if `batchsize` is below 1.
        """
        Batcher.check(batchsize)
        batcher = functools.partial(Batcher, batchsize, drop_last_if_not_full, collation_fn)
        return self._then(self._operators.grouped_items, batcher)

    def sliding(
        self,
        window_size: int,
        *,
        deepcopy: bool = False,
        stride: int = 1,
        drop_last_if_not_full: bool = True,
        min_window_size: int = 1,
        fill_nan_on_partial: bool = False,
    ) -> S:
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
        return self._then(self._operators.grouped_items, functools.partial(Window, window_size, *options))

    def shuffle(self, size: int = DEFAULT_SHUFFLE_SIZE, seed: int | str | None = None) -> S:
        """Shuffle within a buffer of `size` items (1,000 by default; 0 or 1: no shuffle); the same `seed`
        gives the same order, None a new one each pass. `ValueError` for a negative size."""
        if size < 0:
            raise ValueError(f"shuffle buffer size must be >= 0, got {size}")
        unseeded = f".shuffle({size}) without seed=" if size > 1 and seed is None else ""
        buffer = functools.partial(ShuffleBuffer.seeded, max(size, 1), seed)
        return self._then(self._operators.grouped_items, buffer, unseeded=unseeded)

    def take(self, n: int | None) -> S:
        """Only the first `n` items (all of them when `n` is None)."""
        return self._then(self._operators.take_items, n)

    def loop(self, n: int | None = None) -> S:
        """Iterate the stream `n` times over (forever when None); the source must be re-iterable.

        A pass that yields nothing ends the loop: looping an empty source (or a rank's empty share of a
        store) would otherwise spin, re-listing the store thousands of times a second.
        """
        return self._loop(n)

    def flatten(self) -> S:
        """Yield the elements of each item (on the async face, an item may be an async iterable)."""
        return self._then(self._operators.flatten_items)

    def zip_index(self, pad_length: int | None = None) -> S:
        """Yield ``(index, item)`` pairs, counting from 0; with `pad_length`, the index is a string padded
        with zeros to at least that many digits (``"007"``), as squirrel-core gives it."""
        return self._then(self._operators.zip_index_items, pad_length)

    def monitor(self, callback: Callable[[dict[str, Any]], Any], every: float = 10.0) -> S:
        """Call `callback` every `every` seconds and at the end with items, items/s and, from upstream
        loaders, bytes and bytes/s fetched, fetches in flight and objects skipped.
        `squirrel.metrics.log_metrics` is a ready callback that logs them.
        """
        return self._then(self._operators.monitor_items, callback, every, self.loader_metrics())

    def tqdm(self, **tqdm_kwargs: Any) -> S:
        """Show a tqdm progress bar while iterating (`tqdm_kwargs` go to ``tqdm.auto.tqdm``)."""
        return self._then(self._operators.tqdm_items, tqdm_kwargs)

    def compose(self, constructor: Callable[..., C], *args: Any, **kwargs: Any) -> C:
        """Append a stage of your own: ``constructor(*args, **kwargs)`` with this stream as its `source`."""
        stage = constructor(*args, **kwargs)
        stage.source = self  # type: ignore[attr-defined]  # every stage of either face has a source
        return stage
