"""Stores on local disk, memory:// and gs:// (a real fake-gcs-server process): round trips and errors."""

from __future__ import annotations

import asyncio
import threading

import fsspec
import pytest

from squirrel.aio import AsyncJsonlStore, AsyncMessagepackStore, AsyncRecordStore
from squirrel.driver import JsonlStore, MessagepackStore, RecordStore, Sample, Shard
from squirrel.errors import DecodeError
from tests.helpers import assert_same_samples, make_samples, make_shards

SYNC_STORES = [RecordStore, MessagepackStore, JsonlStore]
ASYNC_STORES = [AsyncRecordStore, AsyncMessagepackStore, AsyncJsonlStore]


def jsonable(samples: list[Sample]) -> list[Sample]:
    """Jsonl keeps values, not dtypes: compare against the list form."""
    return [Sample({"image": s.value["image"].tolist(), "label": s.value["label"]}, s.key) for s in samples]


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("store_class", SYNC_STORES, ids=lambda c: c.__name__)
def test_sync_round_trip(store_url: str, store_class: type[RecordStore], compression: str | None) -> None:
    store = store_class(store_url, compression=compression)
    shards = make_shards(3, 5)
    for shard in shards:
        store.set(shard)
    expected = [s for shard in shards for s in shard.value]
    if store_class is JsonlStore:
        expected = jsonable(expected)
    if store_class is RecordStore:
        assert list(store.keys()) == [s.key for s in expected]
        got = [s for key in store.keys() for s in store.get(key)]
    else:
        assert list(store.keys()) == ["shard_000", "shard_001", "shard_002"]
        got = [s for key in store.keys() for s in store.get(key)]
    assert_same_samples(got, expected)
    first = next(iter(store.keys()))
    assert store.exists(first)
    store.delete(first)
    assert not store.exists(first)
    assert first not in list(store.keys())


@pytest.mark.parametrize("store_class", ASYNC_STORES, ids=lambda c: c.__name__)
async def test_async_round_trip_and_errors(store_url: str, store_class: type[AsyncRecordStore]) -> None:
    async with store_class(store_url) as store:
        assert [k async for k in store.keys()] == []
        await store.set(Shard(make_samples(4), key="only"))
        keys = [k async for k in store.keys()]
        assert keys == (["s00000", "s00001", "s00002", "s00003"] if store_class is AsyncRecordStore else ["only"])
        got = [s async for s in store.get(keys[0])]
        assert got[0].key == "s00000"
        with pytest.raises(KeyError) as missing:
            await store.fetch("nope")
        assert "nope" in str(missing.value) and store_url in str(missing.value)
        with pytest.raises(KeyError):
            await store.delete("nope")
        for bad in ["", "../x", "a/b", ".hidden", "a\\b", "a\x00b"]:
            with pytest.raises(ValueError):
                await store.fetch(bad)
            with pytest.raises(ValueError):
                await store.delete(bad)
        sample = Sample({"x": 1}, key="ok")
        sample.key = "../escape"  # mutated after construction: refused at write time
        with pytest.raises(ValueError):
            await store.set(sample)


def test_a_lone_sample_in_a_shard_store_is_a_one_sample_shard(store_url: str) -> None:
    store = MessagepackStore(store_url)
    store.set(Sample({"a": 1}, key="lonely"))
    assert list(store.keys()) == ["lonely"]
    assert [s.value for s in store.get("lonely")] == [{"a": 1}]


def test_set_refuses_other_types(store_url: str) -> None:
    with pytest.raises(TypeError, match="Sample or a Shard"):
        RecordStore(store_url).set({"not": "a sample"})


def test_keys_skip_temp_files_and_other_formats(tmp_path) -> None:
    url = str(tmp_path / "store")
    store = MessagepackStore(url)
    store.set(Shard(make_samples(2), key="real"))
    (tmp_path / "store" / ".real.msgpack.1234.tmp").write_bytes(b"partial")
    (tmp_path / "store" / "notes.txt").write_text("hello")
    (tmp_path / "store" / "other.jsonl").write_text("{}")
    assert list(store.keys()) == ["real"]
    assert list(MessagepackStore(url, compression="gzip").keys()) == []


def test_missing_store_folder_is_empty(tmp_path) -> None:
    assert list(MessagepackStore(str(tmp_path / "nothing-here")).keys()) == []


@pytest.mark.parametrize("cut", [0, 1, 10, -1])
def test_truncated_shard_names_the_object(store_url: str, cut: int) -> None:
    store = MessagepackStore(store_url)
    store.set(Shard(make_samples(3), key="victim"))
    fs, path = fsspec.core.url_to_fs(store_url)
    data = fs.cat_file(f"{path}/victim.msgpack")
    fs.pipe_file(f"{path}/victim.msgpack", data[:cut])
    with pytest.raises(DecodeError) as error:
        list(store.get("victim"))
    assert "victim.msgpack" in str(error.value)


def test_corrupt_gzip_and_jsonl_name_the_object(tmp_path) -> None:
    url = str(tmp_path)
    gz = MessagepackStore(url, compression="gzip")
    gz.set(Shard(make_samples(2), key="g"))
    (tmp_path / "g.msgpack.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DecodeError, match=r"g\.msgpack\.gz"):
        list(gz.get("g"))
    js = JsonlStore(url)
    (tmp_path / "j.jsonl").write_text('{"key": "a", "value": 1}\n{"key": "b", "value": \n')
    with pytest.raises(DecodeError, match=r"j\.jsonl: line 2"):
        list(js.get("j"))


@pytest.mark.gcs
def test_missing_bucket_is_named(gcs_server) -> None:
    store = MessagepackStore("gs://no-such-bucket-here/data")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-here"):
        list(store.keys())
    with pytest.raises(KeyError, match="no-such-bucket-here"):
        list(store.get("k"))


async def test_many_concurrent_sets_lose_nothing(store_url: str) -> None:
    async with AsyncMessagepackStore(store_url) as store:
        shards = make_shards(100, 3)
        await asyncio.gather(*(store.set(shard) for shard in shards))
        assert await store.list_keys() == [s.key for s in shards]
        for shard in shards[::17]:
            assert_same_samples(await store.fetch(shard.key), shard.value)


def test_concurrent_sets_from_threads_lose_nothing(store_url: str) -> None:
    store = MessagepackStore(store_url)
    shards = make_shards(80, 2)

    def write(part: list[Shard]) -> None:
        for shard in part:
            store.set(shard)

    threads = [threading.Thread(target=write, args=(shards[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(store.keys()) == [s.key for s in shards]


def test_sync_store_works_inside_a_running_event_loop(store_url: str) -> None:
    async def service() -> list[str]:
        store = MessagepackStore(store_url)  # blocking calls from a thread that runs its own loop
        store.set(Shard(make_samples(2), key="inside"))
        return list(store.keys())

    assert asyncio.run(service()) == ["inside"]


async def test_async_store_on_the_callers_loop_closes_its_session(gcs_url: str) -> None:
    store = AsyncMessagepackStore(gcs_url)
    await store.set(Shard(make_samples(2), key="a"))
    fs = store._fs()
    session = fs._session
    assert session is not None and not session.closed
    await store.aclose()
    assert session.closed


def test_a_record_store_shard_write_raises_its_first_error_not_a_group(store_url: str) -> None:
    """Each sample of a shard is written by its own task: a bad one raises its own error, as a single write
    does (not an ExceptionGroup), so ``except EncodeError`` and the CLI's one-line errors work."""
    from squirrel.errors import EncodeError

    store = RecordStore(store_url)
    bad = Shard([Sample({"ok": 1}, key="a"), Sample({"bad": object()}, key="b")], key="s")
    with pytest.raises(EncodeError, match="object"):
        store.set(bad)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_shard_over_a_megabyte_is_written_without_a_warning(store_url: str, face: str) -> None:
    # aiohttp warns (ResourceWarning) about a body of raw bytes over 1 MiB, which gcsfs sends for an upload:
    # under warnings-as-errors the write failed; the suite runs with -W error
    import numpy as np

    shard = Shard([Sample({"x": np.arange(3_000_000, dtype=np.uint8)}, "a")], "big")
    if face == "sync":
        MessagepackStore(store_url).set(shard)
    else:

        async def write() -> None:
            async with AsyncMessagepackStore(store_url) as store:
                await store.set(shard)

        asyncio.run(write())
    (sample,) = MessagepackStore(store_url).get("big")
    assert (sample.value["x"] == np.arange(3_000_000, dtype=np.uint8)).all()
