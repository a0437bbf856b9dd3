"""Resuming a pass mid-epoch: shards that were wholly consumed are not read again, and the order replays."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from squirrel.driver import MessagePackDataLoader, MessagepackStore, RecordLoader, RecordStore, Sample, Shard
from squirrel.errors import DecodeError
from squirrel.order import ShardInterleaver, consumed_per_shard, make_numpy_rng
from tests.helpers import interrupt_and_resume, make_samples

if TYPE_CHECKING:
    import torch.utils.data

COUNTS = [7, 3, 0, 9, 5, 6, 2, 8]
ORDERS = [
    {},
    {"seed": 1, "shuffle_key_buffer": 4},
    {"seed": 2, "shuffle_item_buffer": 10},
    {"seed": 3, "shuffle_key_buffer": 3, "shuffle_item_buffer": 4},
]


def write_store(url: str, index: bool = True) -> None:
    store = MessagepackStore(url)
    for i, count in enumerate(COUNTS):
        store.set(Shard(make_samples(count, prefix=f"r{i}_"), key=f"shard_{i:03d}"))
    if index:
        store.write_index()


def keys(samples: object) -> list[str]:
    return [sample.key for sample in samples]  # type: ignore[attr-defined]


@pytest.mark.parametrize("trial", range(40))
def test_the_simulated_interleaver_takes_what_the_real_one_releases(trial: int) -> None:
    rng = random.Random(trial)
    counts = [rng.randint(0, 12) for _ in range(rng.randint(0, 9))]
    size = rng.choice([1, 2, 5, 17, 100])
    interleaver = ShardInterleaver(size, make_numpy_rng(trial, 0, "items")) if size > 1 else None
    released: list[tuple[int, int]] = []
    for shard, count in enumerate(counts):
        chunk = [(shard, i) for i in range(count)]
        released.extend(interleaver.push(chunk) if interleaver else chunk)
    released.extend(interleaver.drain() if interleaver else [])
    for skip in range(sum(counts) + 2):
        expected = [sum(1 for shard, _ in released[:skip] if shard == s) for s in range(len(counts))]
        assert consumed_per_shard(counts, skip, size, make_numpy_rng(trial, 0, "items")) == expected


def test_the_interleaver_releases_once_its_buffer_is_full() -> None:
    """A shard of exactly the buffer's size is released on arrival, shuffled (a shuffle buffer draws once
    full): the first sample of a shuffled pass does not wait for a second shard."""
    interleaver = ShardInterleaver(100, make_numpy_rng(0, 0, "items"))
    assert interleaver.push(list(range(99))) == []
    released = interleaver.push(list(range(99, 199)))  # 199 held: runs until one shard is used up
    assert len(released) >= 99 and interleaver.held == 199 - len(released)
    first = ShardInterleaver(100, make_numpy_rng(0, 0, "items")).push(list(range(100)))
    assert sorted(first) == list(range(100)) and first != list(range(100))


@pytest.mark.parametrize("order", ORDERS, ids=["plain", "keys", "items", "both"])
def test_a_resumed_pass_is_the_rest_of_the_pass(store_url: str, order: dict) -> None:
    write_store(store_url)
    full = keys(MessagePackDataLoader(store_url).get_iter(**order))
    assert len(full) == sum(COUNTS)
    for skip in [0, 1, 6, 7, 10, 19, len(full) - 1, len(full), len(full) + 3]:
        assert keys(MessagePackDataLoader(store_url).get_iter(**order).resumed(skip)) == full[skip:], skip


@pytest.mark.parametrize("order", ORDERS, ids=["plain", "keys", "items", "both"])
def test_shards_consumed_whole_are_not_fetched_again(tmp_path, order: dict) -> None:
    url = str(tmp_path / "store")
    write_store(url)
    stream = MessagePackDataLoader(url).get_iter(**order)
    assert keys(stream.resumed(sum(COUNTS) - 1))  # the last sample
    assert stream.metrics.objects == 1  # its shard only, of 8


def test_without_an_index_the_skipped_samples_are_read_and_dropped(tmp_path) -> None:
    url = str(tmp_path / "store")
    write_store(url, index=False)
    order = {"seed": 4, "shuffle_item_buffer": 6}
    full = keys(MessagePackDataLoader(url).get_iter(**order))
    stream = MessagePackDataLoader(url).get_iter(**order)
    assert keys(stream.resumed(30)) == full[30:]
    assert stream.metrics.objects == len(COUNTS)


def test_a_dataloader_resume_reads_only_unfinished_shards(tmp_path) -> None:
    url = str(tmp_path / "store")
    write_store(url)

    def fresh() -> torch.utils.data.IterableDataset:
        stream = MessagePackDataLoader(url).get_iter(seed=5, shuffle_key_buffer=8, shuffle_item_buffer=8)
        return stream.map(lambda sample: sample.key).to_torch_iterable()

    made: list[torch.utils.data.IterableDataset] = []

    def tracked() -> torch.utils.data.IterableDataset:
        made.append(fresh())
        return made[-1]

    consumed, rest = interrupt_and_resume(tracked, batches=9)
    assert sorted(consumed + rest) == sorted(f"r{i}_{j:05d}" for i, n in enumerate(COUNTS) for j in range(n))
    assert made[1].stream.source.metrics.objects < len(COUNTS)


def test_a_stale_index_is_reported_not_replayed_wrongly(tmp_path) -> None:
    url = str(tmp_path / "store")
    write_store(url)
    store = MessagepackStore(url)
    # a writer that leaves the index alone: 1 sample now; the index says 7
    store.set(Shard([Sample({"label": 0}, "extra_0")], key="shard_000"), keep_index=True)
    stream = MessagePackDataLoader(url).get_iter()
    with pytest.raises(DecodeError, match="'shard_000' holds 1 samples but the store's index says 7"):
        list(stream.resumed(2))


@pytest.mark.parametrize("order", ORDERS, ids=["plain", "keys", "items", "both"])
def test_a_resumed_record_pass_reads_only_the_records_left(store_url: str, order: dict) -> None:
    # one object per sample: on local disk and memory:// read in groups in the consumer's thread, with
    # placeholders standing in for the records already consumed
    store = RecordStore(store_url)
    store.set(Shard(make_samples(40), key="unused"))
    store.write_index()
    full = keys(RecordLoader(store_url).get_iter(**order))
    assert sorted(full) == sorted(sample.key for sample in make_samples(40))
    for skip in [0, 1, 9, 17, 39, 40]:
        stream = RecordLoader(store_url).get_iter(**order)
        assert keys(stream.resumed(skip)) == full[skip:], skip
        if not order:
            assert stream.metrics.objects == 40 - skip
