"""How many items each stream operator yields, from its upstream's length: the rules `squirrel.chain.Chain`
gives the stages it builds (`squirrel.stages.OperatorStage`), the same on both faces.

A rule takes the upstream stage and returns a count, or raises `UnknownLength` (`EndlessStream` for a
stream that never ends) as the upstream's `known_length` does. An operator whose count depends on the items
(`filter`, `flatten`) has no rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from squirrel.stages import EndlessStream

if TYPE_CHECKING:
    from squirrel.stages import Stage

__all__ = ["LengthRule", "batches", "same", "taken", "window_count", "windows"]

LengthRule = Callable[["Stage"], int]
"""A stage's length from its upstream stage (see the module docstring)."""


def same(upstream: Stage) -> int:
    """One item out per item in (`map`, `async_map`, `prefetch`, `shuffle`, `zip_index`, `monitor`, `tqdm`)."""
    return upstream.known_length()


def taken(n: int | None) -> LengthRule:
    """``take(n)``: at most `n` (all without one); exactly `n` after an endless stream."""

    def rule(upstream: Stage) -> int:
        if n is None:
            return upstream.known_length()
        try:
            return min(max(n, 0), upstream.known_length())
        except EndlessStream:
            return max(n, 0)

    return rule


def batches(size: int, drop_last: bool) -> LengthRule:
    """``batched(size, drop_last)``: the full batches, and a last shorter one unless dropped."""

    def rule(upstream: Stage) -> int:
        count = upstream.known_length()
        return count // size if drop_last else -(-count // size)

    return rule


def windows(size: int, stride: int, drop_last: bool, min_size: int, fill: bool) -> LengthRule:
    """``sliding(...)``: see `window_count`."""
    return lambda upstream: window_count(upstream.known_length(), size, stride, drop_last, min_size, fill)


def window_count(items: int, size: int, stride: int, drop_last: bool, min_size: int, fill: bool) -> int:
    """How many windows `squirrel.batching.Window` gives for `items` items (see `Chain.sliding`)."""
    if items < size:
        return 0 if drop_last or not items else 1
    full = (items - size) // stride + 1
    rest = items - full * stride  # held after the last full window: the end windows shrink from it
    smallest = 1 if fill else min_size
    if drop_last or rest < smallest:
        return full
    return full + (rest - smallest) // stride + 1
