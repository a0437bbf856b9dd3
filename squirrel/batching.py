"""Grouping items into batches, shared by the sync and async `batched` operators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """Groups items into lists of `size`, optionally passed through `collation_fn`."""

    def __init__(
        self, size: int, drop_last_if_not_full: bool = False, collation_fn: Callable[[list[T]], Any] | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.size = size
        self.drop_last = drop_last_if_not_full
        self.collate = collation_fn
        self.batch: list[T] = []

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
