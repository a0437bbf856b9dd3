"""`Chain`: the operators of a stream, declared and documented once for both faces.

`squirrel.iterstream.Composable` (sync) and `squirrel.aio.AsyncComposable` (async) inherit every chainable
operator from here (through `squirrel.transforms.Transforms`), so the two faces have the same names,
parameters, defaults and docstrings by construction. A face supplies what differs: its operator functions
(`_operators`, the module `squirrel.iterstream.operators` or `squirrel.aio.operators`, whose functions have
the same names) and the stage classes: `_apply` (an `Operator` over the stream's iterator) and `_loop` (a stage
that iterates its source again).

The conveniences squirrel-core users know behave as in squirrel-core 0.20: ``take(None)``, ``shuffle()`` with
a buffer of 1,000, extra arguments of ``map`` and ``async_map`` passed to the function,
``zip_index(pad_length=...)``, ``sliding(...)`` and ``loop(n)``.

Both faces are generic in their item type (``Composable[T]``, ``AsyncComposable[T]``; `T` is covariant, as a
stream is only read), and `Chain` in the face's stream class `S` (``Composable[T]``) too: the operators here
keep the item type and return `S`. Those that change it (`map`, `async_map`, `batched`, `sliding`, `flatten`,
`zip_index`) are `squirrel.transforms.Transforms`'s, typed per face.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from typing_extensions import TypeVar  # `default=`: typing has it from Python 3.13 only

from squirrel.lengths import same, taken
from squirrel.order import ShuffleBuffer
from squirrel.stages import Operator, Stage

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import ParamSpec

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

    def filter(self, predicate: Callable[[T], object]) -> S:
        """Keep the items for which `predicate` (plain, or a coroutine function on the async face) is true."""
        return self._then(self._operators.filter_items, predicate)

    def prefetch(self, size: int) -> S:
        """Compute up to `size` items ahead of the consumer (a background thread on the sync face, a task on
        the async face)."""
        return self._then(self._operators.prefetch_items, size, length=same)

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
