"""Where a pass of a mix is (`MixCursor`), and that position as plain data (`MixState`) for a resume: the
draws made, the items taken from each source in its current pass and the sources that ran out. Pure: the
choice of the next source is the `squirrel.mixing.Chooser`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from squirrel.mixing import Chooser

__all__ = ["MixCursor", "MixState", "checked_state"]


@final
class MixState(TypedDict):
    """Where a pass of a mix is (`MixedStage.state_dict`): its epoch, the draws made, the items taken from each
    source in its current pass and the sources that ran out."""

    epoch: int
    position: int
    taken: list[int]
    exhausted: list[int]


class MixCursor:
    """Where a pass of a mix is: the draws made, the items taken from each source in its current pass (skipped
    ones included) and the sources that ran out. The faces ask it which source to read next and tell it
    what happened; it decides, by the `stop` rule, whether the mix goes on.
    """

    def __init__(
        self, chooser: Chooser, stop: str, names: Sequence[str], state: Mapping[str, Any] | None = None
    ) -> None:
        self.chooser = chooser
        self.stop = stop
        self.names = names
        state = state or {}
        self.position: int = state.get("position", 0)
        self.taken: list[int] = list(state.get("taken", [0] * len(names)))
        self.exhausted: frozenset[int] = frozenset(state.get("exhausted", ()))
        self.ended = stop == "first" and bool(self.exhausted)

    def next_source(self) -> int | None:
        """The source that gives the next item, or None when the mix is over."""
        return None if self.ended else self.chooser.choose(self.position, self.exhausted)

    def took(self, source: int) -> None:
        """Source `source` gave the item of this draw."""
        self.taken[source] += 1
        self.position += 1

    def ran_out(self, source: int) -> None:
        """Source `source` has nothing left in its pass when drawn: by the `stop` rule, end the mix, draw
        again among the others, or (``"never"``) start its next pass, with nothing taken from it yet.

        Raises `ValueError` when, with ``stop="never"``, a pass of the source yields nothing at all:
        looping it would spin forever (or re-list a store thousands of times a second).
        """
        if self.stop != "never":
            self.exhausted = self.exhausted | {source}
            self.ended = self.stop == "first"
        elif self.taken[source]:
            self.taken[source] = 0
        else:
            raise ValueError(
                f"mix source {source} ({self.names[source]}) yielded nothing in a pass: with stop='never' "
                "it would be looped forever; mix only sources that have items, or use stop='all'"
            )

    def state(self, epoch: int) -> MixState:
        """This position as plain data, for `MixedStage.load_state_dict`."""
        return {
            "epoch": epoch,
            "position": self.position,
            "taken": list(self.taken),
            "exhausted": sorted(self.exhausted),
        }


def checked_state(state: Mapping[str, Any], count: int) -> MixState:
    """`state` (from `MixedStage.state_dict`) for a mix of `count` sources, its values as ints.

    Raises `ValueError` naming the key that is missing or does not fit the mix.
    """
    missing = [key for key in ("epoch", "position", "taken", "exhausted") if key not in state]
    if missing:
        raise ValueError(f"mix state has no {missing[0]!r}: give the dict that state_dict() returned")
    taken = [int(n) for n in state["taken"]]
    exhausted = sorted({int(i) for i in state["exhausted"]})
    if len(taken) != count or any(n < 0 for n in taken):
        raise ValueError(f"mix state 'taken' is {state['taken']!r}: need {count} non-negative counts")
    if any(not 0 <= i < count for i in exhausted):
        raise ValueError(f"mix state 'exhausted' is {state['exhausted']!r}: need source indices below {count}")
    if int(state["position"]) < 0:
        raise ValueError(f"mix state 'position' is {state['position']!r}: need a non-negative count")
    return {"epoch": int(state["epoch"]), "position": int(state["position"]), "taken": taken, "exhausted": exhausted}
