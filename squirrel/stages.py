"""The one protocol every stream stage follows, on both faces: what a stage answers about the chain above it.

A stage asks its upstream stage (`Stage.upstream_stage`) and adds its own answer where it has one; a stage
that reads a store with a `LoadPlan` (`PlannedStage`: the loaders' and zarr's streams) answers from its plan;
the blocking face of such a stream (`BlockingPlannedStage`) answers from its async twin's.
`to_torch_iterable`, `monitor` and resume learn about the loader at the top of a chain this way, without
looking for attributes.

Length is one of these questions: `Stage.length` (None when unknown), `Stage.known_length` (raising
`UnknownLength` that says why) and ``len(stream)``. A sized source answers its ``len()``, a loader's stream
its store's index, an operator computes its answer from its upstream's; nothing is read to count.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squirrel._runtime import on_io_loop, run_sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from squirrel.lengths import LengthRule
    from squirrel.metrics import LoaderMetrics
    from squirrel.plan import LoadPlan

__all__ = [
    "BlockingPlannedStage",
    "EndlessStream",
    "LoopStage",
    "Operator",
    "OperatorStage",
    "PlannedStage",
    "Stage",
    "UnknownLength",
    "length_of",
]


class UnknownLength(TypeError):
    """A stream's length is not known without reading it; the message says why (a `filter` upstream, a store
    without an index, a source without ``len()``).

    ``len(stream)`` raises it. It is a `TypeError`, as ``len()`` raises for an object that has no length, so
    ``list(stream)``, which asks ``len()`` for a size hint and ignores a `TypeError`, still works.
    """


class EndlessStream(UnknownLength):
    """The stream never ends (``loop()`` without a count, a mix with ``stop="never"``): ``take(n)`` after it
    yields exactly `n` items, so that length is known."""


def length_of(source: object) -> int:
    """How many items a pass over `source` yields: a stage's `Stage.known_length`, or ``len()`` of a sized
    iterable (a list, a range, a numpy array).

    Raises `UnknownLength` for anything else: an iterator or generator, a callable that makes its iterable
    when a pass starts, an object whose ``len()`` raises `TypeError`.
    """
    if isinstance(source, Stage):
        return source.known_length()
    if callable(source) and not isinstance(source, Iterable | AsyncIterable):
        raise UnknownLength(f"the source is a callable ({type(source).__name__}) that makes its items as a pass starts")
    if not isinstance(source, Sized):
        raise UnknownLength(f"the source, a {type(source).__name__}, has no len()")
    try:
        return len(source)
    except TypeError as exc:
        raise UnknownLength(f"the source, a {type(source).__name__}, has no len(): {exc}") from exc


class Stage:
    """Answers by asking the stage upstream; a stage with nothing upstream answers for an empty chain."""

    def __init__(self, source: Any = None) -> None:
        """Read from `source` (a stage, an iterable, a callable giving one, or None for a stage that reads
        its own sources); each face's stream class says which sources it takes."""
        self.source = source

    def upstream_stage(self) -> Stage | None:
        """The stage this one reads from, if it is a stage of the same face."""
        return None

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch` for the order of the next pass, here and in every stage upstream."""
        if (upstream := self.upstream_stage()) is not None:
            upstream.set_epoch(epoch)

    def epoch(self) -> int:
        """The epoch the next pass of the loader upstream orders samples for (0 without one)."""
        upstream = self.upstream_stage()
        return upstream.epoch() if upstream is not None else 0

    def split_kinds(self) -> frozenset[str]:
        """Which splits ("rank", "worker") happen here or upstream."""
        upstream = self.upstream_stage()
        return upstream.split_kinds() if upstream is not None else frozenset()

    def loader_metrics(self) -> list[LoaderMetrics]:
        """The counters of every loader upstream."""
        upstream = self.upstream_stage()
        return upstream.loader_metrics() if upstream is not None else []

    def length(self) -> int | None:
        """How many items a pass of this stream yields, when that is known without reading it; None when it
        is not (`known_length` says why).

        Asking costs at most a read of the stores' indexes upstream; on the async face `length` reads
        nothing, and ``await stream.load_length()`` reads them and answers. A pass that does not ask pays
        nothing.
        """
        try:
            return self.known_length()
        except UnknownLength:
            return None

    def known_length(self) -> int:
        """How many items a pass of this stream yields; `UnknownLength` (a `TypeError`) saying why when that
        is not known without reading the items, `EndlessStream` for a stream that never ends.

        A sized source answers its ``len()``; a loader's stream answers from its store's index (this
        reader's share, the `equalize` quota); an operator computes its answer from its upstream's: the
        same for one item out per item in (`map`, `async_map`, `shuffle`, `zip_index`, `tqdm`...), fewer
        for `take` and `batched`, more for `loop`; unknown after `filter` and `flatten`.

        This base answers for a stage whose behaviour it cannot know (your own stage class): unknown.
        Override it to answer, asking `upstream_stage` for the length above.
        """
        raise UnknownLength(f"{type(self).__name__} does not say how many items it yields (see Stage.known_length)")

    async def load_length(self) -> int | None:
        """Read what `known_length` needs, here and upstream (the stores' indexes), on the running loop, and
        return `length`: the async face's way to ask, as a sync ``len()`` cannot wait for I/O (``len(stream)``
        then answers too, or raises `UnknownLength` saying why)."""
        if (upstream := self.upstream_stage()) is not None:
            await upstream.load_length()
        return self.length()

    def __len__(self) -> int:
        """`known_length`: raises `UnknownLength` (a `TypeError`) saying why when the length is unknown."""
        return self.known_length()

    def __bool__(self) -> bool:
        """Always true, as an iterator is, whatever its length: ``if stream:`` reads no index and works for a
        stream whose length is unknown."""
        return True


@dataclass(frozen=True)
class Operator:
    """What an operator stage applies (`squirrel.chain.Chain._then`): ``function(upstream items, *args)``.

    `keeps_positions`: item ``i`` out is item ``i`` in (a resumed pass skips upstream); `unseeded`: why a
    second pass would not repeat this one's order (an unseeded shuffle), or empty; `length`: the stage's
    length from its upstream's (`squirrel.lengths`; None: it depends on the items).
    """

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    keeps_positions: bool = False
    unseeded: str = ""
    length: LengthRule | None = None


class OperatorStage(Stage):
    """A stage applying an `Operator` to its upstream stage's items, on either face (each face adds how it
    iterates); resume and `known_length` learn what they need from the operator."""

    def __init__(self, upstream: Stage, operator: Operator) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.operator = operator

    def known_length(self) -> int:
        """This stage's length from its upstream's, by its rule; `UnknownLength` when it depends on the items."""
        if self.operator.length is None:
            name = self.operator.function.__name__.removesuffix("_items")
            raise UnknownLength(f"{name}() yields a number of items that depends on the items")
        return self.operator.length(self.upstream)


class LoopStage(Stage):
    """A stage that iterates its upstream stage `n` times over (``loop(n)``; None: for ever), on either face
    (each face adds how it iterates). An empty pass ends the loop: another would be empty too."""

    def __init__(self, upstream: Stage, n: int | None) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.n = n

    def known_length(self) -> int:
        """`n` times the upstream's length; without `n`, `EndlessStream`, unless a pass is empty."""
        once = self.upstream.known_length()
        if self.n is None:
            if once:
                raise EndlessStream("loop() without a count repeats its source forever")
            return 0
        return max(self.n, 0) * once


class PlannedStage(Stage):
    """A stage at the top of a chain that reads with a `LoadPlan`: it answers from its plan and metrics."""

    plan: LoadPlan
    metrics: LoaderMetrics

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch` (with the seed) for the order of the next pass."""
        self.plan.epoch = epoch

    def epoch(self) -> int:
        """The epoch the next pass orders samples for."""
        return self.plan.epoch

    def split_kinds(self) -> frozenset[str]:
        """Which splits this stream applies ("rank", "worker")."""
        return self.plan.split_kinds

    def loader_metrics(self) -> list[LoaderMetrics]:
        """This stream's counters (objects, bytes, fetches in flight, skips)."""
        return [self.metrics]


class BlockingPlannedStage(PlannedStage):
    """The blocking face of an async planned stream (`aio`): the same plan and counters, so an epoch set on
    either face orders the next pass of both."""

    def __init__(self, aio: PlannedStage) -> None:
        super().__init__(None)
        self.aio = aio

    @property
    def plan(self) -> LoadPlan:  # type: ignore[override]  # read-only here: the async stream's plan
        """The async stream's `squirrel.plan.LoadPlan`."""
        return self.aio.plan

    @property
    def metrics(self) -> LoaderMetrics:  # type: ignore[override]  # read-only here: the async stream's
        """The async stream's counters."""
        return self.aio.metrics

    def known_length(self) -> int:
        """The async stream's length (see `Stage.known_length`), what it needs read first on squirrel's IO
        loop. Called on that loop itself, which must not wait on itself, it answers from what was read
        before, or raises `UnknownLength`."""
        if on_io_loop():
            return self.aio.known_length()
        known = run_sync(self.aio.load_length())
        return known if known is not None else self.aio.known_length()  # unknown: raises, saying why
