"""PyTorch integration: a stream as an `IterableDataset` that is safe under workers and DDP ranks, and
resumes mid-epoch with torchdata's `StatefulDataLoader` or from batch counts.

torch is an optional extra: this module imports it, nothing else in squirrel does.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, final, overload

import torch.utils.data

from squirrel.chain import T
from squirrel.splits import rank_and_world_size, worker_and_num_workers

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.iterstream.base import Composable

__all__ = ["MAX_WORKERS", "LoopState", "ReaderState", "TorchIterable", "batches_taken"]


@final  # no other keys: `load_state_dict` tells the two states apart by their keys
class ReaderState(TypedDict):
    """One reader's position (`TorchIterable.state_dict` called bare, as torchdata's ``StatefulDataLoader`` does
    in each worker): the items of epoch `epoch` that worker `worker` of `workers` yielded so far."""

    epoch: int
    worker: int
    workers: int
    items: int


@final
class LoopState(TypedDict):
    """Every worker's position, worked out in the main process from the batches a plain ``DataLoader`` loop
    consumed (`TorchIterable.state_dict` with `batches_consumed`): the items of epoch `epoch` each worker
    yielded (keys may be strings once the state went through JSON)."""

    epoch: int
    consumed: dict[int, int]


def _require_replayable(stream: Composable[Any]) -> None:
    if found := stream.replay_problems():
        raise ValueError(
            f"cannot resume this stream: {'; '.join(found)} draws a new order each pass, so a resumed pass "
            "would repeat some samples and skip others; give a seed"
        )


@dataclass(frozen=True)
class _Position:
    """Where one reader (a DataLoader worker, or the main process without workers) is in an epoch."""

    epoch: int
    worker: int
    workers: int
    items: int  # of the epoch's pass, skipped ones included

    def as_state(self) -> ReaderState:
        return {"epoch": self.epoch, "worker": self.worker, "workers": self.workers, "items": self.items}


MAX_WORKERS = 1024
"""Most DataLoader workers a `TorchIterable` tracks (one shared 8-byte slot each)."""


class TorchIterable(torch.utils.data.IterableDataset[T]):
    """An `IterableDataset` over a squirrel stream of items of type `T`, for `DataLoader` workers and DDP ranks.

    - Refuses to run with several workers or ranks when nothing upstream splits the data (every reader
      would see every sample).
    - `set_epoch(n)` reaches the loader in every worker, persistent workers included.
    - Resume mid-epoch with no sample repeated or skipped, for the same seed, world size and worker count,
      up to the last batch of the epoch, in either of two ways:

      * torchdata's ``StatefulDataLoader`` (``loader.state_dict()`` / ``loader.load_state_dict()``) asks
        the dataset in each worker (or in the main process without workers) for its own position with a
        bare ``state_dict()``, and gives each worker its position back with ``load_state_dict``; no batch
        counts are needed.
      * With a plain `DataLoader`, ``state_dict(batches_consumed, batch_size, num_workers)`` in the main
        process works out every worker's position from the batches the loop consumed.
    """

    def __init__(self, stream: Composable[T]) -> None:
        super().__init__()
        self.stream = stream
        context = multiprocessing.get_context()
        self._epoch = context.Value("q", stream.epoch(), lock=False)
        # Where each worker's iteration ended (items, skipped ones included), -1 while it runs: shared
        # memory, so the main process knows which workers ran out and the DataLoader skipped.
        self._ends = context.Array("q", [-1] * MAX_WORKERS, lock=False)
        # A loop-level resume (the explicit API): items each worker skips whenever `_resume_epoch` runs.
        self._resume_epoch: int | None = None
        self._skip: dict[int, int] = {}
        # This reader's position (the process iterating it): the epoch of its pass and the items of the pass
        # it yielded, skipped ones included; a restored position is used by the next pass only.
        self._pass_epoch: int | None = None
        self._consumed = 0
        self._restored: _Position | None = None

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch `epoch` next (a new order for a seeded loader); seen by workers too."""
        self._epoch.value = epoch

    def __iter__(self) -> Iterator[T]:
        # Not a generator: the checks and the reset of this worker's end run when the DataLoader asks
        # for the iterator (at the start of an epoch), not at its first batch.
        worker, num_workers = worker_and_num_workers()
        _, world_size = rank_and_world_size()
        kinds = self.stream.split_kinds()
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
        if num_workers > MAX_WORKERS:
            raise RuntimeError(f"{num_workers} DataLoader workers: at most {MAX_WORKERS} are supported")
        epoch = self._epoch.value
        self.stream.set_epoch(epoch)
        self._ends[worker] = -1
        skip = self._start_of_pass(worker, num_workers, epoch)
        # Set here, not in the generator: a StatefulDataLoader asks for the state before the first batch.
        self._pass_epoch, self._consumed = epoch, skip
        return self._items(worker, skip)

    def _start_of_pass(self, worker: int, num_workers: int, epoch: int) -> int:
        """Items this pass skips: a restored position of this epoch once, else a loop-level resume of it.

        Raises ValueError when the restored position is another reader's (the worker count changed).
        """
        restored, self._restored = self._restored, None
        if restored is None or restored.epoch != epoch:
            return self._skips(epoch).get(worker, 0)
        if (restored.worker, restored.workers) != (worker, num_workers):
            raise ValueError(
                f"the position of DataLoader worker {restored.worker} of {restored.workers} was restored into "
                f"worker {worker} of {num_workers}: resume with the worker count the state was saved with"
            )
        return restored.items

    def _items(self, worker: int, skip: int) -> Iterator[T]:
        for item in self.stream.resumed(skip) if skip else self.stream:
            self._consumed += 1
            yield item
        self._ends[worker] = self._consumed

    def _skips(self, epoch: int) -> dict[int, int]:
        """Items each worker skips in `epoch`: those consumed before a resume, in the resumed epoch only."""
        return self._skip if epoch == self._resume_epoch else {}

    @overload
    def state_dict(self, batches_consumed: None = None, batch_size: int = 1, num_workers: int = 0) -> ReaderState: ...
    @overload
    def state_dict(self, batches_consumed: int, batch_size: int = 1, num_workers: int = 0) -> LoopState: ...
    def state_dict(
        self, batches_consumed: int | None = None, batch_size: int = 1, num_workers: int = 0
    ) -> ReaderState | LoopState:
        """Where iteration is, to resume later with `load_state_dict`.

        Called bare (as torchdata's ``StatefulDataLoader`` does, in each worker), it returns the position of
        this reader, the process iterating the dataset: ``{"epoch": e, "worker": w, "workers": k,
        "items": n}``, the items of epoch `e` that worker `w` of `k` (0 of 1 without workers) yielded so
        far, or the position restored by `load_state_dict` until the next pass starts. Without workers
        that is all a plain `DataLoader` loop needs too; it overcounts a batch that failed halfway.

        With a plain `DataLoader` with workers, call it in the main process with how many batches the loop
        consumed in this epoch, and the DataLoader's `batch_size` (None counts as 1) and `num_workers`. A
        DataLoader takes batches from its workers in turn and passes over a worker once it ran out; each
        worker records where it ended, so the count is exact to the epoch's last batch (with the
        DataLoader's default ``in_order=True``). Returns ``{"epoch": e, "consumed": {worker: items}}``.

        Raises ValueError for a stream that shuffles without a seed (it cannot be resumed), and for
        `num_workers` without `batches_consumed`.
        """
        _require_replayable(self.stream)
        if batches_consumed is None:
            if num_workers:
                raise ValueError("with DataLoader workers, give batches_consumed (and batch_size)")
            return self._position()
        epoch = self._epoch.value
        size = batch_size or 1
        readers = range(max(num_workers, 1))
        starts = {w: self._skips(epoch).get(w, 0) for w in readers}
        ends = {w: self._ends[w] for w in readers}
        batches = {w: -(-(ends[w] - starts[w]) // size) if ends[w] >= 0 else batches_consumed for w in readers}
        taken = batches_taken(batches, batches_consumed)
        consumed = {w: starts[w] + taken[w] * size for w in readers}
        return {"epoch": epoch, "consumed": {w: min(n, ends[w]) if ends[w] >= 0 else n for w, n in consumed.items()}}

    def _position(self) -> ReaderState:
        """This reader's position: the restored one until a pass starts, else that of its latest pass."""
        if self._restored is not None:
            return self._restored.as_state()
        worker, num_workers = worker_and_num_workers()
        if self._pass_epoch is None:
            return _Position(self._epoch.value, worker, num_workers, 0).as_state()
        return _Position(self._pass_epoch, worker, num_workers, self._consumed).as_state()

    def load_state_dict(self, state: ReaderState | LoopState) -> None:
        """Resume from a `state_dict()`: its epoch is set, and the first items already consumed are skipped.

        A reader's position (``{"epoch", "worker", "workers", "items"}``, what ``StatefulDataLoader``
        restores in each worker) is used by the next pass of the process it is loaded into only; a later
        pass, even of the same epoch, is whole. That pass raises ValueError if it runs in another worker, or
        with another worker count, than the position was saved in. A loop-level state (``{"epoch",
        "consumed"}``, from `state_dict` with `batches_consumed`) makes each worker skip its items whenever
        the resumed epoch runs. Raises ValueError for a stream that shuffles without a seed.
        """
        _require_replayable(self.stream)
        epoch = int(state["epoch"])
        self.set_epoch(epoch)
        if "worker" in state:
            self._restored = _Position(epoch, int(state["worker"]), int(state["workers"]), int(state["items"]))
            return
        self._resume_epoch = epoch
        self._skip = {int(w): int(n) for w, n in state["consumed"].items()}


def batches_taken(batches: dict[int, int], consumed: int) -> dict[int, int]:
    """How many of its batches each worker delivered when a DataLoader handed out `consumed` batches.

    `batches[w]` is how many batches worker `w` has in the epoch. The DataLoader goes round the workers
    in order and passes over those that ran out, so after `r` full rounds it handed out
    ``sum(min(b, r))`` batches; the next round gives one more to each worker that still has some.
    """
    low, high = 0, consumed  # the most full rounds that fit in `consumed`
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(b, middle) for b in batches.values()) <= consumed:
            low = middle
        else:
            high = middle - 1
    taken = {w: min(b, low) for w, b in batches.items()}
    left = consumed - sum(taken.values())
    for w in sorted(batches):
        if left and batches[w] > low:
            taken[w] += 1
            left -= 1
    return taken
