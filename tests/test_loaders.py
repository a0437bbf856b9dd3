"""Loaders on every filesystem: every sample once, key_iterator, and order fixed by seed and epoch."""

from __future__ import annotations

import pytest

from squirrel.aio import AsyncMessagepackLoader
from squirrel.driver import (
    JsonlLoader,
    JsonlStore,
    MessagePackDataLoader,
    MessagepackStore,
    RecordLoader,
    RecordStore,
    Sample,
    Shard,
)
from squirrel.errors import DecodeError
from squirrel.iterstream import Composable
from squirrel.order import shuffled_keys as plan_keys
from tests.helpers import assert_same_samples, make_samples, make_shards

SHUFFLED = {"shuffle_key_buffer": 4, "shuffle_item_buffer": 7}


@pytest.fixture
def messagepack_url(store_url: str) -> str:
    store = MessagepackStore(store_url)
    for shard in make_shards(6, 5):
        store.set(shard)
    return store_url


def all_keys() -> list[str]:
    return [s.key for shard in make_shards(6, 5) for s in shard.value]


def test_unshuffled_reads_every_sample_in_sorted_key_order(messagepack_url: str) -> None:
    loader = MessagePackDataLoader(messagepack_url)
    samples = loader.get_iter().collect()
    assert_same_samples(samples, [s for shard in make_shards(6, 5) for s in shard.value])


def test_key_iterator_reads_only_those_objects_in_that_order(messagepack_url: str) -> None:
    keys = [s.key for s in MessagePackDataLoader(messagepack_url).get_iter(key_iterator=["shard_004", "shard_001"])]
    assert keys == [k for k in all_keys() if k.startswith("sh4_")] + [k for k in all_keys() if k.startswith("sh1_")]


def test_bad_key_in_key_iterator_is_refused(messagepack_url: str) -> None:
    with pytest.raises(ValueError, match=r"\.\./etc"):
        MessagePackDataLoader(messagepack_url).get_iter(key_iterator=["../etc"]).collect()


def test_missing_key_in_key_iterator_is_named(messagepack_url: str) -> None:
    with pytest.raises(KeyError, match="shard_999"):
        MessagePackDataLoader(messagepack_url).get_iter(key_iterator=["shard_999"]).collect()


def test_seed_and_epoch_fix_the_order(messagepack_url: str) -> None:
    loader = MessagePackDataLoader(messagepack_url)
    runs = [[s.key for s in loader.get_iter(seed=11, epoch=0, max_concurrency=c, **SHUFFLED)] for c in (1, 3, 8)]
    assert runs[0] == runs[1] == runs[2]
    assert sorted(runs[0]) == sorted(all_keys())
    assert runs[0] != sorted(all_keys())
    other_epoch = [s.key for s in loader.get_iter(seed=11, epoch=1, **SHUFFLED)]
    assert other_epoch != runs[0] and sorted(other_epoch) == sorted(all_keys())
    other_seed = [s.key for s in loader.get_iter(seed=12, epoch=0, **SHUFFLED)]
    assert other_seed != runs[0]


def test_same_stream_object_iterates_twice_identically(messagepack_url: str) -> None:
    stream = MessagePackDataLoader(messagepack_url).get_iter(seed=3, **SHUFFLED)
    assert isinstance(stream, Composable)
    assert [s.key for s in stream] == [s.key for s in stream]


async def test_async_loader_matches_the_sync_one(messagepack_url: str) -> None:
    expected = [s.key for s in MessagePackDataLoader(messagepack_url).get_iter(seed=5, epoch=2, **SHUFFLED)]
    async with AsyncMessagepackLoader(messagepack_url) as loader:
        got = [s.key async for s in loader.get_iter(seed=5, epoch=2, **SHUFFLED)]
        assert got == expected
        plain = await loader.get_iter(max_concurrency=2, prefetch=2).collect()
    assert [s.key for s in plain] == all_keys()


def test_jsonl_and_record_loaders(store_url: str) -> None:
    shards = make_shards(3, 4)
    for shard in shards:
        JsonlStore(store_url + "/jsonl").set(shard)
        RecordStore(store_url + "/records").set(shard)
    expected = [s.key for shard in shards for s in shard.value]
    assert [s.key for s in JsonlLoader(store_url + "/jsonl").get_iter()] == expected
    assert [s.key for s in RecordLoader(store_url + "/records").get_iter()] == expected
    assert [s.value["label"] for s in RecordLoader(store_url + "/records").get_iter()] == [0, 1, 2, 3] * 3


def test_gzip_store_loads(tmp_path) -> None:
    url = str(tmp_path)
    for shard in make_shards(2, 3):
        MessagepackStore(url, compression="gzip").set(shard)
    assert len(MessagePackDataLoader(url, compression="gzip").get_iter().collect()) == 6


def test_plan_keys_is_a_pure_function_of_seed_and_epoch() -> None:
    keys = [f"k{i}" for i in range(50)]
    assert plan_keys(keys, 1, None, 0) == keys
    assert plan_keys(keys, 10, 1, 0) == plan_keys(keys, 10, 1, 0)
    assert plan_keys(keys, 10, 1, 0) != plan_keys(keys, 10, 1, 1)
    assert sorted(plan_keys(keys, 10, None, 0)) == sorted(keys)


def test_on_error_skip_logs_counts_and_goes_on(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    url = str(tmp_path)
    for shard in make_shards(3, 2):
        MessagepackStore(url).set(shard)
    (tmp_path / "shard_001.msgpack").write_bytes(b"SQMP garbage")
    with pytest.raises(DecodeError, match="shard_001"):
        MessagePackDataLoader(url).get_iter().collect()
    stream = MessagePackDataLoader(url).get_iter(on_error="skip")
    reports = []
    with caplog.at_level("WARNING", logger="squirrel"):
        keys = [s.key for s in stream.monitor(reports.append)]
    assert keys == ["sh0_00000", "sh0_00001", "sh2_00000", "sh2_00001"]
    assert stream.metrics.skipped == 1 and "shard_001" in caplog.text
    assert reports[-1]["objects_skipped"] == 1 and reports[-1]["items"] == 4
    assert reports[-1]["bytes_fetched"] > 0 and reports[-1]["fetches_in_flight"] == 0


async def test_async_loader_skips_missing_objects(messagepack_url: str) -> None:
    async with AsyncMessagepackLoader(messagepack_url) as loader:
        stream = loader.get_iter(key_iterator=["shard_000", "nope", "shard_002"], on_error="skip")
        reports = []
        keys = [s.key async for s in stream.monitor(reports.append)]
    assert len(keys) == 10 and stream.metrics.skipped == 1
    assert reports[-1]["objects_fetched"] == 3


@pytest.fixture
def uneven_url(tmp_path) -> str:
    url = str(tmp_path / "uneven")
    store = MessagepackStore(url)
    for i, size in enumerate([5, 1, 7, 3, 4, 2, 6]):
        store.set(Shard([Sample({"i": j}, key=f"u{i}_{j}") for j in range(size)], key=f"shard_{i}"))
    store.write_index()
    return url


@pytest.mark.parametrize("seed", [None, 4])
def test_equalize_gives_every_rank_the_same_count(uneven_url: str, seed) -> None:
    loader = MessagePackDataLoader(uneven_url)
    every = {s.key for s in loader.get_iter()}
    for world_size in (2, 3):

        def per_rank(mode: str | None, world_size: int = world_size) -> list[list[str]]:
            options = {"split_by_rank": True, "world_size": world_size, "seed": seed, "shuffle_key_buffer": 3}
            return [[s.key for s in loader.get_iter(rank=r, equalize=mode, **options)] for r in range(world_size)]

        plain, dropped, padded = per_rank(None), per_rank("drop"), per_rank("pad")
        assert sorted(k for rank in plain for k in rank) == sorted(every)
        assert len({len(rank) for rank in dropped}) == 1 and len(dropped[0]) == min(len(r) for r in plain)
        assert len({len(rank) for rank in padded}) == 1 and len(padded[0]) == max(len(r) for r in plain)
        assert {k for rank in padded for k in rank} == every
        if seed is not None:  # the same order every time: dropping only cuts the tail
            for rank, keys in enumerate(dropped):
                assert keys == plain[rank][: len(keys)]


def test_equalize_needs_an_index(messagepack_url: str) -> None:
    with pytest.raises(ValueError, match="write_index"):
        MessagePackDataLoader(messagepack_url).get_iter(
            split_by_rank=True, rank=0, world_size=2, equalize="drop"
        ).collect()


async def test_async_equalize(uneven_url: str) -> None:
    async with AsyncMessagepackLoader(uneven_url) as loader:
        counts = [
            len(await loader.get_iter(split_by_rank=True, rank=r, world_size=3, equalize="pad").collect())
            for r in range(3)
        ]
    assert len(set(counts)) == 1


def test_log_metrics_is_a_ready_monitor_callback(messagepack_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from squirrel.metrics import log_metrics

    with caplog.at_level("INFO", logger="squirrel"):
        MessagePackDataLoader(messagepack_url).get_iter().monitor(log_metrics, every=0.0).join()
    last = caplog.records[-1].getMessage()
    assert "items=30" in last and "bytes_fetched=" in last and "objects_skipped=0" in last


def test_a_process_that_leaves_a_pass_unfinished_exits_promptly(tmp_path) -> None:
    """An iterator dropped mid-pass is closed at interpreter exit, when the IO loop's daemon thread no
    longer runs: closing must not wait for it (it used to hang the process forever)."""
    import subprocess
    import sys
    import textwrap

    url = str(tmp_path / "store")
    RecordStore(url).set(Shard(make_samples(50), key="unused"))
    script = textwrap.dedent(
        f"""
        from squirrel.driver import RecordLoader
        samples = iter(RecordLoader({url!r}).get_iter(prefetch=8))
        print(next(samples).key)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "s00000"
    assert done.stderr == ""
