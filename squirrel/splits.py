"""Who reads what: rank and worker of this process, and how keys are divided among them.

Rank and world size come from `torch.distributed` when it is initialised, else from explicit arguments,
else from the RANK / WORLD_SIZE environment variables, else (0, 1). The worker comes from PyTorch's
`get_worker_info()` inside a `DataLoader` worker, else (0, 1). torch is never imported here: a process
that has not imported it cannot be a DataLoader worker or a DDP rank.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Split",
    "current_split",
    "equal_quota",
    "rank_and_world_size",
    "take_share",
    "worker_and_num_workers",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Split:
    """This reader's place: `rank` of `world_size` processes, `worker` of `num_workers` in that process."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.world_size and 0 <= self.worker < self.num_workers):
            raise ValueError(f"invalid split {self}: need 0 <= rank < world_size and 0 <= worker < num_workers")

    @property
    def readers(self) -> int:
        """How many readers share the data."""
        return self.world_size * self.num_workers

    @property
    def index(self) -> int:
        """This reader's position among all readers (rank-major)."""
        return self.rank * self.num_workers + self.worker


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's DDP rank and world size (see the module docstring for where they come from)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("give both rank and world_size, or neither")
        return rank, world_size
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_and_num_workers() -> tuple[int, int]:
    """This process's DataLoader worker id and worker count; (0, 1) outside a worker."""
    data = sys.modules.get("torch.utils.data")
    info = data.get_worker_info() if data is not None else None
    return (info.id, info.num_workers) if info is not None else (0, 1)


def current_split(by_rank: bool, by_worker: bool, rank: int | None = None, world_size: int | None = None) -> Split:
    """The split of this reader, along the requested dimensions only."""
    r, w = rank_and_world_size(rank, world_size) if by_rank else (0, 1)
    k, n = worker_and_num_workers() if by_worker else (0, 1)
    return Split(r, w, k, n)


def take_share(items: Sequence[T], split: Split) -> list[T]:
    """This reader's share of `items`: every `readers`-th item from its `index`, so shares partition them."""
    return list(items[split.index :: split.readers])


def equal_quota(counts_by_reader: Sequence[int], split: Split, mode: str) -> int:
    """How many samples this reader yields so every rank yields the same number, worker by worker.

    `counts_by_reader[i]` is how many samples reader `i` (rank-major index) has. With "drop" each reader
    yields the least over ranks for its worker slot; with "pad", the most (repeating its own samples).
    Equal counts per worker slot give every rank the same batches, so DDP never waits on a missing one.
    """
    slot = [counts_by_reader[r * split.num_workers + split.worker] for r in range(split.world_size)]
    if mode == "drop":
        return min(slot)
    if mode == "pad":
        return max(slot)
    raise ValueError(f"equalize must be 'drop' or 'pad', got {mode!r}")
