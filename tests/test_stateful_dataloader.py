"""Resume the way PyTorch users do it: torchdata's `StatefulDataLoader` saves and restores `TorchIterable`'s
per-worker state by itself, so `loader.state_dict()` / `loader.load_state_dict()` resume mid-epoch exactly."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pytest
import torch

from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.iterstream.torch import TorchIterable
from tests.helpers import make_samples

if TYPE_CHECKING:
    from collections.abc import Callable

StatefulDataLoader = pytest.importorskip("torchdata.stateful_dataloader").StatefulDataLoader

# torchdata 0.11 (its latest release) calls torch.set_vital, which torch 2.13 deprecates, in every constructor.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")

# Shards of very different sizes: workers run out at different batches, and their last batches are partial.
SHARD_SIZES = [9, 1, 1, 9, 1, 1, 5, 3]
TOTAL = sum(SHARD_SIZES)
BATCH = 4
MANY_WORKERS = pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")


def sample_key(sample: Sample) -> str:
    return sample.key


def write_uneven_store(url: str) -> str:
    store = MessagepackStore(url)
    for i, size in enumerate(SHARD_SIZES):
        store.set(Shard(make_samples(size, prefix=f"u{i}_"), key=f"shard_{i:03d}"))
    return url


@pytest.fixture(scope="module")
def local_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_uneven_store(str(tmp_path_factory.mktemp("stateful") / "store"))


def dataset_factory(url: str, shuffle: bool, epoch: int = 0) -> Callable[[], TorchIterable]:
    """A fresh dataset over `url` each call, as a restarted training script would build it."""

    def fresh() -> TorchIterable:
        options: dict[str, Any] = {"seed": 11, "shuffle_key_buffer": 4, "shuffle_item_buffer": 6} if shuffle else {}
        stream = MessagePackDataLoader(url).get_iter(split_by_worker=True, **options)
        dataset = TorchIterable(stream.map(sample_key))
        dataset.set_epoch(epoch)
        return dataset

    return fresh


def checkpointed(state: dict[str, Any]) -> dict[str, Any]:
    """`state` after a round trip through a checkpoint file (`torch.save`, loaded with weights_only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def keys_of(loader: Any, limit: int | None = None) -> list[str]:
    """The keys of the batches `loader` yields, of its first `limit` batches when given."""
    keys: list[str] = []
    for count, batch in enumerate(loader, start=1):
        keys.extend(batch)
        if count == limit:
            break
    return keys


def interrupted_then_resumed(fresh: Callable[[], TorchIterable], stop: int, **options: Any) -> list[str]:
    """Keys of `stop` batches, then of every batch of a new loader restored from the first one's state."""
    loader = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    before = keys_of(loader, stop) if stop else []
    state = checkpointed(loader.state_dict())
    resumed = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    resumed.load_state_dict(state)
    return before + keys_of(resumed)


def options_for(num_workers: int, **more: Any) -> dict[str, Any]:
    if num_workers:
        return {"num_workers": num_workers, "multiprocessing_context": "fork", **more}
    return more


@MANY_WORKERS
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "seeded-shuffle"])
@pytest.mark.parametrize("num_workers", [0, 1, 3])
def test_resume_at_every_batch_gives_the_uninterrupted_epoch(local_url: str, num_workers: int, shuffle: bool) -> None:
    fresh = dataset_factory(local_url, shuffle, epoch=2)
    options = options_for(num_workers)
    full = keys_of(StatefulDataLoader(fresh(), batch_size=BATCH, **options))
    assert sorted(full) == sorted(set(full)) and len(full) == TOTAL
    batches = len(list(StatefulDataLoader(fresh(), batch_size=BATCH, **options)))
    for stop in range(batches + 1):
        assert interrupted_then_resumed(fresh, stop, **options) == full, f"resumed after {stop} batches"


@MANY_WORKERS
@pytest.mark.parametrize("snapshot_every", [2, 3])
def test_resume_between_snapshots_is_exact(local_url: str, snapshot_every: int) -> None:
    fresh = dataset_factory(local_url, shuffle=True)
    options = options_for(3, snapshot_every_n_steps=snapshot_every)
    full = keys_of(StatefulDataLoader(fresh(), batch_size=BATCH, **options))
    for stop in range(1, 8):
        assert interrupted_then_resumed(fresh, stop, **options) == full, f"resumed after {stop} batches"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resume_of_a_resume_is_exact(local_url: str, num_workers: int) -> None:
    """The state saved right after a restore, before any batch, is the restored one, not a fresh start."""
    fresh = dataset_factory(local_url, shuffle=True, epoch=1)
    options = options_for(num_workers)
    full = keys_of(StatefulDataLoader(fresh(), batch_size=BATCH, **options))
    first = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    before = keys_of(first, 3)
    second = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    second.load_state_dict(checkpointed(first.state_dict()))
    iter(second)  # starts the workers, which restore their state
    third = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    third.load_state_dict(checkpointed(second.state_dict()))
    assert before + keys_of(third) == full


@pytest.mark.parametrize(
    ("num_workers", "persistent"), [(0, False), (2, False), (2, True)], ids=["no-workers", "workers", "persistent"]
)
def test_the_pass_after_a_resumed_one_is_whole(local_url: str, num_workers: int, persistent: bool) -> None:
    """A restored position is used by the next pass only: the same epoch run again (no set_epoch) is whole."""
    fresh = dataset_factory(local_url, shuffle=True)
    options = options_for(num_workers, persistent_workers=persistent) if num_workers else {}
    first = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    before = keys_of(first, 2)
    resumed = StatefulDataLoader(fresh(), batch_size=BATCH, **options)
    resumed.load_state_dict(checkpointed(first.state_dict()))
    rest = keys_of(resumed)
    assert sorted(before + rest) == sorted(set(before + rest)) and len(before + rest) == TOTAL
    assert len(keys_of(resumed)) == TOTAL


def test_the_epoch_comes_back_with_the_state(local_url: str) -> None:
    """A script that builds its dataset at epoch 0 and restores a state saved in epoch 4 resumes epoch 4."""
    options = options_for(2)
    full = keys_of(StatefulDataLoader(dataset_factory(local_url, shuffle=True, epoch=4)(), batch_size=BATCH, **options))
    first = StatefulDataLoader(dataset_factory(local_url, shuffle=True, epoch=4)(), batch_size=BATCH, **options)
    before = keys_of(first, 3)
    resumed = StatefulDataLoader(dataset_factory(local_url, shuffle=True, epoch=0)(), batch_size=BATCH, **options)
    resumed.load_state_dict(checkpointed(first.state_dict()))
    assert before + keys_of(resumed) == full


def test_each_worker_keeps_its_own_position(local_url: str) -> None:
    """The loader's state holds, per worker, what the dataset said in that worker: its id, epoch and items."""
    dataset = dataset_factory(local_url, shuffle=False, epoch=3)()
    loader = StatefulDataLoader(dataset, batch_size=BATCH, **options_for(2))
    keys_of(loader, 3)  # worker 0 gave batches 1 and 3, worker 1 batch 2
    workers = loader.state_dict()["_snapshot"]["_worker_snapshots"]
    positions = {key: state["dataset_state"] for key, state in workers.items()}
    assert positions == {
        "worker_0": {"epoch": 3, "worker": 0, "workers": 2, "items": 2 * BATCH},
        "worker_1": {"epoch": 3, "worker": 1, "workers": 2, "items": BATCH},
    }


def test_a_position_restored_into_another_worker_is_refused(local_url: str) -> None:
    dataset = dataset_factory(local_url, shuffle=False)()
    dataset.load_state_dict({"epoch": 0, "worker": 1, "workers": 2, "items": 4})
    with pytest.raises(ValueError, match="worker 1 of 2 was restored into worker 0 of 1"):
        iter(dataset)


def test_a_position_without_workers_is_refused_by_several_workers(local_url: str) -> None:
    """A bare `state_dict()` of a loop without workers, resumed with a plain DataLoader with workers: every
    worker would skip the items of the single reader it replaces."""
    fresh = dataset_factory(local_url, shuffle=False)
    dataset = fresh()
    keys_of(torch.utils.data.DataLoader(dataset, batch_size=BATCH), 2)
    resumed = fresh()
    resumed.load_state_dict(checkpointed(dataset.state_dict()))
    with pytest.raises(ValueError, match="worker 0 of 1 was restored into worker 0 of 2"):
        keys_of(torch.utils.data.DataLoader(resumed, batch_size=BATCH, **options_for(2)))


def test_an_unseeded_shuffle_is_refused_at_the_first_batch(local_url: str) -> None:
    """StatefulDataLoader asks every worker for its state at each batch: a stream that cannot be replayed
    fails at once, not when a checkpoint turns out useless at resume time."""
    stream = MessagePackDataLoader(local_url).get_iter(split_by_worker=True, shuffle_item_buffer=5)
    loader = StatefulDataLoader(stream.map(sample_key).to_torch_iterable(), batch_size=BATCH, **options_for(2))
    with pytest.raises(ValueError, match="give a seed"):
        next(iter(loader))


@MANY_WORKERS
@pytest.mark.parametrize("num_workers", [0, 3])
def test_resume_on_every_store(store_url: str, num_workers: int) -> None:
    fresh = dataset_factory(write_uneven_store(store_url), shuffle=True, epoch=1)
    options = options_for(num_workers)
    full = keys_of(StatefulDataLoader(fresh(), batch_size=BATCH, **options))
    assert len(full) == TOTAL
    for stop in (1, 4):
        assert interrupted_then_resumed(fresh, stop, **options) == full, f"resumed after {stop} batches"
