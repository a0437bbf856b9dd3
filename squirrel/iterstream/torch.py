"""PyTorch integration: a stream as an `IterableDataset` that is safe under workers and DDP ranks.

torch is an optional extra: this module imports it, nothing else in squirrel does.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from typing import Any

import torch.utils.data

from squirrel.iterstream.base import Composable
from squirrel.splits import rank_and_world_size, worker_and_num_workers


def stages(stream: Composable) -> Iterator[Any]:
    """`stream` and every stream upstream of it (following `.source`)."""
    stage: Any = stream
    while isinstance(stage, Composable):
        yield stage
        stage = stage.source


def split_kinds(stream: Composable) -> frozenset[str]:
    """Which splits ("rank", "worker") happen anywhere upstream of `stream`."""
    kinds: frozenset[str] = frozenset()
    for stage in stages(stream):
        kinds |= getattr(stage, "split_kinds", frozenset())
    return kinds


class TorchIterable(torch.utils.data.IterableDataset):
    """An `IterableDataset` over a squirrel stream, for `DataLoader` workers and DDP ranks.

    - Refuses to run with several workers or ranks when nothing upstream splits the data (every reader
      would see every sample).
    - `set_epoch(n)` reaches the loader in every worker, persistent workers included.
    - `state_dict()` / `load_state_dict()` resume mid-epoch with no sample repeated or skipped, for the
      same seed, epoch, world size and worker count.
    """

    def __init__(self, stream: Composable) -> None:
        super().__init__()
        self.stream = stream
        self._epoch = multiprocessing.get_context().Value("q", _epoch_of(stream), lock=False)
        self._skip: dict[int, int] = {}
        self._consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch `epoch` next (a new order for a seeded loader); seen by workers too."""
        self._epoch.value = epoch

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = worker_and_num_workers()
        _, world_size = rank_and_world_size()
        kinds = split_kinds(self.stream)
        if num_workers > 1 and "worker" not in kinds:
            raise RuntimeError(
                f"{num_workers} DataLoader workers would each read every sample: split upstream with "
                "get_iter(split_by_worker=True) or .split_by_worker_pytorch()"
            )
        if world_size > 1 and "rank" not in kinds:
            raise RuntimeError(
                f"{world_size} ranks would each read every sample: split upstream with "
                "get_iter(split_by_rank=True) or .split_by_rank_pytorch()"
            )
        for stage in stages(self.stream):
            if hasattr(stage, "set_epoch"):
                stage.set_epoch(self._epoch.value)
        skip = self._skip.get(worker, 0)
        self._consumed = skip
        for item in itertools.islice(self.stream, skip, None):
            self._consumed += 1
            yield item

    def state_dict(self, batches_consumed: int | None = None, batch_size: int = 1, num_workers: int = 0) -> dict:
        """Where the training loop is, to resume later with `load_state_dict`.

        Give how many batches the loop consumed (and the DataLoader's `batch_size` and `num_workers`): a
        DataLoader takes batches from its workers in turn, so worker `w` delivered batches
        ``w, w + n, w + 2n, ...``; this holds until a worker runs out, near an epoch's end. Without
        `batches_consumed` and without workers, the count of items this dataset yielded is used, which
        overcounts a batch that failed halfway.
        """
        epoch = self._epoch.value
        if batches_consumed is None:
            if num_workers:
                raise ValueError("with DataLoader workers, give batches_consumed (and batch_size)")
            return {"epoch": epoch, "consumed": {0: self._consumed}}
        readers = max(num_workers, 1)
        per_worker = {
            w: len(range(w, batches_consumed, readers)) * batch_size + self._skip.get(w, 0) for w in range(readers)
        }
        return {"epoch": epoch, "consumed": per_worker}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`: same epoch, and each worker skips what was already consumed."""
        self.set_epoch(int(state["epoch"]))
        self._skip = {int(w): int(n) for w, n in state["consumed"].items()}


def _epoch_of(stream: Composable) -> int:
    for stage in stages(stream):
        plan = getattr(stage, "plan", None)
        if plan is not None:
            return plan.epoch
    return 0
