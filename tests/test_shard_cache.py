"""The local cache of remote shards (`squirrel.aio.shard_cache`): on gs:// and s3:// (real servers on loopback,
behind a `FaultProxy` that counts the requests), sync and async, several processes and DataLoader workers sharing
one folder, the bound and LRU eviction, stale and corrupt entries; and local disk and memory://, which are not
cached."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pytest
import torch.utils.data

from squirrel.aio import AsyncMessagepackLoader, AsyncMessagepackStore
from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.cached_source import CachedSource, cache_writer
from squirrel.aio.shard_cache import ENTRY_SUFFIX, MAGIC, Expected, ShardCache
from squirrel.driver import CsvLoader, MessagePackDataLoader, MessagepackStore, Shard
from squirrel.index import checksum
from tests.fault_proxy import FaultProxy
from tests.helpers import make_samples, make_shards

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.sample import Sample
    from tests.server_process import LoopbackServer

SHARDS, PER_SHARD = 6, 5
LARGE = 10**8
"""A cache limit that holds everything the tests write."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """A store root in a fresh bucket of a real server, and the proxy in front of it that counts requests."""

    url: str
    server: LoopbackServer
    proxy: FaultProxy

    @property
    def options(self) -> dict[str, Any]:
        """Storage options that reach the server through the proxy."""
        return {"endpoint_url": self.proxy.url}

    def downloads(self, key: str | None = None) -> int:
        """Requests for an object's bytes so far (of `key`, or of any shard): metadata and listings not counted."""
        bucket, root = self.url.split("://", 1)[1].split("/", 1)
        if self.proxy._state.flavour == "gcs":
            return self.proxy.count(f"/download/storage/v1/b/{bucket}/o/{root}/{key or ''}", method="GET")
        index = 0 if key else self.proxy.count("_squirrel_index", method="GET")
        return self.proxy.count(f"/{bucket}/{root}/{key or ''}", method="GET") - index

    def shard_downloads(self) -> int:
        """Requests for the bytes of any shard so far (the index's not counted)."""
        return self.downloads("shard_") if self.proxy._state.flavour == "gcs" else self.downloads()


@pytest.fixture(params=[pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)])
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """``gs://<fresh bucket>/store`` or ``s3://<fresh bucket>/store``, reached through a counting proxy."""
    flavour: Literal["gcs", "s3"] = request.param
    bucket = request.getfixturevalue(f"{flavour}_bucket")
    server = request.getfixturevalue(f"{flavour}_server")
    with FaultProxy(server.url, flavour) as proxy:
        yield Remote(f"{'gs' if flavour == 'gcs' else 's3'}://{bucket}/store", server, proxy)


def write_store(remote: Remote, indexed: bool = True, shards: int = SHARDS) -> list[str]:
    """Write `shards` shards (and the index unless not `indexed`); return every sample key, sorted."""
    store = MessagepackStore(remote.url, endpoint_url=remote.server.url)
    written = make_shards(shards, PER_SHARD)
    for shard in written:
        store.set(shard)
    if indexed:
        store.write_index()
    return sorted(sample.key for shard in written for sample in shard.value)


def read_keys(remote: Remote, face: str, **knobs: Any) -> list[str]:
    """Every sample key of one pass, sorted, through the sync or the async loader."""
    if face == "sync":
        return sorted(s.key for s in MessagePackDataLoader(remote.url, **remote.options).get_iter(**knobs))

    async def run() -> list[str]:
        async with AsyncMessagepackLoader(remote.url, **remote.options) as loader:
            return sorted([s.key async for s in loader.get_iter(**knobs)])

    return asyncio.run(run())


def sample_key(sample: Sample) -> str:
    return sample.key


def entry_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{ENTRY_SUFFIX}"))


# -- later epochs read from the cache ---------------------------------------------------------------


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("indexed", [True, False], ids=["index", "listing"])
def test_a_warm_epoch_sends_no_object_request(remote: Remote, face: str, indexed: bool, tmp_path: Path) -> None:
    keys = write_store(remote, indexed)
    cache = {"cache_dir": tmp_path / "cache", "cache_limit": LARGE}
    assert read_keys(remote, face, **cache) == keys
    assert remote.shard_downloads() == SHARDS
    assert len(entry_files(tmp_path / "cache")) == SHARDS
    assert read_keys(remote, face, **cache) == keys
    assert remote.shard_downloads() == SHARDS  # the second epoch fetched no shard


def test_without_a_cache_every_epoch_fetches(remote: Remote) -> None:
    keys = write_store(remote)
    for _ in range(2):
        assert read_keys(remote, "sync") == keys
    assert remote.shard_downloads() == 2 * SHARDS


def _entry_inode(folder: Path, url: str) -> int:
    return os.stat(ShardCache(folder, LARGE).entry_path(url)).st_ino


@pytest.mark.parametrize("face", ["sync", "async"])
def test_the_store_option_caches_loaders_and_get(remote: Remote, face: str, tmp_path: Path) -> None:
    keys = write_store(remote)
    cache = {"cache_dir": str(tmp_path), "cache_limit": LARGE}
    # get asks the store for the object's metadata: straight to the server, as FaultProxy answers HEAD with
    # Content-Length 0 (s3fs would read a size of 0); a hit keeps the entry's file, a refetch replaces it
    direct = {"endpoint_url": remote.server.url, **cache}
    url = f"{remote.url}/shard_000.msgpack"
    expected = [s.key for s in make_shards(SHARDS, PER_SHARD)[0].value]
    if face == "sync":
        loader = MessagePackDataLoader(remote.url, **remote.options, **cache)
        epochs = [sorted(s.key for s in loader.get_iter()) for _ in range(2)]
        store = MessagepackStore(remote.url, **direct)
        got = [[s.key for s in store.get("shard_000")]]
        inode = _entry_inode(tmp_path, url)
        got.append([s.key for s in store.get("shard_000")])
    else:

        async def run() -> tuple[list[list[str]], list[list[str]], int]:
            async with AsyncMessagepackLoader(remote.url, **remote.options, **cache) as loader:
                epochs = [sorted([s.key async for s in loader.get_iter()]) for _ in range(2)]
            async with AsyncMessagepackStore(remote.url, **direct) as store:
                first = [s.key for s in await store.fetch("shard_000")]
                inode = _entry_inode(tmp_path, url)
                return epochs, [first, [s.key for s in await store.fetch("shard_000")]], inode

        epochs, got, inode = asyncio.run(run())
    assert epochs == [keys, keys]
    assert remote.shard_downloads() == SHARDS  # the loader's second epoch came from the cache
    assert got == [expected, expected]
    assert _entry_inode(tmp_path, url) == inode  # the second get was served from the cache


def test_get_iter_arguments_override_the_store_option(remote: Remote, tmp_path: Path) -> None:
    write_store(remote)
    loader = MessagePackDataLoader(remote.url, **remote.options, cache_dir=str(tmp_path / "a"), cache_limit=LARGE)
    list(loader.get_iter(cache_dir=tmp_path / "b"))
    assert not (tmp_path / "a").exists()
    assert len(entry_files(tmp_path / "b")) == SHARDS


def test_two_dataloader_workers_share_one_cache(remote: Remote, tmp_path: Path) -> None:
    keys = write_store(remote, shards=8)
    stream = MessagePackDataLoader(remote.url, **remote.options).get_iter(
        split_by_worker=True, cache_dir=str(tmp_path / "cache"), cache_limit=LARGE
    )
    dataset = stream.map(sample_key).to_torch_iterable()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    for epoch in range(2):
        dataset.set_epoch(epoch)
        assert sorted(key for batch in loader for key in batch) == keys
    assert remote.shard_downloads() == 8


# -- several processes -------------------------------------------------------------------------------


def _read_epochs(url: str, options: dict[str, Any], epochs: int, queue: multiprocessing.Queue) -> None:
    loader = MessagePackDataLoader(url, **options)
    queue.put([sorted(s.key for s in loader.get_iter(seed=os.getpid(), shuffle_key_buffer=8)) for _ in range(epochs)])


def test_processes_sharing_a_small_cache_read_right_and_keep_its_bound(remote: Remote, tmp_path: Path) -> None:
    keys = write_store(remote, shards=12)
    folder = tmp_path / "cache"
    shard_bytes = MessagepackStore(remote.url, endpoint_url=remote.server.url).read_bytes("shard_000")
    limit = 5 * (len(shard_bytes) + 400)  # about five entries: every process evicts for the others
    options = {**remote.options, "cache_dir": str(folder), "cache_limit": limit}
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_read_epochs, args=(remote.url, options, 3, queue)) for _ in range(4)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert all(epoch == keys for result in results for epoch in result)
    cache = ShardCache(folder, limit)
    assert 0 < cache.size() <= limit
    for path in entry_files(folder):  # every entry is whole: readable and checked
        key = next(
            k
            for k in (f"shard_{i:03d}" for i in range(12))
            if cache.entry_path(f"{remote.url}/{k}.msgpack") == str(path)
        )
        data = MessagepackStore(remote.url, endpoint_url=remote.server.url).read_bytes(key)
        assert cache.get(f"{remote.url}/{key}.msgpack", Expected(len(data), crc32c=checksum(data))) == data


def _hammer(folder: str, limit: int, worker: int, rounds: int, queue: multiprocessing.Queue) -> None:
    """Put and get a few entries over and over; report any read that was not exactly what some put wrote."""
    cache = ShardCache(folder, limit)
    payloads = {f"gs://b/o{i}": bytes([i]) * (200_000 + i) for i in range(4)}
    bad = 0
    for round_ in range(rounds):
        for url, data in payloads.items():
            expected = Expected(len(data), crc32c=checksum(data))
            if (round_ + worker) % 2:
                cache.put(url, data, expected)
            got = cache.get(url, expected)
            bad += got is not None and got != data
    queue.put(bad)


def test_concurrent_puts_and_gets_never_read_a_partial_entry(tmp_path: Path) -> None:
    folder, limit = str(tmp_path / "cache"), 650_000  # three of the four payloads fit: constant eviction
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_hammer, args=(folder, limit, i, 60, queue)) for i in range(4)]
    for process in processes:
        process.start()
    assert [queue.get(timeout=120) for _ in processes] == [0, 0, 0, 0]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert ShardCache(folder, limit).size() <= limit
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]  # no temp file left behind


# -- the bound and eviction ----------------------------------------------------------------------------


def _entry(i: int, size: int = 10_000) -> tuple[str, bytes, Expected]:
    data = bytes([i]) * size
    return f"gs://b/s{i}", data, Expected(size, crc32c=checksum(data))


def test_the_bound_holds_after_every_insert_and_the_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, 3 * 10_200)  # three entries of 10,000 bytes and their headers
    entries = [_entry(i) for i in range(5)]
    for url, data, expected in entries[:3]:
        assert cache.put(url, data, expected)
        assert cache.size() <= cache.limit
    os.utime(cache.entry_path(entries[0][0]), ns=(1, 1))  # entry 0 used long ago, 1 before 2
    os.utime(cache.entry_path(entries[1][0]), ns=(2, 2))
    os.utime(cache.entry_path(entries[2][0]), ns=(3, 3))
    assert cache.get(entries[0][0], entries[0][2]) == entries[0][1]  # a hit makes 0 the most recently used
    assert cache.put(*entries[3])
    assert cache.size() <= cache.limit
    assert cache.get(entries[1][0], entries[1][2]) is None  # 1 was the least recently used
    assert all(cache.get(url, expected) == data for url, data, expected in (entries[0], entries[2], entries[3]))


def test_an_object_larger_than_the_cache_is_not_cached(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, 5_000)
    assert not cache.put(*_entry(0))
    assert cache.size() == 0


def test_a_loader_under_a_small_limit_evicts_and_reads_right(remote: Remote, tmp_path: Path) -> None:
    keys = write_store(remote)
    limit = 2 * (len(MessagepackStore(remote.url, endpoint_url=remote.server.url).read_bytes("shard_000")) + 400)
    for _ in range(2):
        assert read_keys(remote, "sync", cache_dir=tmp_path, cache_limit=limit) == keys
        assert 0 < ShardCache(tmp_path, limit).size() <= limit
    assert len(entry_files(tmp_path)) == 2


# -- stale and corrupt entries ------------------------------------------------------------------------


def _same_size_shard(key: str, prefix: str) -> Shard:
    return Shard(make_samples(PER_SHARD, prefix=prefix), key=key)


@pytest.mark.parametrize("indexed", [True, False], ids=["index", "listing"])
def test_an_entry_of_a_rewritten_object_is_not_served(remote: Remote, indexed: bool, tmp_path: Path) -> None:
    write_store(remote, indexed)
    cache = {"cache_dir": tmp_path, "cache_limit": LARGE}
    read_keys(remote, "sync", **cache)
    store = MessagepackStore(remote.url, endpoint_url=remote.server.url)
    before = store.read_bytes("shard_001")
    store.set(_same_size_shard("shard_001", "zz1_"))  # same size, other bytes; drops the index
    assert len(store.read_bytes("shard_001")) == len(before) and store.read_bytes("shard_001") != before
    if indexed:
        store.write_index()
    keys = read_keys(remote, "sync", **cache)
    assert [k for k in keys if k.startswith("zz1_")] == [f"zz1_{i:05d}" for i in range(PER_SHARD)]
    assert not [k for k in keys if k.startswith("sh1_")]
    assert remote.downloads("shard_001") == 2 and remote.shard_downloads() == SHARDS + 1


def test_get_does_not_serve_an_entry_of_a_rewritten_object(remote: Remote, tmp_path: Path) -> None:
    write_store(remote, indexed=False)
    store = MessagepackStore(remote.url, endpoint_url=remote.server.url, cache_dir=str(tmp_path), cache_limit=LARGE)
    assert [s.key for s in store.get("shard_002")][0] == "sh2_00000"
    assert len(entry_files(tmp_path)) == 1
    MessagepackStore(remote.url, endpoint_url=remote.server.url).set(_same_size_shard("shard_002", "zz2_"))
    assert [s.key for s in store.get("shard_002")][0] == "zz2_00000"


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "garbage"])
def test_a_corrupt_entry_is_refetched_and_replaced(remote: Remote, damage: str, tmp_path: Path) -> None:
    """A flipped bit keeps the entry's length: only a store that verifies checksums checks a hit's CRC-32."""
    keys = write_store(remote)
    loader = MessagePackDataLoader(remote.url, **remote.options, verify_checksums=damage == "flipped")
    cache = {"cache_dir": tmp_path, "cache_limit": LARGE}
    assert sorted(s.key for s in loader.get_iter(**cache)) == keys
    path = ShardCache(tmp_path, LARGE).entry_path(f"{remote.url}/shard_003.msgpack")
    whole = Path(path).read_bytes()
    damaged = {
        "truncated": whole[:-7],
        "flipped": whole[:-5] + bytes([whole[-5] ^ 0xFF]) + whole[-4:],
        "empty": b"",
        "garbage": b"not a cache entry at all",
    }[damage]
    Path(path).write_bytes(damaged)
    assert sorted(s.key for s in loader.get_iter(**cache)) == keys
    assert remote.downloads("shard_003") == 2 and remote.shard_downloads() == SHARDS + 1
    assert Path(path).read_bytes() == whole  # replaced by a whole entry


def test_an_entry_that_does_not_match_the_index_is_not_written(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, LARGE)
    url, data, expected = _entry(0)
    assert not cache.put(url, data + b"x", expected)  # bytes the index does not describe
    assert not cache.put(url, data, Expected(len(data)))  # nothing to match a later read against
    assert cache.size() == 0


# -- what a hit and an insert cost, and what they still check ----------------------------------------


@pytest.mark.parametrize("pooled", [False, True], ids=["bytes", "pool"])
def test_a_hit_is_read_whole_into_the_pass_buffers(pooled: bool, tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, LARGE)
    url, data, expected = _entry(1, size=300_000)
    assert cache.put(url, data, expected)
    pool = BufferPool(2) if pooled else None
    got = cache.get(url, expected, pool)
    assert got == data
    assert isinstance(got, memoryview if pooled else bytes)  # a view of a recycled buffer, or plain bytes
    small_url, small, small_expected = _entry(3, size=1_000)
    assert cache.put(small_url, small, small_expected)
    assert type(cache.get(small_url, small_expected, pool)) is bytes  # small: read plainly, as a local read


def test_a_hit_in_the_pass_buffers_starts_where_a_buffer_starts(tmp_path: Path) -> None:
    """Whatever its header's length, a hit's bytes start a recycled buffer, as a local read's do, so the
    arrays decoded from them are as aligned (the codec aligns them from the object's start)."""
    cache = ShardCache(tmp_path, LARGE)
    data = bytes(range(256)) * 1_100  # over POOLED_BYTES
    expected = Expected(len(data), crc32c=checksum(data))
    for extra in range(16):  # headers of 16 lengths: the bytes after them at every offset modulo 16
        url = f"gs://b/{'k' * extra}"
        assert cache.put(url, data, expected)
        got = cache.get(url, expected, BufferPool(2))
        assert isinstance(got, memoryview) and got == data
        assert np.frombuffer(got, np.uint8).ctypes.data % 16 == 0


@pytest.mark.parametrize("pooled", [False, True], ids=["bytes", "pool"])
@pytest.mark.parametrize("damage", ["truncated", "appended", "flipped", "header only", "magic", "length"])
def test_a_damaged_entry_is_never_served_and_is_removed(damage: str, pooled: bool, tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, LARGE)
    url, data, expected = _entry(2, size=300_000)
    assert cache.put(url, data, expected)
    path = Path(cache.entry_path(url))
    whole = path.read_bytes()
    path.write_bytes(
        {
            "truncated": whole[:-1],
            "appended": whole + b"\0",
            "flipped": whole[:-100] + bytes([whole[-100] ^ 1]) + whole[-99:],
            "header only": whole[: len(whole) - len(data)],
            "magic": b"X" + whole[1:],
            "length": whole[: len(MAGIC)] + b"\xff\xff\xff\xff" + whole[len(MAGIC) + 4 :],
        }[damage]
    )
    assert cache.get(url, expected, BufferPool(2) if pooled else None) is None
    assert not path.exists()


def test_a_hit_is_checked_against_its_crc_only_when_asked(tmp_path: Path) -> None:
    """Without `verify` a hit's length is checked, not its bytes (what a warm pass of a store without
    ``verify_checksums`` reads); with it, a flipped bit is caught."""
    cache = ShardCache(tmp_path, LARGE)
    url, data, expected = _entry(4, size=300_000)
    assert cache.put(url, data, expected)
    path = Path(cache.entry_path(url))
    whole = path.read_bytes()
    path.write_bytes(whole[:-100] + bytes([whole[-100] ^ 1]) + whole[-99:])
    assert cache.get(url, expected, verify=False) is not None
    assert cache.get(url, expected, verify=True) is None and not path.exists()


@pytest.mark.parametrize("pooled", [False, True], ids=["bytes", "pool"])
def test_an_entry_whose_header_outgrows_the_first_read_is_served(pooled: bool, tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, LARGE)
    data = bytes(range(256)) * 40
    url, expected = "gs://b/" + "k" * 6_000, Expected(len(data), crc32c=checksum(data))
    assert cache.put(url, data, expected)
    assert cache.get(url, expected, BufferPool(2) if pooled else None) == data


def test_an_insert_that_fits_does_not_scan_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ShardCache(tmp_path, LARGE)
    scans = []
    entries = ShardCache.entries
    monkeypatch.setattr(ShardCache, "entries", lambda self: scans.append(1) or entries(self))
    for i in range(20):
        assert cache.put(*_entry(i))
    assert len(scans) == 1  # the first insert, which found no ledger; then the ledger shows room
    assert len(entry_files(tmp_path)) == 20


def test_the_ledger_never_counts_less_than_the_disk_holds(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, 3 * 10_200)  # three entries of 10,000 bytes and their headers
    entries = [_entry(i) for i in range(6)]
    for url, data, expected in entries[:3]:
        assert cache.put(url, data, expected)
    assert cache.put(*entries[0])  # replacing an entry counts its new bytes, not both
    ledger = int((tmp_path / ".lock").read_bytes())
    assert ledger == cache.size()
    os.unlink(cache.entry_path(entries[1][0]))  # gone behind the ledger's back (by hand, or a reader)
    assert int((tmp_path / ".lock").read_bytes()) > cache.size()
    assert cache.put(*entries[3])  # the ledger says full: a scan finds the room, and evicts nothing
    assert [cache.get(url, expected) is not None for url, _, expected in entries[:4]] == [True, False, True, True]
    assert cache.put(*entries[4])  # now full: the least recently used goes
    assert cache.size() <= cache.limit
    assert int((tmp_path / ".lock").read_bytes()) >= cache.size()


def test_a_folder_without_a_ledger_is_scanned(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path, 3 * 10_200)
    for i in range(3):
        assert cache.put(*_entry(i))
    (tmp_path / ".lock").write_bytes(b"")  # as an older squirrel left it
    assert cache.put(*_entry(3))
    assert cache.size() <= cache.limit
    assert len(entry_files(tmp_path)) == 3


class _HeldCache(ShardCache):
    """A cache whose inserts wait until the test lets them go (a slow disk)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, LARGE)
        self.go = threading.Event()

    def put(self, url: str, data: Any, expected: Expected) -> bool:
        assert self.go.wait(30)
        return super().put(url, data, expected)


async def test_a_miss_reaches_the_pass_before_its_entry_is_written(tmp_path: Path) -> None:
    store = AsyncMessagepackStore(f"memory://cache-behind-{os.getpid()}/store")
    await store.set(Shard(make_samples(PER_SHARD), key="a"))
    stored = await store.read_bytes("a")
    cache = _HeldCache(tmp_path)
    source = CachedSource(store, cache, {"a": Expected(len(stored), crc32c=checksum(stored))})
    try:
        [fetched] = await asyncio.wait_for(source.fetch_objects(["a"], None), 10)  # not waiting for the write
        assert fetched.error is None and fetched.data == stored
        assert not entry_files(tmp_path)
    finally:
        cache.go.set()
    # its samples are delivered once its entry is written: a pass that ends has cached what it fetched
    samples = await asyncio.to_thread(lambda: list(source.decode_object(fetched, list)))
    assert [s.key for chunk in samples for s in chunk] == [s.key for s in make_samples(PER_SHARD)]
    assert len(entry_files(tmp_path)) == 1
    await store.aclose()


def _write_in_child(folder: str, queue: multiprocessing.Queue) -> None:
    url, data, expected = _entry(7)
    queue.put(cache_writer().submit(ShardCache(folder, LARGE).put, url, data, expected).result(timeout=30))


def test_the_cache_writer_works_in_a_forked_child(tmp_path: Path) -> None:
    assert cache_writer().submit(int, 1).result(timeout=30) == 1  # the parent's threads exist before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_write_in_child, args=(str(tmp_path), queue))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(60)
    assert child.exitcode == 0
    assert len(entry_files(tmp_path)) == 1


# -- where the cache does nothing, and mistakes --------------------------------------------------------


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("where", ["local", "memory"])
def test_local_and_memory_stores_are_read_in_place(where: str, face: str, tmp_path: Path) -> None:
    store_url = str(tmp_path / "store") if where == "local" else f"memory://cache-test-{os.getpid()}-{face}/store"
    MessagepackStore(store_url).set(Shard(make_samples(3), key="a"))
    folder = tmp_path / "cache"

    async def read_async() -> list[Sample]:
        async with AsyncMessagepackLoader(store_url) as loader:
            return [s async for s in loader.get_iter(cache_dir=folder, cache_limit=LARGE)]

    if face == "sync":
        samples = list(MessagePackDataLoader(store_url).get_iter(cache_dir=folder, cache_limit=LARGE))
    else:
        samples = asyncio.run(read_async())
    assert [s.key for s in samples] == ["s00000", "s00001", "s00002"]
    assert not folder.exists()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"cache_dir": "/tmp/c"}, "needs cache_limit"),
        ({"cache_dir": "/tmp/c", "cache_limit": 0}, "needs cache_limit"),
        ({"cache_dir": "/tmp/c", "cache_limit": 1.5e9}, "positive int"),
        ({"cache_limit": 10}, "without cache_dir"),
    ],
)
def test_a_cache_without_a_bound_is_refused(tmp_path: Path, knobs: dict[str, Any], message: str) -> None:
    loader = MessagePackDataLoader(str(tmp_path))
    with pytest.raises(ValueError, match=message):
        loader.get_iter(**knobs)
    with pytest.raises(ValueError, match=message):
        MessagepackStore(str(tmp_path), **knobs)


def test_csv_streams_in_chunks_and_refuses_a_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ranged chunks"):
        CsvLoader(str(tmp_path)).get_iter(cache_dir=tmp_path / "c", cache_limit=LARGE)
