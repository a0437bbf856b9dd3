"""The one protocol every stream stage follows, on both faces: what a stage answers about the chain above it.

A stage asks its upstream stage (`Stage.upstream_stage`) and adds its own answer where it has one; a stage
that reads a store with a `LoadPlan` (`PlannedStage`: the loaders' and zarr's streams) answers from its plan;
the blocking face of such a stream (`BlockingPlannedStage`) answers from its async twin's.
`to_torch_iterable`, `monitor` and resume learn about the loader at the top of a chain this way, without
looking for attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squirrel.metrics import LoaderMetrics
    from squirrel.plan import LoadPlan

__all__ = ["BlockingPlannedStage", "PlannedStage", "Stage"]


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
