"""PyTorch: real DataLoaders with workers (fork and spawn), simulated DDP ranks, epochs and resume."""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch.utils.data

from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.iterstream import IterableSource
from tests.helpers import interrupt_and_resume, make_samples, make_shards

if TYPE_CHECKING:
    from collections.abc import Callable

SHARDS, PER_SHARD = 12, 5


def sample_key(sample: Sample) -> str:
    return sample.key


@pytest.fixture(scope="module")
def dataset_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("torch") / "store")
    store = MessagepackStore(url)
    for shard in make_shards(SHARDS, PER_SHARD):
        store.set(shard)
    return url


def every_key() -> list[str]:
    return sorted(s.key for shard in make_shards(SHARDS, PER_SHARD) for s in shard.value)


def keys_through_dataloader(dataset: torch.utils.data.IterableDataset, **options) -> list[str]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, **options)
    return [key for batch in loader for key in batch]


@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize("persistent", [False, True])
def test_two_workers_read_every_sample_exactly_once(dataset_url: str, context: str, persistent: bool) -> None:
    stream = MessagePackDataLoader(dataset_url).get_iter(split_by_worker=True, seed=1, shuffle_key_buffer=4)
    dataset = stream.map(sample_key).to_torch_iterable()
    options = {"num_workers": 2, "multiprocessing_context": context, "persistent_workers": persistent}
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, **options)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        keys = [key for batch in loader for key in batch]
        assert sorted(keys) == every_key()


def test_set_epoch_reaches_persistent_workers(dataset_url: str) -> None:
    stream = MessagePackDataLoader(dataset_url).get_iter(
        split_by_worker=True, seed=7, shuffle_key_buffer=SHARDS, shuffle_item_buffer=10
    )
    dataset = stream.map(sample_key).to_torch_iterable()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in (0, 1, 0):
        dataset.set_epoch(epoch)
        orders.append([key for batch in loader for key in batch])
    assert orders[0] == orders[2] != orders[1]
    assert sorted(orders[1]) == every_key()


def test_workers_without_a_split_are_refused(dataset_url: str) -> None:
    dataset = MessagePackDataLoader(dataset_url).get_iter().map(sample_key).to_torch_iterable()
    with pytest.raises(RuntimeError, match="split_by_worker"):
        keys_through_dataloader(dataset, num_workers=2)


def test_item_level_worker_split_of_any_stream() -> None:
    dataset = IterableSource(range(103)).split_by_worker_pytorch().to_torch_iterable()
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    assert sorted(int(x) for x in loader) == list(range(103))


def _rank_keys(url: str, rank: int, world_size: int, queue: multiprocessing.Queue, equalize: str | None = None) -> None:
    stream = MessagePackDataLoader(url).get_iter(
        split_by_rank=True,
        split_by_worker=True,
        rank=rank,
        world_size=world_size,
        seed=3,
        shuffle_key_buffer=5,
        equalize=equalize,
    )
    dataset = stream.map(sample_key).to_torch_iterable()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    queue.put((rank, [list(batch) for batch in loader]))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_times_workers_see_every_sample_exactly_once(dataset_url: str, world_size: int) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ranks = [context.Process(target=_rank_keys, args=(dataset_url, r, world_size, queue)) for r in range(world_size)]
    for process in ranks:
        process.start()
    results = dict(queue.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(60)
        assert process.exitcode == 0
    seen = [key for rank in range(world_size) for batch in results[rank] for key in batch]
    assert sorted(seen) == every_key()


@pytest.mark.parametrize("mode", ["drop", "pad"])
def test_equalized_ranks_get_the_same_batches(tmp_path, mode: str) -> None:
    url = str(tmp_path / "uneven")
    store = MessagepackStore(url)
    for i, size in enumerate([9, 1, 7, 3, 4, 5, 6]):
        store.set(Shard([Sample({"i": j}, key=f"u{i}_{j}") for j in range(size)], key=f"shard_{i}"))
    store.write_index()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ranks = [context.Process(target=_rank_keys, args=(url, r, 2, queue, mode)) for r in range(2)]
    for process in ranks:
        process.start()
    results = dict(queue.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(60)
        assert process.exitcode == 0
    assert [len(b) for b in results[0]] == [len(b) for b in results[1]]  # DDP steps in lockstep
    keys = [key for batches in results.values() for batch in batches for key in batch]
    total = 9 + 1 + 7 + 3 + 4 + 5 + 6
    if mode == "drop":
        assert len(keys) == len(set(keys)) < total  # nothing twice, something dropped
    else:
        assert len(set(keys)) == total < len(keys)  # everything, some twice


def test_ranks_without_a_split_are_refused(dataset_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    dataset = MessagePackDataLoader(dataset_url).get_iter().to_torch_iterable()
    with pytest.raises(RuntimeError, match="split_by_rank"):
        next(iter(dataset))


def test_resume_in_process_gives_the_exact_remainder(dataset_url: str) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        stream = MessagePackDataLoader(dataset_url).get_iter(seed=5, shuffle_key_buffer=6, shuffle_item_buffer=9)
        return stream.map(sample_key).to_torch_iterable()

    full = keys_through_dataloader(fresh())
    dataset = fresh()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    consumed = []
    for i, batch in enumerate(loader):
        consumed.extend(batch)
        if i == 6:
            break
    state = dataset.state_dict()
    resumed = fresh()
    resumed.load_state_dict(state)
    rest = keys_through_dataloader(resumed)
    assert consumed + rest == full


def test_resume_through_workers_gives_the_exact_remainder(dataset_url: str) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        stream = MessagePackDataLoader(dataset_url).get_iter(split_by_worker=True, seed=5, shuffle_item_buffer=9)
        dataset = stream.map(sample_key).to_torch_iterable()
        dataset.set_epoch(3)
        return dataset

    consumed, rest = interrupt_and_resume(fresh, batches=5, num_workers=2)
    assert len(set(consumed) & set(rest)) == 0
    assert sorted(consumed + rest) == every_key()


@pytest.fixture(scope="module")
def uneven_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Shards of very different sizes, so DataLoader workers run out at different batches."""
    url = str(tmp_path_factory.mktemp("uneven") / "store")
    store = MessagepackStore(url)
    for i, size in enumerate([9, 1, 1, 9, 1, 1, 5]):
        store.set(Shard(make_samples(size, prefix=f"u{i}_"), key=f"shard_{i:03d}"))
    return url


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_resume_through_workers_is_exact_up_to_the_last_batch(uneven_url: str) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        stream = MessagePackDataLoader(uneven_url).get_iter(split_by_worker=True, seed=5, shuffle_item_buffer=9)
        dataset = stream.map(sample_key).to_torch_iterable()
        dataset.set_epoch(2)
        return dataset

    options = {"batch_size": 4, "num_workers": 3, "multiprocessing_context": "fork"}
    full = [key for batch in torch.utils.data.DataLoader(fresh(), **options) for key in batch]
    total_batches = -(-len(full) // 4) + 2  # at least: the three workers' last batches are partial
    assert sorted(full) == sorted(set(full)) and len(full) == 27
    for stop in range(1, total_batches + 1):
        dataset = fresh()
        consumed: list[str] = []
        batches = 0
        for batch in torch.utils.data.DataLoader(dataset, **options):
            consumed.extend(batch)
            batches += 1
            if batches == stop:
                break
        state = dataset.state_dict(batches_consumed=batches, batch_size=4, num_workers=3)
        resumed = fresh()
        resumed.load_state_dict(state)
        rest = [key for batch in torch.utils.data.DataLoader(resumed, **options) for key in batch]
        assert sorted(consumed + rest) == sorted(full), f"resumed after {batches} batches"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resume_skips_in_the_resumed_epoch_only(dataset_url: str, num_workers: int) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        stream = MessagePackDataLoader(dataset_url).get_iter(split_by_worker=True, seed=1, shuffle_item_buffer=7)
        return stream.map(sample_key).to_torch_iterable()

    dataset = fresh()
    dataset.set_epoch(3)
    consumed = []
    for batches, batch in enumerate(torch.utils.data.DataLoader(dataset, 4, num_workers=num_workers), start=1):
        consumed.extend(batch)
        if batches == 3:
            break
    resumed = fresh()
    resumed.load_state_dict(dataset.state_dict(batches_consumed=3, batch_size=4, num_workers=num_workers))
    options = {"num_workers": num_workers, "persistent_workers": bool(num_workers)}
    loader = torch.utils.data.DataLoader(resumed, 4, **options)
    rest = [key for batch in loader for key in batch]
    assert sorted(consumed + rest) == every_key()
    resumed.set_epoch(4)
    assert sorted(key for batch in loader for key in batch) == every_key()
    resumed.set_epoch(3)  # the resumed epoch again, from its start: a resume is used once per epoch run
    assert len([key for batch in loader for key in batch]) == len(rest)


def _key_and_shards_fetched(stream: Any) -> Callable[[Sample], tuple[int, str, int]]:
    """Tag each sample with the DataLoader worker and how many shards `stream` had fetched in it."""

    def tag(sample: Sample) -> tuple[int, str, int]:
        worker = torch.utils.data.get_worker_info()
        return worker.id, sample.key, stream.metrics.objects

    return tag


def test_each_worker_fetches_only_its_own_shards(dataset_url: str) -> None:
    """The worker split happens on shard keys before any fetch: no worker downloads what it throws away."""
    stream = MessagePackDataLoader(dataset_url).get_iter(split_by_worker=True, prefetch=SHARDS)
    dataset = stream.map(_key_and_shards_fetched(stream)).to_torch_iterable()
    items = list(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2))
    assert sorted(key for _, key, _ in items) == every_key()
    for worker in (0, 1):
        fetched = [count for w, _, count in items if w == worker]
        assert max(fetched) == SHARDS // 2  # prefetch could fetch all 12; only its 6 exist for it


@pytest.mark.parametrize(
    "make_stream",
    [
        lambda url: MessagePackDataLoader(url).get_iter(shuffle_item_buffer=10).map(sample_key),
        lambda url: MessagePackDataLoader(url).get_iter(shuffle_key_buffer=4).map(sample_key),
        lambda url: MessagePackDataLoader(url).get_iter().map(sample_key).shuffle(8),
    ],
    ids=["item-buffer", "key-buffer", "shuffle-operator"],
)
def test_an_unseeded_shuffle_cannot_be_resumed(dataset_url: str, make_stream: Callable[[str], Any]) -> None:
    dataset = make_stream(dataset_url).to_torch_iterable()
    next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    with pytest.raises(ValueError, match="give a seed"):
        dataset.state_dict(batches_consumed=1, batch_size=4)
    with pytest.raises(ValueError, match="without seed"):
        dataset.load_state_dict({"epoch": 0, "consumed": {0: 4}})


def test_a_seeded_shuffle_operator_can_be_resumed(dataset_url: str) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        return MessagePackDataLoader(dataset_url).get_iter().map(sample_key).shuffle(8, seed=3).to_torch_iterable()

    consumed, rest = interrupt_and_resume(fresh, batches=4)
    assert sorted(consumed + rest) == every_key()


def _key_and_values(sample: Sample) -> tuple[str, int, int]:
    values = sample.value["x"]
    return sample.key, int(values.min()), int(values.max())


SHARDS_1MB = 40


def test_forked_workers_do_not_share_a_warm_streams_buffers(tmp_path) -> None:
    # a stream iterated in the parent keeps its read buffers for later passes; forked workers inherit
    # them, and when they were shared mappings, two workers read their shards into the same memory
    store = MessagepackStore(str(tmp_path))
    for s in range(SHARDS_1MB):  # read into the pool's buffers
        store.set(Shard([Sample({"x": np.full(32_768, s * 10 + i, np.int32)}, f"s{s}_{i}") for i in range(8)], f"{s}"))
    stream = MessagePackDataLoader(str(tmp_path)).get_iter(split_by_worker=True, prefetch=4)
    assert sum(1 for _ in stream) == 8 * SHARDS_1MB and stream.aio.pool._buffers  # the parent's pass warms the pool
    dataset = stream.map(_key_and_values).to_torch_iterable()
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="fork")
    seen = list(loader)
    assert len(seen) == 8 * SHARDS_1MB
    for key, low, high in seen:
        shard, index = (int(part) for part in key[1:].split("_"))
        assert low == high == shard * 10 + index, key
