"""Weighted mixing of several streams into one: the pure choice of the next source. No I/O, no asyncio.

``async for s in mix([a.get_iter(split_by_rank=True), b.get_iter(split_by_rank=True)], [3, 1], seed=0): ...``
yields about three items of the first source for one of the second. Which source gives the item at draw
position ``p`` is a pure function of (weights, mode, seed, epoch, ``p``, the sources already exhausted)
(`Chooser`), so a pass replays exactly and resumes mid-epoch from the count taken from each source
(`squirrel.mix_cursor`): nothing is repeated or skipped. `MixedStage` holds what both faces share (settings, the
`Stage` answers, the state); the faces (`squirrel.iterstream.mixing.MixedStream` and
`squirrel.aio.mixing.AsyncMixedStream`) only add the loop that reads the sources, as `squirrel.plan` is
shared by the loaders of both faces.

Each source is split on its own (loader streams created with ``split_by_rank`` / ``split_by_worker``):
the mix never splits again, and it reports a split only when every source does.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any, Generic

import numpy as np

from squirrel.chain import T
from squirrel.mix_cursor import MixCursor, MixState, checked_state
from squirrel.order import make_numpy_rng
from squirrel.stages import EndlessStream, Stage, UnknownLength, length_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable, Mapping, Sequence

    from squirrel.metrics import LoaderMetrics

__all__ = ["BLOCK", "MODES", "STOPS", "Chooser", "MixedStage"]

STOPS = ("first", "all", "never")
"""When a mix ends: when the first source runs out, when all have, or never (exhausted sources loop)."""

MODES = ("sample", "round_robin")
"""How a mix picks the next source: a seeded weighted draw, or each source in turn."""

BLOCK = 4096
"""Draw positions whose sources are computed at once, vectorised (one seeded generator per block)."""


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise `ValueError` naming the choices when `value` is not one of them."""
    if value not in choices:
        raise ValueError(f"mix {name}={value!r}: choose one of {', '.join(map(repr, choices))}")


def checked_weights(count: int, weights: Sequence[float] | None, mode: str) -> tuple[float, ...]:
    """One finite, non-negative weight per source, not all zero (equal weights when None).

    Raises `ValueError` for no source, a weight count that differs from the source count, a negative,
    infinite or NaN weight, weights that are all zero, or weights given with ``mode="round_robin"``
    (which takes each source in turn and would silently ignore them).
    """
    if count < 1:
        raise ValueError("mix needs at least one source")
    if weights is None:
        return (1.0,) * count
    if mode == "round_robin":
        raise ValueError("mix mode='round_robin' takes each source in turn: give no weights")
    values = tuple(float(weight) for weight in weights)
    if len(values) != count:
        raise ValueError(f"mix got {len(values)} weights for {count} sources: give one weight per source")
    for index, weight in enumerate(values):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"mix weight {index} is {weight}: weights must be finite and non-negative")
    if not any(values):
        raise ValueError("mix weights are all zero: no source would ever be drawn")
    return values


class Chooser:
    """Which source gives the item at each draw position: a pure function of the weights, the mode, the seed,
    the epoch, the position and the set of exhausted sources.

    Positions are drawn a `BLOCK` at a time from a generator seeded by (seed, epoch, block), so any position
    can be recomputed without the ones before it. A sample draw maps one uniform number per position onto
    the cumulative weights of the sources still in play (so exhausted sources' weights are renormalised
    away); round robin takes position modulo the number of sources still in play. Sources of weight zero
    are never chosen.
    """

    def __init__(self, weights: Sequence[float], mode: str, seed: int | str, epoch: int) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.mode = mode
        self.seed = seed
        self.epoch = epoch
        self._block = -1
        self._exhausted: frozenset[int] | None = None
        self._choices: list[int] = []

    def choose(self, position: int, exhausted: frozenset[int]) -> int | None:
        """The source of draw `position` when `exhausted` are out; None when no source is left to draw."""
        block, offset = divmod(position, BLOCK)
        if block != self._block or exhausted != self._exhausted:
            self._choices = self.block(block, exhausted)
            self._block, self._exhausted = block, exhausted
        return self._choices[offset] if self._choices else None

    def block(self, block: int, exhausted: frozenset[int]) -> list[int]:
        """The sources of the `BLOCK` draws from position ``block * BLOCK`` when `exhausted` are out."""
        active = np.flatnonzero(self.weights > 0)
        if exhausted:
            active = active[~np.isin(active, sorted(exhausted))]
        if not active.size:
            return []
        if self.mode == "round_robin":
            picks = np.arange(block * BLOCK, (block + 1) * BLOCK) % active.size
        else:
            cumulative = np.cumsum(self.weights[active])
            uniforms = make_numpy_rng(self.seed, self.epoch, "mix", block).random(BLOCK)
            picks = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
            picks = np.minimum(picks, active.size - 1)  # a product rounded up onto the last bound
        chosen: list[int] = active[picks].tolist()
        return chosen

    def counts(self, draws: int) -> list[int]:
        """How many of the first `draws` draws each source gives, when no source runs out among them."""
        totals = np.zeros(len(self.weights), dtype=np.int64)
        for block in range(-(-draws // BLOCK)):
            chosen = self.block(block, frozenset())[: draws - block * BLOCK]
            totals += np.bincount(np.asarray(chosen, dtype=np.int64), minlength=len(self.weights))
        counted: list[int] = totals.tolist()
        return counted


def _length_or_none(source: Any) -> int | None:
    """`source`'s length, None when it never ends; `UnknownLength` when unknown."""
    try:
        return length_of(source)
    except EndlessStream:
        return None


def _first_run_out(chooser: Chooser, lengths: dict[int, int]) -> int:
    """The draw at which a source first turns out to have run out (so the items a ``stop="first"`` pass yields),
    for sources of `lengths` items drawn by `chooser`. Ends within ``sum(lengths) + 1`` draws."""
    left = dict(lengths)
    block = 0
    while True:
        chosen = np.asarray(chooser.block(block, frozenset()))
        ends = []
        for index, remaining in left.items():
            draws = np.flatnonzero(chosen == index)
            if remaining < draws.size:
                ends.append(int(draws[remaining]))
            left[index] = remaining - draws.size
        if ends:
            return block * BLOCK + min(ends)
        block += 1


class MixedStage(Stage, Generic[T]):
    """What both faces of a mix share: its settings, the `Stage` answers, and its state.

    `set_epoch` reaches every source that is a stage and changes the draw; `split_kinds` holds a split only
    when every source applies it (a source read whole by every reader would be repeated); `loader_metrics`
    gathers every source's loaders.
    """

    sources: tuple[Any, ...]

    def __init__(
        self,
        sources: Sequence[Iterable[T] | AsyncIterable[T]],
        weights: Sequence[float] | None = None,
        seed: int | str | None = None,
        stop: str = "first",
        mode: str = "sample",
    ) -> None:
        """The items of `sources` mixed into one stream, drawn by `weights` (equal when None).

        Args:
            sources: streams of this face (a loader's ``get_iter(split_by_rank=True, ...)``, each split on
                its own) or re-iterable iterables; on the async face, async iterables too.
            weights: one non-negative weight per source, not all zero; the share of items each gives.
            seed: fixes the draw, with the epoch (`set_epoch` sets it here and on every source); None draws
                anew each pass, and such a mix cannot be saved or resumed.
            stop: "first" ends when a drawn source has run out; "all" goes on with the others (their weights
                renormalised) until every source of positive weight has run out; "never" starts an exhausted
                source's next pass (a pass that yields nothing raises `ValueError`).
            mode: "sample" draws each item's source by weight; "round_robin" takes the sources in turn (no
                weights).

        `state_dict()` / `load_state_dict()` resume a pass exactly where it was. Raises `ValueError` for bad
        weights, `stop` or `mode`.
        """
        super().__init__(None)  # the face's stream, reading its own sources
        check_choice("stop", stop, STOPS)
        check_choice("mode", mode, MODES)
        self.sources = tuple(sources)
        self.weights = checked_weights(len(self.sources), weights, mode)
        self.seed = seed
        self.stop = stop
        self.mode = mode
        self._epoch = 0
        self._pending: MixState | None = None
        self._live: MixCursor | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch` for the draw of the next pass, and in every source that is a stage."""
        self._epoch = epoch
        for source in self.sources:
            if isinstance(source, Stage):
                source.set_epoch(epoch)

    def epoch(self) -> int:
        """The epoch the next pass draws for."""
        return self._epoch

    def split_kinds(self) -> frozenset[str]:
        """The splits ("rank", "worker") that every source applies."""
        kinds = [source.split_kinds() if isinstance(source, Stage) else frozenset() for source in self.sources]
        return frozenset.intersection(*kinds)

    def loader_metrics(self) -> list[LoaderMetrics]:
        """The counters of every loader upstream of any source."""
        return [metrics for source in self.sources if isinstance(source, Stage) for metrics in source.loader_metrics()]

    def known_length(self) -> int:
        """How many items a pass yields, from its sources' lengths (sources of weight zero are never read).

        ``stop="all"``: their sum. ``stop="first"``: the draws up to the one that finds a source run out,
        computed without reading, as the draw is a pure function of the seed and epoch (`Chooser`): in turn
        for ``mode="round_robin"``, simulated a `BLOCK` of draws at a time for ``mode="sample"``, which needs
        a seed (without one each pass draws anew) and sources that end. ``stop="never"``: `EndlessStream`.
        Raises `UnknownLength` saying why otherwise, e.g. for a pass resumed by `load_state_dict` or a
        source of unknown length.
        """
        if self._pending is not None:
            raise UnknownLength("the mix resumes mid-pass (load_state_dict): how much is left is not counted")
        if self.stop == "never":
            raise EndlessStream("mix(stop='never') starts each source anew when it runs out: it never ends")
        drawn = [index for index, weight in enumerate(self.weights) if weight > 0]
        if self.stop == "all":
            return sum(length_of(self.sources[index]) for index in drawn)
        if self.mode == "round_robin":  # draw p takes drawn[p % n]: source i runs out at its (length + 1)-th draw
            ends = [_length_or_none(self.sources[index]) for index in drawn]
            finite = [length * len(drawn) + turn for turn, length in enumerate(ends) if length is not None]
            if not finite:
                raise EndlessStream("every source of this mix(stop='first') is endless")
            return min(finite)
        if self.seed is None:
            raise UnknownLength("mix(seed=None) draws anew each pass: where its first source runs out is not known")
        lengths = {index: _length_or_none(self.sources[index]) for index in drawn}
        if all(length is None for length in lengths.values()):
            raise EndlessStream("every source of this mix(stop='first') is endless")
        known = {index: length for index, length in lengths.items() if length is not None}
        if len(known) < len(lengths):  # the draw may take very long to reach the end of a finite source
            raise UnknownLength("a mix(stop='first', mode='sample') of endless and finite sources is not counted")
        return _first_run_out(Chooser(self.weights, self.mode, self.seed, self._epoch), known)

    async def load_length(self) -> int | None:
        """Read what `known_length` needs of every source that is a stage (their stores' indexes), and
        return `length`."""
        for source in self.sources:
            if isinstance(source, Stage):
                await source.load_length()
        return self.length()

    def state_dict(self) -> MixState:
        """Where the latest pass is: its epoch, the draws made, the items taken from each source in its
        current pass and the sources that ran out (the state a `load_state_dict` set, before a pass).

        Raises `ValueError` when a pass could not be replayed (a draw without a seed, a source that
        shuffles without one).
        """
        self._require_replayable()
        if self._live is not None:
            return self._live.state(self._epoch)
        return self._pending.copy() if self._pending is not None else self._cursor(0).state(self._epoch)

    def load_state_dict(self, state: MixState) -> None:
        """Make the next pass continue where the pass `state` was taken from ended: its epoch, each source
        resumed after the items taken from it, exhausted sources left out. Raises `ValueError` for a state
        that does not fit this mix, or when a pass could not be replayed (see `state_dict`)."""
        self._require_replayable()
        checked = checked_state(state, len(self.sources))
        self.set_epoch(checked["epoch"])
        self._pending = checked

    def _replay_problems(self) -> list[str]:
        """Why a pass could not be replayed exactly: an unseeded draw here (faces add their sources')."""
        return ["mix(seed=None) with mode='sample'"] if self.seed is None and self.mode == "sample" else []

    def _require_replayable(self) -> None:
        if found := self._replay_problems():
            raise ValueError(
                f"cannot save or resume this mix: {'; '.join(found)} draws a new order each pass; give a seed"
            )

    def _cursor(self, seed: int | str, state: Mapping[str, Any] | None = None) -> MixCursor:
        chooser = Chooser(self.weights, self.mode, seed, self._epoch)
        names = [type(source).__name__ for source in self.sources]
        return MixCursor(chooser, self.stop, names, state)

    def _pass_seed(self) -> int | str:
        return self.seed if self.seed is not None else secrets.randbits(64)

    def _start(self) -> MixCursor:
        """The cursor of a new pass: where `load_state_dict` said (once), else at its start."""
        state, self._pending = self._pending, None
        self._live = self._cursor(self._pass_seed(), state)
        return self._live

    def _replayed(self, skip: int) -> MixCursor:
        """The cursor after the first `skip` draws of a pass in which no source ran out among them."""
        self._require_replayable()
        chooser = Chooser(self.weights, self.mode, self._pass_seed(), self._epoch)
        state = {"position": skip, "taken": chooser.counts(skip)}
        self._live = self._cursor(chooser.seed, state)
        return self._live
