"""The store index on local disk, memory:// and gs://: round trip, keys from the index, stale and corrupt indexes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import google_crc32c
import pytest

from squirrel._runtime import run_sync
from squirrel.aio.fs import filesystem_class_and_options
from squirrel.aio.storage_options import split_protocol
from squirrel.driver import JsonlStore, MessagePackDataLoader, MessagepackStore, RecordStore, Sample, Shard
from squirrel.errors import DecodeError
from squirrel.index import INDEX_NAME, Index, IndexEntry, build_index, checksum
from squirrel.index_format import dump_index, parse_index
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
    store.delete("shard_1", keep_index=True)  # a writer that leaves the index alone
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
    # writers that leave the index alone (as another tool's would)
    store.set(Shard([Sample({"i": 2}, key="x")], key="shard_0"), keep_index=True)  # same size, other bytes
    store.set(Shard([Sample({"i": 1, "more": "x" * 1000}, key="y")], key="shard_1"), keep_index=True)
    assert [s.value for s in store.get("shard_0")] == [{"i": 2}]  # not verified by default
    verified = MessagepackStore(store_url, verify_checksums=True)
    with pytest.raises(DecodeError, match="stale index") as changed:
        list(verified.get("shard_0"))
    assert f"{store_url}/shard_0.msgpack" in str(changed.value) and "crc32c" in str(changed.value)
    with pytest.raises(DecodeError, match=r"stale index.*bytes"):
        list(verified.get("shard_1"))
    with pytest.raises(DecodeError, match="stale index"):
        list(MessagePackDataLoader(store_url, verify_checksums=True).get_iter())
    store.set(Shard([Sample({"i": 3}, key="z")], key="shard_2"), keep_index=True)
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


def test_concurrent_first_gets_read_the_index_once(store_url: str) -> None:
    """The checksummed gets of a service's first requests wait for one read of the index, not one each."""
    fill(MessagepackStore(store_url), [1] * 20)
    store = MessagepackStore(store_url, verify_checksums=True)
    store.write_index()
    store.aio._forget_index()
    reads = []
    read_index = store.aio.read_index

    async def counted() -> Index | None:
        reads.append(1)
        return await read_index()

    store.aio.read_index = counted  # type: ignore[method-assign]

    async def all_gets() -> list[list[Sample]]:
        return await asyncio.gather(*(store.aio.fetch(f"shard_{i}") for i in range(20)))

    assert [len(samples) for samples in run_sync(all_gets())] == [1] * 20
    assert len(reads) == 1


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


def good_document(version: int = 2) -> dict[str, Any]:
    entries = [IndexEntry("a", 2, 10, checksum(b"a")), IndexEntry("b", 0, 0, checksum(b""))]
    document: dict[str, Any] = json.loads(dump_index(build_index(".msgpack", None, entries)))
    if version == 1:  # what squirrel wrote before version 2: one JSON object per object
        columns = [document.pop(name) for name in ("keys", "samples", "bytes", "crc32c")]
        rows = zip(*columns, strict=True)
        document["objects"] = [dict(zip(("key", "samples", "bytes", "crc32c"), row, strict=True)) for row in rows]
        document["version"] = 1
    return document


def edited(change: Any, version: int = 2) -> bytes:
    document = good_document(version)
    change(document)
    return json.dumps(document).encode()


def entry_set(row: int, field: str, value: Any) -> Any:
    """An edit setting `field` of the `row`-th object, in either version's layout."""

    def change(document: dict[str, Any]) -> None:
        if document["version"] == 1:
            document["objects"][row][field] = value
        else:
            document["keys" if field == "key" else field][row] = value

    return change


EITHER_VERSION = [
    (lambda d: d.update(version=3), "unsupported version 3"),
    (lambda d: d.update(version=True), "unsupported version True"),
    (lambda d: d.update(format="zarr"), "format is 'zarr'"),
    (lambda d: d.update(compression="lz4"), "unknown compression"),
    (lambda d: d.update(extra=1), r"unexpected fields \['extra'\]"),
    (lambda d: d.pop("suffix"), r"missing fields \['suffix'\]"),
    (entry_set(0, "samples", -1), "object #0 \\('a'\\): samples must be a non-negative integer"),
    (entry_set(0, "samples", True), "samples must be a non-negative integer"),
    (entry_set(1, "bytes", 1.5), "object #1 \\('b'\\): bytes must be a non-negative integer"),
    (entry_set(0, "bytes", 2**63), "bytes must be a non-negative integer"),
    (entry_set(0, "key", "../escape"), "object #0: key '../escape' must not contain '/'"),
    (entry_set(0, "key", ".hidden"), "must not start with '.'"),
    (entry_set(0, "key", 7), "key must be a str"),
    (entry_set(0, "key", "\ud800"), "not valid Unicode"),
    (entry_set(0, "crc32c", "!!"), "not base64"),
    (entry_set(0, "crc32c", "AAAA"), "base64 of 4 bytes"),
    (entry_set(1, "crc32c", "AAAAAB=="), "not canonical base64"),
    (entry_set(1, "crc32c", None), "crc32c"),
    (entry_set(1, "key", "a"), "'a' is listed twice"),
]
ONE_VERSION = [
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (edited(lambda d: d.update(objects={}), version=1), "objects must be a list"),
    (edited(lambda d: d["objects"].append([]), version=1), "object #2 must be a JSON object"),
    (edited(lambda d: d["objects"][0].pop("bytes"), version=1), r"object #0 has missing fields \['bytes'\]"),
    (edited(lambda d: d.update(keys={})), "keys must be a list"),
    (edited(lambda d: d["samples"].append(1)), "must be as long as each other, got \\[2, 3, 2, 2\\]"),
    (edited(lambda d: d.update(objects=[])), r"unexpected fields \['objects'\]"),
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("change", "complaint"), EITHER_VERSION, ids=[c for _, c in EITHER_VERSION])
def test_parse_is_strict_in_either_version(version: int, change: Any, complaint: str) -> None:
    with pytest.raises(DecodeError, match=complaint) as error:
        parse_index(edited(change, version), "gs://b/store/_squirrel_index.json")
    assert "gs://b/store/_squirrel_index.json" in str(error.value)


@pytest.mark.parametrize(("data", "complaint"), ONE_VERSION, ids=[c for _, c in ONE_VERSION])
def test_parse_is_strict(data: bytes, complaint: str) -> None:
    with pytest.raises(DecodeError, match=complaint) as error:
        parse_index(data, "gs://b/store/_squirrel_index.json")
    assert "gs://b/store/_squirrel_index.json" in str(error.value)


def test_version_1_indexes_are_still_read() -> None:
    old = parse_index(edited(lambda d: None, version=1), "x")
    assert old == parse_index(edited(lambda d: None), "x")
    assert old.keys == ["a", "b"] and [e.samples for e in old.entries] == [2, 0] and old.get("a").size == 10


def test_an_index_lists_one_value_per_line() -> None:
    entries = [IndexEntry(key, 1, 2, "AAAAAA==") for key in "ab"]
    lines = dump_index(build_index(".msgpack", None, entries)).decode().splitlines()
    assert lines == [
        '{"format": "squirrel-index", "version": 2, "suffix": ".msgpack", "compression": null,',
        *['"keys": [', '"a",', '"b"', "],"],
        *['"samples": [', "1,", "1", "],"],
        *['"bytes": [', "2,", "2", "],"],
        *['"crc32c": [', '"AAAAAA==",', '"AAAAAA=="', "]}"],
    ]


def test_dump_and_parse_round_trip() -> None:
    entries = [IndexEntry("b", 3, 7, checksum(b"x")), IndexEntry("a", 1, 2, checksum(b"y"))]
    index = build_index(".jsonl.gz", "gzip", entries)
    assert index.keys == ["a", "b"]
    assert parse_index(dump_index(index), "x") == index
    empty = build_index(".msgpack", None, [])
    assert parse_index(dump_index(empty), "x") == empty
    assert repr(index) == "Index(suffix='.jsonl.gz', compression='gzip', objects=2, samples=4)"


SOURCE = "gs://b/store/_squirrel_index.json"


def with_objects(objects: str) -> bytes:
    """A valid header whose "objects" value is the raw JSON text `objects`."""
    head = '{"format": "squirrel-index", "version": 1, "suffix": ".msgpack", "compression": null, "objects": '
    return (head + objects + "}").encode()


def entry_text(**fields: str) -> str:
    """One entry as raw JSON text: a valid one with `fields` (raw JSON values) replaced."""
    values = {"key": '"a"', "samples": "2", "bytes": "10", "crc32c": json.dumps(checksum(b"a"))} | fields
    return "{" + ", ".join(f'"{name}": {value}' for name, value in values.items()) + "}"


def one_entry(**fields: str) -> bytes:
    return with_objects(f"[{entry_text(**fields)}]")


DEEP = 100_000
MALFORMED = {
    "deep lists": (b"[" * DEEP + b"]" * DEEP, "nested deeper than"),
    "deep objects": (b'{"a": ' * DEEP + b"1" + b"}" * DEEP, "nested deeper than"),
    "deep and truncated": (b"[" * DEEP, "nested deeper than"),
    "deep in objects": (with_objects("[" * DEEP + "]" * DEEP), "nested deeper than"),
    "deep in a field": (one_entry(samples="[" * DEEP + "]" * DEEP), "nested deeper than"),
    "10**400 samples": (one_entry(samples=str(10**400)), "samples must be a non-negative integer below 2**63"),
    "2**70 bytes": (one_entry(bytes=str(2**70)), "bytes must be a non-negative integer below 2**63"),
    "2**63 bytes": (one_entry(bytes=str(2**63)), "bytes must be a non-negative integer below 2**63"),
    "5000 digits": (one_entry(samples="9" * 5000), "not valid JSON"),
    "negative bytes": (one_entry(bytes="-5"), "bytes must be a non-negative integer below 2**63"),
    "float samples": (one_entry(samples="2.0"), "samples must be a non-negative integer"),
    "1e400 bytes": (one_entry(bytes="1e400"), "bytes must be a non-negative integer"),
    "NaN samples": (one_entry(samples="NaN"), "not valid JSON"),
    "string samples": (one_entry(samples='"3"'), "samples must be a non-negative integer"),
    "null bytes": (one_entry(bytes="null"), "bytes must be a non-negative integer"),
    "int crc32c": (one_entry(crc32c="12345"), "crc32c must be base64 of 4 bytes"),
    "list crc32c": (one_entry(crc32c="[]"), "crc32c must be base64 of 4 bytes"),
    "non-canonical crc32c": (one_entry(crc32c='"AAAAAB=="'), "not canonical base64"),
    "int key": (one_entry(key="7"), "key must be a str"),
    "object key": (one_entry(key="{}"), "key must be a str"),
    "empty key": (one_entry(key='""'), "key must not be empty"),
    "long key": (one_entry(key=json.dumps("k" * 300)), "longer than"),
    "lone surrogate key": (one_entry(key='"a\\ud800"'), "not valid Unicode"),
    "total samples overflow": (
        with_objects("[" + entry_text(samples=str(2**62)) + ", " + entry_text(key='"b"', samples=str(2**62)) + "]"),
        "samples in total",
    ),
    "list compression": (edited(lambda d: d.update(compression=["gzip"])), "unknown compression"),
    "dict suffix": (edited(lambda d: d.update(suffix={})), "suffix must be a string"),
    "list format": (edited(lambda d: d.update(format=[])), "format is []"),
    "float version": (edited(lambda d: d.update(version=1.0)), "unsupported version 1.0"),
    "huge version": (edited(lambda d: d.update(version=2**70)), "unsupported version"),
    "null objects": (edited(lambda d: d.update(objects=None), version=1), "objects must be a list"),
    "null keys": (edited(lambda d: d.update(keys=None)), "keys must be a list"),
    "top-level string": (b'"squirrel-index"', "must be a JSON object"),
    "top-level number": (b"1", "must be a JSON object"),
    "top-level null": (b"null", "must be a JSON object"),
    "empty": (b"", "not valid JSON"),
    "truncated": (dump_index(build_index(".msgpack", None, [IndexEntry("a", 1, 1, checksum(b""))]))[:-20], "not valid"),
    "not UTF-8": (b'{"format": "squirrel-index\xff"}', "not valid JSON"),
    "gzip'd garbage": (gzip.compress(b"\x00garbage" * 100), "not valid JSON"),
}


@pytest.mark.parametrize(("data", "complaint"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_index_is_a_decode_error_naming_it(data: bytes, complaint: str) -> None:
    with pytest.raises(DecodeError) as error:
        parse_index(data, SOURCE)
    assert SOURCE in str(error.value)
    assert complaint in str(error.value)


def test_brackets_and_quotes_inside_strings_are_not_nesting() -> None:
    key = '"[{' * 40  # a valid key: its brackets and escaped quotes are text, not structure
    entries = [IndexEntry(key, 1, 3, checksum(b"abc")), IndexEntry("b" + "[" * 150, 0, 0, checksum(b""))]
    index = build_index(".msgpack", None, entries)
    assert parse_index(dump_index(index), SOURCE) == index


def test_largest_sane_numbers_are_accepted() -> None:
    index = build_index(".msgpack", None, [IndexEntry("a", 2**63 - 1, 2**63 - 1, checksum(b""))])
    assert parse_index(dump_index(index), SOURCE) == index


def test_deeply_nested_index_in_a_store_is_a_decode_error(store_url: str) -> None:
    store = MessagepackStore(store_url)
    fill(store, [1])
    fs, root = raw_filesystem(store_url)
    fs.pipe_file(f"{root}/{INDEX_NAME}", b"[" * DEEP + b"]" * DEEP)
    for call in (store.keys, store.read_index, store.count_samples):
        with pytest.raises(DecodeError, match="nested deeper than") as error:
            call()
        assert f"{store_url}/{INDEX_NAME}" in str(error.value)


def test_write_index_shows_a_bar_with_the_total_when_asked(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`write_index(progress=True)` counts the objects it indexes up to the listing's total (what `squirrel
    index` shows on a terminal); without it, nothing is printed."""
    store = MessagepackStore(store_url)
    for i in range(3):
        store.set(Shard(make_samples(2, prefix=f"s{i}"), key=f"shard_{i}"))
    store.write_index()
    assert capsys.readouterr().err == ""
    assert store.write_index(progress=True).num_samples == 6
    assert "3/3" in capsys.readouterr().err


def test_write_index_of_many_small_objects(store_url: str) -> None:
    # local disk and memory:// read and decode them in groups per thread hop: every object indexed once, right
    store = MessagepackStore(store_url)
    count = 300  # more than one group
    for i in range(count):
        store.set(Shard([Sample({"i": i}, f"s{i:04d}_{j}") for j in range(1 + i % 3)], f"shard_{i:04d}"))
    index = store.write_index()
    sizes = store.list_objects()
    assert [entry.key for entry in index.entries] == sorted(sizes)
    assert [entry.samples for entry in index.entries] == [1 + i % 3 for i in range(count)]
    assert all(entry.size == sizes[entry.key] for entry in index.entries)
    assert index.num_samples == sum(1 + i % 3 for i in range(count))


@pytest.mark.parametrize("indexed", [False, True], ids=["listed", "indexed"])
def test_an_index_gives_the_sizes_that_decide_grouped_reads(store_url: str, monkeypatch: Any, indexed: bool) -> None:
    # memory:// scans every object it holds for each size asked: 8 probes over 50,000 objects cost 50 ms of
    # the first sample, which the index's sizes answer for nothing
    import squirrel.aio.stores.record as record

    probed: list[list[str]] = []
    original = record.all_small
    monkeypatch.setattr(record, "all_small", lambda size, paths: probed.append(paths) or original(size, paths))
    store = MessagepackStore(store_url)
    for s in range(3):
        store.set(Shard(make_samples(2, prefix=f"s{s}_"), f"shard{s}"))
    if indexed:
        store.write_index()
    assert len(list(MessagePackDataLoader(store_url).get_iter())) == 6
    on_object_store = store_url.startswith(("gs://", "s3://"))  # read one request per object: nothing probed
    assert (probed == []) == (indexed or on_object_store)
