"""Grouping items into batches and sliding windows, shared by the sync and async operators.

Each grouper is pure: `push` an item and get what it releases, `drain` at the end of the source.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Batcher", "Grouper", "Window"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Grouper(Protocol[T_contra]):
    """What the ``grouped_items`` operators of both faces drive: `Batcher`, `Window`, `squirrel.order.ShuffleBuffer`."""

    def push(self, item: T_contra) -> Iterator[Any]:
        """Add `item`; yield what it releases."""
        ...

    def drain(self) -> Iterator[Any]:
        """Yield what is still held at the end of the source."""
        ...


class Batcher(Generic[T]):
    """Groups items into lists of `size`, optionally passed through `collation_fn`."""

    def __init__(
        self, size: int, drop_last_if_not_full: bool = False, collation_fn: Callable[[list[T]], Any] | None = None
    ) -> None:
        self.check(size)
        self.size = size
        self.drop_last = drop_last_if_not_full
        self.collate = collation_fn
        self.batch: list[T] = []

    @staticmethod
    def check(size: int) -> None:
        """`ValueError` unless the batch size is at least 1."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")

    def push(self, item: T) -> Iterator[Any]:
        """Add `item`; yields a batch when one is full."""
        self.batch.append(item)
        if len(self.batch) == self.size:
            batch, self.batch = self.batch, []
            yield self.collate(batch) if self.collate else batch

    def drain(self) -> Iterator[Any]:
        """Yield the last, partial batch unless it is empty or dropped."""
        batch, self.batch = self.batch, []
        if batch and not self.drop_last:
            yield self.collate(batch) if self.collate else batch


class Window(Generic[T]):
    """Sliding windows of `size` items, each `stride` items after the one before (squirrel-core's `sliding`).

    The end of the source: with `drop_last_if_not_full`, nothing more; else the last windows shrink by
    `stride` each while they hold at least `min_window_size` items, or are padded with None to `size`
    (`fill_nan_on_partial`). A source shorter than one window gives that one short window, unless dropped.
    """

    def __init__(self, size: int, *options: Any) -> None:
        """`options`: ``deepcopy, stride, drop_last_if_not_full, min_window_size, fill_nan_on_partial``, as
        `squirrel.chain.Chain.sliding` declares and documents them."""
        deepcopy, stride, drop_last_if_not_full, min_window_size, fill_nan_on_partial = options
        self.check(size, stride, min_window_size)
        self.size = size
        self.deepcopy = deepcopy
        self.stride = stride
        self.drop_last = drop_last_if_not_full
        self.min_size = min_window_size
        self.fill = fill_nan_on_partial
        self.items: list[T] = []
        self.full_seen = False

    @staticmethod
    def check(size: int, stride: int, min_window_size: int) -> None:
        """`ValueError` unless ``size >= 2``, ``1 <= stride <= size`` and ``1 <= min_window_size < size``."""
        if size < 2:
            raise ValueError(f"window_size must be >= 2, got {size}")
        if not 1 <= stride <= size:
            raise ValueError(f"stride must be from 1 to window_size ({size}), got {stride}")
        if not 1 <= min_window_size < size:
            raise ValueError(f"min_window_size must be from 1 to window_size - 1 ({size - 1}), got {min_window_size}")

    def _out(self, items: list[T]) -> list[Any]:
        window: list[Any] = copy.deepcopy(items) if self.deepcopy else list(items)
        if self.fill:
            window += [None] * (self.size - len(window))
        return window

    def push(self, item: T) -> Iterator[list[Any]]:
        """Add `item`; yields a window when one is full."""
        self.items.append(item)
        if len(self.items) == self.size:
            self.full_seen = True
            yield self._out(self.items)
            del self.items[: self.stride]

    def drain(self) -> Iterator[list[Any]]:
        """Yield the end windows (see the class), emptying the buffer."""
        items, self.items = self.items, []
        if self.drop_last or not items:
            return
        if not self.full_seen:
            yield self._out(items)
            return
        while items and (self.fill or len(items) >= self.min_size):
            yield self._out(items)
            items = items[self.stride :]
