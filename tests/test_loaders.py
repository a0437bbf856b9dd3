"""Loaders on every filesystem and both faces: every sample once, key_iterator, order fixed by seed and epoch,
bad objects, equalize and metrics. Each behaviour is written once and runs on the sync face and on its
async twin (`face`), over local disk, memory:// and a real GCS server (`store_url`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

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
from squirrel.order import shuffled_keys as plan_keys
from tests.helpers import assert_same_samples, make_samples, make_shards


class Face:
    """A face of the loaders: `loader` builds the sync class or its async twin; `collect` and `keys`
    iterate a stream of it to the end (on a loop of its own for the async face, closing the store there)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.async_loaders: list[Any] = []

    def loader(self, sync_class: type[RecordLoader], *args: Any, **kwargs: Any) -> Any:
        if self.name == "sync":
            return sync_class(*args, **kwargs)
        loader = sync_class.async_class(*args, **kwargs)
        self.async_loaders.append(loader)
        return loader

    def collect(self, stream: Any) -> list[Any]:
        if self.name == "sync":
            return stream.collect()

        async def run() -> list[Any]:
            try:
                return await stream.collect()
            finally:  # the filesystems opened on this loop close with it
                for loader in self.async_loaders:
                    await loader.aclose()

        return asyncio.run(run())

    def keys(self, stream: Any) -> list[str]:
        return [sample.key for sample in self.collect(stream)]


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Face:
    return Face(request.param)


SHUFFLED = {"shuffle_key_buffer": 4, "shuffle_item_buffer": 7}


@pytest.fixture
def messagepack_url(store_url: str) -> str:
    store = MessagepackStore(store_url)
    for shard in make_shards(6, 5):
        store.set(shard)
    return store_url


def all_keys() -> list[str]:
    return [s.key for shard in make_shards(6, 5) for s in shard.value]


def test_unshuffled_reads_every_sample_in_sorted_key_order(face: Face, messagepack_url: str) -> None:
    samples = face.collect(face.loader(MessagePackDataLoader, messagepack_url).get_iter(max_concurrency=2, prefetch=2))
    assert_same_samples(samples, [s for shard in make_shards(6, 5) for s in shard.value])


def test_key_iterator_reads_only_those_objects_in_that_order(face: Face, messagepack_url: str) -> None:
    loader = face.loader(MessagePackDataLoader, messagepack_url)
    keys = face.keys(loader.get_iter(key_iterator=["shard_004", "shard_001"]))
    assert keys == [k for k in all_keys() if k.startswith("sh4_")] + [k for k in all_keys() if k.startswith("sh1_")]


def test_bad_key_in_key_iterator_is_refused(face: Face, messagepack_url: str) -> None:
    with pytest.raises(ValueError, match=r"\.\./etc"):
        face.collect(face.loader(MessagePackDataLoader, messagepack_url).get_iter(key_iterator=["../etc"]))


def test_missing_key_in_key_iterator_is_named(face: Face, messagepack_url: str) -> None:
    with pytest.raises(KeyError, match="shard_999"):
        face.collect(face.loader(MessagePackDataLoader, messagepack_url).get_iter(key_iterator=["shard_999"]))


def test_seed_and_epoch_fix_the_order(face: Face, messagepack_url: str) -> None:
    loader = face.loader(MessagePackDataLoader, messagepack_url)
    runs = [face.keys(loader.get_iter(seed=11, epoch=0, max_concurrency=c, **SHUFFLED)) for c in (1, 3, 8)]
    assert runs[0] == runs[1] == runs[2]
    assert sorted(runs[0]) == sorted(all_keys())
    assert runs[0] != sorted(all_keys())
    other_epoch = face.keys(loader.get_iter(seed=11, epoch=1, **SHUFFLED))
    assert other_epoch != runs[0] and sorted(other_epoch) == sorted(all_keys())
    assert face.keys(loader.get_iter(seed=12, epoch=0, **SHUFFLED)) != runs[0]


def test_both_faces_give_the_same_order(messagepack_url: str) -> None:
    faces = [Face("sync"), Face("async")]
    orders = [
        face.keys(face.loader(MessagePackDataLoader, messagepack_url).get_iter(seed=5, epoch=2, **SHUFFLED))
        for face in faces
    ]
    assert orders[0] == orders[1]


def test_same_stream_object_iterates_twice_identically(face: Face, messagepack_url: str) -> None:
    stream = face.loader(MessagePackDataLoader, messagepack_url).get_iter(seed=3, **SHUFFLED)
    assert face.keys(stream) == face.keys(stream)


def test_jsonl_and_record_loaders(face: Face, store_url: str) -> None:
    shards = make_shards(3, 4)
    for shard in shards:
        JsonlStore(store_url + "/jsonl").set(shard)
        RecordStore(store_url + "/records").set(shard)
    expected = [s.key for shard in shards for s in shard.value]
    assert face.keys(face.loader(JsonlLoader, store_url + "/jsonl").get_iter()) == expected
    records = face.collect(face.loader(RecordLoader, store_url + "/records").get_iter())
    assert [s.key for s in records] == expected
    assert [s.value["label"] for s in records] == [0, 1, 2, 3] * 3


def test_gzip_store_loads(face: Face, tmp_path) -> None:
    url = str(tmp_path)
    for shard in make_shards(2, 3):
        MessagepackStore(url, compression="gzip").set(shard)
    assert len(face.collect(face.loader(MessagePackDataLoader, url, compression="gzip").get_iter())) == 6


def test_plan_keys_is_a_pure_function_of_seed_and_epoch() -> None:
    keys = [f"k{i}" for i in range(50)]
    assert plan_keys(keys, 1, None, 0) == keys
    assert plan_keys(keys, 10, 1, 0) == plan_keys(keys, 10, 1, 0)
    assert plan_keys(keys, 10, 1, 0) != plan_keys(keys, 10, 1, 1)
    assert sorted(plan_keys(keys, 10, None, 0)) == sorted(keys)


def test_on_error_skip_logs_counts_and_goes_on(face: Face, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    url = str(tmp_path)
    for shard in make_shards(3, 2):
        MessagepackStore(url).set(shard)
    (tmp_path / "shard_001.msgpack").write_bytes(b"SQMP garbage")
    with pytest.raises(DecodeError, match="shard_001"):
        face.collect(face.loader(MessagePackDataLoader, url).get_iter())
    stream = face.loader(MessagePackDataLoader, url).get_iter(on_error="skip")
    reports: list[dict[str, Any]] = []
    with caplog.at_level("WARNING", logger="squirrel"):
        keys = [s.key for s in face.collect(stream.monitor(reports.append))]
    assert keys == ["sh0_00000", "sh0_00001", "sh2_00000", "sh2_00001"]
    assert stream.metrics.skipped == 1 and "shard_001" in caplog.text
    assert reports[-1]["objects_skipped"] == 1 and reports[-1]["items"] == 4
    assert reports[-1]["bytes_fetched"] > 0 and reports[-1]["fetches_in_flight"] == 0


def test_missing_objects_are_skipped(face: Face, messagepack_url: str) -> None:
    stream = face.loader(MessagePackDataLoader, messagepack_url).get_iter(
        key_iterator=["shard_000", "nope", "shard_002"], on_error="skip"
    )
    reports: list[dict[str, Any]] = []
    keys = face.keys(stream.monitor(reports.append))
    assert len(keys) == 10 and stream.metrics.skipped == 1
    assert reports[-1]["objects_fetched"] == 3


def test_bad_records_are_raised_in_order_or_skipped(face: Face, store_url: str) -> None:
    # one object per sample (read in groups on local disk and memory://): a bad record stops the pass
    # where it stands, after the records before it, or under "skip" is counted and passed over
    url = store_url + "/records"
    RecordStore(url).set(Shard(make_samples(20), key="unused"))
    wanted = [f"s{i:05d}" for i in range(20)]
    wanted.insert(12, "nope")
    with pytest.raises(KeyError, match="nope"):
        face.collect(face.loader(RecordLoader, url).get_iter(key_iterator=wanted))
    stream = face.loader(RecordLoader, url).get_iter(key_iterator=wanted, on_error="skip")
    reports: list[dict[str, Any]] = []
    assert face.keys(stream.monitor(reports.append)) == [key for key in wanted if key != "nope"]
    assert stream.metrics.skipped == 1 and reports[-1]["objects_fetched"] == 21


@pytest.fixture
def uneven_url(tmp_path) -> str:
    url = str(tmp_path / "uneven")
    store = MessagepackStore(url)
    for i, size in enumerate([5, 1, 7, 3, 4, 2, 6]):
        store.set(Shard([Sample({"i": j}, key=f"u{i}_{j}") for j in range(size)], key=f"shard_{i}"))
    store.write_index()
    return url


@pytest.mark.parametrize("seed", [None, 4])
def test_equalize_gives_every_rank_the_same_count(face: Face, uneven_url: str, seed) -> None:
    loader = face.loader(MessagePackDataLoader, uneven_url)
    every = set(face.keys(loader.get_iter()))
    for world_size in (2, 3):

        def per_rank(mode: str | None, world_size: int = world_size) -> list[list[str]]:
            options = {"split_by_rank": True, "world_size": world_size, "seed": seed, "shuffle_key_buffer": 3}
            return [face.keys(loader.get_iter(rank=r, equalize=mode, **options)) for r in range(world_size)]

        plain, dropped, padded = per_rank(None), per_rank("drop"), per_rank("pad")
        assert sorted(k for rank in plain for k in rank) == sorted(every)
        assert len({len(rank) for rank in dropped}) == 1 and len(dropped[0]) == min(len(r) for r in plain)
        assert len({len(rank) for rank in padded}) == 1 and len(padded[0]) == max(len(r) for r in plain)
        assert {k for rank in padded for k in rank} == every
        if seed is not None:  # the same order every time: dropping only cuts the tail
            for rank, keys in enumerate(dropped):
                assert keys == plain[rank][: len(keys)]


def test_equalize_needs_an_index(face: Face, messagepack_url: str) -> None:
    loader = face.loader(MessagePackDataLoader, messagepack_url)
    with pytest.raises(ValueError, match="write_index"):
        face.collect(loader.get_iter(split_by_rank=True, rank=0, world_size=2, equalize="drop"))


def test_log_metrics_is_a_ready_monitor_callback(
    face: Face, messagepack_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from squirrel.metrics import log_metrics

    with caplog.at_level("INFO", logger="squirrel"):
        face.collect(face.loader(MessagePackDataLoader, messagepack_url).get_iter().monitor(log_metrics, every=0.0))
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


@pytest.mark.parametrize("decode_in", ["worker", "loop"])
def test_the_async_pass_decodes_where_it_is_told_with_the_same_samples(messagepack_url: str, decode_in: str) -> None:
    """`Pass.chunks(decode_in=...)`: in a worker thread or on the loop, the same samples in the same order."""
    from squirrel.aio.loaders import open_pass
    from squirrel.metrics import LoaderMetrics

    loader = MessagePackDataLoader(messagepack_url)
    stream = loader.aio.get_iter(seed=2, **SHUFFLED)
    expected = [s.key for s in loader.get_iter(seed=2, **SHUFFLED)]

    async def keys() -> list[str]:
        run = await open_pass(stream.store, stream.plan, LoaderMetrics())
        order, out = stream.plan.order(), []
        try:
            async for chunk in run.chunks(decode_in):
                out += [s.key for s in order.push(chunk)]
        finally:
            await stream.store.aclose()
        return out + [s.key for s in order.drain()]

    assert asyncio.run(keys()) == expected


def test_an_async_pass_refuses_to_decode_in_the_consumer() -> None:
    from squirrel.aio.pipeline import Pass
    from squirrel.aio.stores.shard import AsyncMessagepackStore
    from squirrel.metrics import LoaderMetrics
    from squirrel.plan import LoadPlan

    run = Pass(AsyncMessagepackStore("memory://nowhere"), LoadPlan(), LoaderMetrics(), [])
    with pytest.raises(ValueError, match="'worker' or 'loop'"):
        asyncio.run(anext(run.chunks("consumer")))


def test_a_looped_loader_whose_rank_share_is_empty_ends(face: Face, store_url: str) -> None:
    """One shard, two ranks: rank 1's share is empty, and looping it ends at once instead of re-listing the
    store thousands of times a second."""
    MessagepackStore(store_url).set(Shard(make_samples(3), key="only"))
    loader = face.loader(MessagePackDataLoader, store_url)
    assert face.collect(loader.get_iter(split_by_rank=True, rank=1, world_size=2).loop()) == []
    looped = face.collect(loader.get_iter(split_by_rank=True, rank=0, world_size=2).loop().take(7))
    assert len(looped) == 7


async def test_slow_start_reads_two_alone_then_doubles_up_to_its_limit() -> None:
    from squirrel.aio.pacing import SlowStart

    limit, in_flight, peaks = SlowStart(5), 0, []
    gates = [asyncio.Event() for _ in range(12)]

    async def read(i: int) -> None:
        nonlocal in_flight
        async with limit:
            in_flight += 1
            peaks.append(in_flight)
            await gates[i].wait()
            in_flight -= 1

    tasks = [asyncio.create_task(read(i)) for i in range(12)]
    await asyncio.sleep(0.01)
    assert peaks == [1]  # the first read alone
    gates[0].set()
    await asyncio.sleep(0.01)
    assert peaks == [1, 1]  # the second alone too, while the consumer decodes the first
    gates[1].set()
    await asyncio.sleep(0.01)
    assert peaks == [1, 1, 1, 2]  # then the window grows by one as each read ends
    for gate in gates:
        gate.set()
    await asyncio.gather(*tasks)
    assert max(peaks) <= 5 and len(peaks) == 12


def test_a_local_pass_starts_with_one_read(tmp_path) -> None:
    # large shards on local disk (small ones are read in groups): the first is read alone, so the first
    # sample does not wait for the rest
    url = str(tmp_path)
    for i in range(6):
        MessagepackStore(url).set(Shard([Sample({"x": np.zeros(300_000, np.uint8)}, f"s{i}")], f"shard_{i}"))
    stream = MessagePackDataLoader(url).get_iter(max_concurrency=4, prefetch=4)
    started: list[tuple[int, int]] = []  # (reads in flight, reads done) as each read starts
    done = 0
    original = stream.aio.store.fetch_objects

    async def counting(keys: Any, pool: Any) -> Any:
        nonlocal done
        started.append((stream.metrics.in_flight, done))
        try:
            return await original(keys, pool)
        finally:
            done += 1

    stream.aio.store.fetch_objects = counting
    assert len(stream.collect()) == 6
    assert started[1][1] >= 1  # the second read began once the first was done
    assert max(in_flight for in_flight, _ in started) <= 4


@pytest.mark.parametrize("prefetch", [2, 4, 8])
def test_prefetch_bounds_the_objects_held_ahead_of_a_sync_consumer(tmp_path, prefetch: int) -> None:
    # objects being read, read and waiting, and crossing to the consumer's thread all count against
    # `prefetch` (each holds a shard's buffer: memory is about prefetch x shard size), however slow the consumer
    url = str(tmp_path)
    for i in range(16):  # large shards (small ones are read in groups)
        samples = [Sample({"x": np.full(100_000, j, np.uint8)}, f"sh{i}_{j}") for j in range(3)]
        MessagepackStore(url).set(Shard(samples, f"shard_{i:02d}"))
    stream = MessagePackDataLoader(url).get_iter(prefetch=prefetch)
    started = 0
    original = stream.aio.store.fetch_objects

    async def counting(keys: Any, pool: Any) -> Any:
        nonlocal started
        started += len(keys)
        return await original(keys, pool)

    stream.aio.store.fetch_objects = counting
    ahead = []
    for consumed, _sample in enumerate(stream):
        if consumed % 3 == 0:  # the first sample of a shard: the consumer now holds that one
            time.sleep(0.02)  # a slow consumer: the pipeline fills up while it works
            ahead.append(started - (consumed // 3 + 1))
    assert max(ahead) == prefetch


async def test_small_objects_are_read_in_groups_and_large_ones_alone(store_url: str) -> None:
    # a store of one-sample shards streams at the speed of a record store (groups of small objects: one
    # thread hop each, or the sync consumer's own thread), while large shards are read one at a time
    from squirrel.aio import AsyncMessagepackStore

    small, large = AsyncMessagepackStore(store_url + "/small"), AsyncMessagepackStore(store_url + "/large")
    for i in range(3):
        await small.set(Shard([Sample({"i": i}, f"k{i}")], f"shard_{i}"))
        await large.set(Shard([Sample({"x": np.zeros(300_000, np.uint8)}, f"k{i}")], f"shard_{i}"))
    keys = ["shard_0", "shard_1", "shard_2"]
    blocking = store_url.startswith(("/", "memory://"))
    assert (await small.group_reader(keys) is not None) == blocking
    assert await large.group_reader(keys) is None
    if blocking:
        read = await small.group_reader(keys)
        assert read is not None
        fetched = await asyncio.to_thread(read, [*keys, "nope"])
        assert [item.key for item in fetched] == [*keys, "nope"]
        assert isinstance(fetched[-1].error, KeyError) and all(item.error is None for item in fetched[:3])
    await small.aclose()
    await large.aclose()


@pytest.mark.parametrize("buffer", [2, 7, 30, 31, 100])
@pytest.mark.parametrize("seed", [0, "run"])
def test_the_key_order_is_a_shuffle_buffers_over_the_keys(buffer: int, seed: int | str) -> None:
    # the planner inlines the buffer's pushes and drain for speed: it must draw the same order as the buffer
    from squirrel.order import ShuffleBuffer, make_rng

    keys = [f"k{i:03d}" for i in range(30)]
    shuffler: ShuffleBuffer[str] = ShuffleBuffer(buffer, make_rng(seed, 2, "keys"))
    expected = [evicted for key in keys for evicted in shuffler.push(key)] + list(shuffler.drain())
    assert plan_keys(keys, buffer, seed, 2) == expected
    assert sorted(expected) == keys


def test_groups_double_from_8_and_are_cut_as_they_are_taken() -> None:
    from squirrel.aio.pacing import groups_of

    keys = [f"k{i}" for i in range(100)]
    groups = groups_of(keys, 32)
    assert next(groups) == keys[:8]  # cut when taken: a pass over 50,000 keys starts without cutting them all
    assert [len(group) for group in groups] == [16, 32, 32, 12]
    assert list(groups_of(keys[:5], 4)) == [keys[:4], keys[4:5]] and list(groups_of([], 4)) == []


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 8, 17, 1000, 1024, 1025, 4099])
def test_shuffles_draw_what_the_standard_library_drew(size: int) -> None:
    # earlier versions drew with random.Random's randrange and shuffle; the same seed must give the same
    # order (a pass resumed after an upgrade replays it), now that the draws are inlined for speed
    import random

    from squirrel.order import ShuffleBuffer, shuffle_in_place

    items, expected = list(range(size)), list(range(size))
    shuffle_in_place(items, random.Random(f"shuffle {size}"))
    random.Random(f"shuffle {size}").shuffle(expected)
    assert items == expected

    capacity = max(size // 3, 1)
    reference, held, evicted = random.Random(size), [], []
    for item in range(size * 2):
        if len(held) < capacity:
            held.append(item)
            continue
        index = reference.randrange(capacity)
        evicted.append(held[index])
        held[index] = item
    shuffler: ShuffleBuffer[int] = ShuffleBuffer(capacity, random.Random(size))
    assert shuffler.push_all(range(size * 2)) == evicted
    one_by_one: ShuffleBuffer[int] = ShuffleBuffer(capacity, random.Random(size))
    assert [out for item in range(size * 2) for out in one_by_one.push(item)] == evicted
