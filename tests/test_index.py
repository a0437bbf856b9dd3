"""The store index on local disk, memory:// and gs://: round trip, keys from the index, stale and corrupt indexes."""

from __future__ import annotations

import base64
import json
from typing import Any

import google_crc32c
import pytest

from squirrel.aio import AsyncMessagepackStore
from squirrel.aio.fs import filesystem_class_and_options, split_protocol
from squirrel.driver import JsonlStore, MessagePackDataLoader, MessagepackStore, RecordStore, Sample, Shard
from squirrel.errors import DecodeError
from squirrel.index import INDEX_NAME, IndexEntry, build_index, checksum, dump_index, parse_index
from tests.helpers import make_samples


def raw_filesystem(url: str) -> tuple[Any, str]:
    """A plain sync fsspec filesystem for `url` and the store's path on it (to tamper with objects)."""
    protocol, path = split_protocol(url)
    cls, options = filesystem_class_and_options(protocol, {})
    return cls(**options), path


def fill(store: RecordStore, sizes: list[int]) -> None:
    """One shard per size, keys ``shard_<i>``."""
    for i, size in enumerate(sizes):
        store.set(Shard(make_samples(size, prefix=f"sh{i}_"), key=f"shard_{i}"))


@pytest.mark.parametrize(
    ("store_class", "compression"),
    [(MessagepackStore, None), (MessagepackStore, "gzip"), (JsonlStore, None), (RecordStore, None)],
)
def test_round_trip(store_url: str, store_class: type[RecordStore], compression: str | None) -> None:
    store = store_class(store_url, compression)
    assert store.read_index() is None
    fill(store, [3, 1, 4])
    index = store.write_index()
    expected_keys = list(store.keys())
    assert index.keys == expected_keys == sorted(expected_keys)
    assert (index.suffix, index.compression) == (store.aio.suffix, compression)
    assert store.count_samples() == 8 == index.num_samples
    fs, root = raw_filesystem(store_url)
    for entry in index.entries:
        data = fs.cat_file(f"{root}/{entry.key}{store.aio.suffix}")
        assert entry.size == len(data) and entry.crc32c == checksum(data)
        assert entry.samples == len(list(store.get(entry.key)))
    assert store.read_index() == index
    names = [name.rsplit("/", 1)[-1] for name in fs.ls(root, detail=False)]
    assert INDEX_NAME in names and not [name for name in names if name.startswith(".")]  # no temp file left


@pytest.mark.gcs
def test_checksums_match_the_ones_gcs_keeps(gcs_url: str) -> None:
    store = MessagepackStore(gcs_url)
    fill(store, [2, 5])
    fs, root = raw_filesystem(gcs_url)
    for entry in store.write_index().entries:
        assert fs.info(f"{root}/{entry.key}.msgpack")["crc32c"] == entry.crc32c


def test_checksum_is_gcs_form() -> None:
    data = b"squirrel"
    assert checksum(data) == checksum(memoryview(data)) == checksum(bytearray(data))
    assert int.from_bytes(base64.b64decode(checksum(data)), "big") == google_crc32c.value(data)


def test_keys_and_loader_follow_the_index_not_the_listing(store_url: str) -> None:
    store = MessagepackStore(store_url)
    fill(store, [2, 3])
    store.write_index()
    store.set(Shard(make_samples(4, prefix="late_"), key="shard_9"))  # valid, but written after indexing
    assert list(store.keys()) == ["shard_0", "shard_1"]
    assert MessagepackStore(store_url).count_samples() == 5
    loaded = [s.key for s in MessagePackDataLoader(store_url).get_iter()]
    assert len(loaded) == 5 and not any(key.startswith("late_") for key in loaded)
    store.write_index()
    assert list(store.keys()) == ["shard_0", "shard_1", "shard_9"]
    assert len(list(MessagePackDataLoader(store_url).get_iter())) == 9


async def test_async_store_uses_the_index(store_url: str) -> None:
    async with AsyncMessagepackStore(store_url) as store:
        assert await store.read_index() is None
        await store.set(Shard(make_samples(3), key="a"))
        index = await store.write_index()
        await store.set(Shard(make_samples(1), key="b"))
        assert [k async for k in store.keys()] == ["a"] == index.keys
        assert await store.count_samples() == 3


def test_count_without_index_says_how(store_url: str) -> None:
    store = MessagepackStore(store_url)
    fill(store, [1])
    with pytest.raises(FileNotFoundError, match="write_index"):
        store.count_samples()


def test_empty_store(store_url: str) -> None:
    store = MessagepackStore(store_url)
    assert len(store.write_index()) == 0
    assert store.count_samples() == 0 and list(store.keys()) == []


def test_known_entries_are_taken_without_reading(tmp_path) -> None:
    store = MessagepackStore(str(tmp_path))
    fill(store, [2, 3])
    truth = store.write_index()
    given = IndexEntry("shard_0", 99, truth.get("shard_0").size, "AAAAAA==")
    wrong_size = IndexEntry("shard_1", 99, 1, "AAAAAA==")
    index = store.write_index([given, wrong_size, IndexEntry("gone", 1, 1, "AAAAAA==")])
    assert index.get("shard_0") == given  # trusted: not read back
    assert index.get("shard_1") == truth.get("shard_1")  # listed size differs: read again
    assert "gone" not in index


def test_listed_shard_missing_is_a_stale_index(store_url: str) -> None:
    store = MessagepackStore(store_url)
    fill(store, [2, 2])
    store.write_index()
    store.delete("shard_1")
    with pytest.raises(KeyError, match="index is stale") as missing:
        list(MessagePackDataLoader(store_url).get_iter())
    assert "shard_1" in str(missing.value) and INDEX_NAME in str(missing.value)
    with pytest.raises(KeyError, match="index is stale"):
        list(MessagepackStore(store_url, verify_checksums=True).get("shard_1"))


def test_shard_changed_after_indexing_is_caught_with_verify_checksums(store_url: str) -> None:
    store = MessagepackStore(store_url)
    store.set(Shard([Sample({"i": 1}, key="x")], key="shard_0"))
    store.set(Shard([Sample({"i": 1}, key="y")], key="shard_1"))
    store.write_index()
    store.set(Shard([Sample({"i": 2}, key="x")], key="shard_0"))  # same size, other bytes
    store.set(Shard([Sample({"i": 1, "more": "x" * 1000}, key="y")], key="shard_1"))  # other size
    assert [s.value for s in store.get("shard_0")] == [{"i": 2}]  # not verified by default
    verified = MessagepackStore(store_url, verify_checksums=True)
    with pytest.raises(DecodeError, match="stale index") as changed:
        list(verified.get("shard_0"))
    assert f"{store_url}/shard_0.msgpack" in str(changed.value) and "crc32c" in str(changed.value)
    with pytest.raises(DecodeError, match=r"stale index.*bytes"):
        list(verified.get("shard_1"))
    with pytest.raises(DecodeError, match="stale index"):
        list(MessagePackDataLoader(store_url, verify_checksums=True).get_iter())
    store.set(Shard([Sample({"i": 3}, key="z")], key="shard_2"))
    with pytest.raises(DecodeError, match=r"stale index.*shard_2\.msgpack is not listed"):
        list(verified.get("shard_2"))
    verified.write_index()
    assert [s.value for s in verified.get("shard_0")] == [{"i": 2}]


def test_verify_checksums_passes_on_a_fresh_index(store_url: str) -> None:
    store = MessagepackStore(store_url, compression="gzip", verify_checksums=True)
    fill(store, [3, 2])
    store.write_index()
    assert len(list(MessagePackDataLoader(store_url, "gzip", verify_checksums=True).get_iter())) == 5
    assert len(list(store.get("shard_0"))) == 3


def test_corrupt_index_names_itself(store_url: str) -> None:
    store = MessagepackStore(store_url)
    fill(store, [1])
    fs, root = raw_filesystem(store_url)
    fs.pipe_file(f"{root}/{INDEX_NAME}", b'{"format": "squirrel-index", "objects": [')
    for call in (store.keys, store.read_index, store.count_samples):
        with pytest.raises(DecodeError, match="not valid JSON") as error:
            call()
        assert f"{store_url}/{INDEX_NAME}" in str(error.value)


def test_index_of_another_layout_is_refused(store_url: str) -> None:
    MessagepackStore(store_url, "gzip").write_index()
    with pytest.raises(DecodeError, match="compression='gzip'") as error:
        list(MessagepackStore(store_url).keys())
    assert INDEX_NAME in str(error.value)
    with pytest.raises(DecodeError, match=r"'\.jsonl\.gz'"):
        list(JsonlStore(store_url, "gzip").keys())


def good_document() -> dict[str, Any]:
    entries = [IndexEntry("a", 2, 10, checksum(b"a")), IndexEntry("b", 0, 0, checksum(b""))]
    return json.loads(dump_index(build_index(".msgpack", None, entries)))


def edited(change: Any) -> bytes:
    document = good_document()
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (edited(lambda d: d.update(version=2)), "unsupported version 2"),
        (edited(lambda d: d.update(version=True)), "unsupported version True"),
        (edited(lambda d: d.update(format="zarr")), "format is 'zarr'"),
        (edited(lambda d: d.update(compression="zstd")), "unknown compression"),
        (edited(lambda d: d.update(extra=1)), r"unexpected fields \['extra'\]"),
        (edited(lambda d: d.pop("suffix")), r"missing fields \['suffix'\]"),
        (edited(lambda d: d.update(objects={})), "objects must be a list"),
        (edited(lambda d: d["objects"][0].update(samples=-1)), "samples must be a non-negative integer"),
        (edited(lambda d: d["objects"][0].update(samples=True)), "samples must be a non-negative integer"),
        (edited(lambda d: d["objects"][0].update(bytes=1.5)), "bytes must be a non-negative integer"),
        (edited(lambda d: d["objects"][0].update(key="../escape")), "must not contain '/'"),
        (edited(lambda d: d["objects"][0].update(key=".hidden")), "must not start with '.'"),
        (edited(lambda d: d["objects"][0].update(crc32c="!!")), "not base64"),
        (edited(lambda d: d["objects"][0].update(crc32c="AAAA")), "base64 of 4 bytes"),
        (edited(lambda d: d["objects"][1].update(key="a")), "'a' is listed twice"),
        (edited(lambda d: d["objects"].append([])), "object #2 must be a JSON object"),
    ],
)
def test_parse_is_strict(data: bytes, complaint: str) -> None:
    with pytest.raises(DecodeError, match=complaint) as error:
        parse_index(data, "gs://b/store/_squirrel_index.json")
    assert "gs://b/store/_squirrel_index.json" in str(error.value)


def test_dump_and_parse_round_trip() -> None:
    entries = [IndexEntry("b", 3, 7, checksum(b"x")), IndexEntry("a", 1, 2, checksum(b"y"))]
    index = build_index(".jsonl.gz", "gzip", entries)
    assert index.keys == ["a", "b"]
    assert parse_index(dump_index(index), "x") == index
    empty = build_index(".msgpack", None, [])
    assert parse_index(dump_index(empty), "x") == empty
    assert repr(index) == "Index(suffix='.jsonl.gz', compression='gzip', objects=2, samples=4)"
