"""The csv driver on local disk, memory:// and gs:// (a real fake-gcs-server): round trips, single files,
chunked streaming (quoted newlines across chunk boundaries, gzip), bounded memory on a 200 MB file, and
errors that name the object and line."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import squirrel.aio.stores.csv as aio_csv
import squirrel.codec.csv as codec_csv
from squirrel.aio import AsyncCsvLoader, AsyncCsvStore
from squirrel.codec import CsvCodec
from squirrel.driver import CsvLoader, CsvStore, RecordStore, Sample, Shard
from squirrel.driver.file_driver import FileDriver
from squirrel.errors import DecodeError, EncodeError
from squirrel.iterstream.base import Composable

TRICKY = ["plain", "comma, inside", 'quote " inside', "new\nline", "crlf\r\nline", "lone\rcr", "", " spaced ", "ünï"]


def make_shard(index: int, size: int = 5) -> Shard:
    """A shard of dict samples with ints, floats and awkward strings."""
    samples = [
        Sample({"label": i, "score": i / 4, "text": TRICKY[i % len(TRICKY)]}, key=f"sh{index}_{i:03d}")
        for i in range(size)
    ]
    return Shard(samples, key=f"shard_{index:02d}")


def as_text(sample: Sample) -> dict[str, str]:
    """What a csv row gives back without dtypes: every value as a string."""
    return {name: str(value) for name, value in sample.value.items()}


def write_file(url: str, data: bytes) -> None:
    """Write raw bytes to `url` on any filesystem (through the file driver)."""
    with FileDriver(url).get_store("wb", create_if_not_exists=True) as f:
        f.write(data)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_store_round_trip(store_url: str, compression: str | None) -> None:
    store = CsvStore(store_url, compression=compression)
    shards = [make_shard(i) for i in range(3)]
    for shard in shards:
        store.set(shard)
    assert list(store.keys()) == ["shard_00", "shard_01", "shard_02"]
    for shard in shards:
        got = list(store.get(shard.key))
        assert [s.key for s in got] == [s.key for s in shard.value]
        assert [s.value for s in got] == [as_text(s) for s in shard.value]
    typed = CsvStore(store_url, compression=compression, dtypes={"label": int, "score": float})
    assert [s.value for s in typed.get("shard_01")] == [s.value for s in shards[1].value]


async def test_async_store_round_trip(store_url: str) -> None:
    async with AsyncCsvStore(store_url, dtypes={"label": int}) as store:
        await store.set(make_shard(0))
        assert [key async for key in store.keys()] == ["shard_00"]
        got = [sample async for sample in store.get("shard_00")]
        assert [s.value["label"] for s in got] == [0, 1, 2, 3, 4]
        assert [s.key for s in await store.fetch("shard_00")] == [s.key for s in got]


def test_loader_streams_every_row(store_url: str) -> None:
    for i in range(4):
        CsvStore(store_url).set(make_shard(i, size=6))
    loader = CsvLoader(store_url, dtypes={"label": int, "score": float})
    assert isinstance(loader.get_store(), RecordStore)
    it = loader.get_iter()
    assert isinstance(it, Composable)
    got = it.collect()
    assert [s.key for s in got] == [f"sh{i}_{j:03d}" for i in range(4) for j in range(6)]
    assert got[7].value == {"label": 1, "score": 0.25, "text": TRICKY[1]}
    assert [s.key for s in loader.get_iter(key_iterator=["shard_02"])] == [f"sh2_{j:03d}" for j in range(6)]
    runs = [[s.key for s in loader.get_iter(shuffle_key_buffer=4, shuffle_item_buffer=10, seed=3)] for _ in range(2)]
    assert runs[0] == runs[1] and sorted(runs[0]) == sorted(s.key for s in got) and runs[0] != [s.key for s in got]


async def test_async_loader_streams_every_row(store_url: str) -> None:
    for i in range(3):
        CsvStore(store_url, compression="gzip").set(make_shard(i))
    async with AsyncCsvLoader(store_url, compression="gzip", dtypes={"label": int}) as loader:
        got = await loader.get_iter(max_concurrency=2, prefetch=2).collect()
    assert [s.key for s in got] == [f"sh{i}_{j:03d}" for i in range(3) for j in range(5)]
    assert [s.value["label"] for s in got[:5]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz"])
def test_a_single_file_url(store_url: str, name: str) -> None:
    url = f"{store_url}/{name}"
    text = b"x,y\n1,a\n2,b\n3,c\n"
    write_file(url, gzip.compress(text) if name.endswith(".gz") else text)
    store = CsvStore(url)
    assert list(store.keys()) == ["data"]
    assert [(s.key, s.value) for s in store.get("data")] == [
        ("data:0", {"x": "1", "y": "a"}),
        ("data:1", {"x": "2", "y": "b"}),
        ("data:2", {"x": "3", "y": "c"}),
    ]
    assert [s.value["x"] for s in CsvLoader(url, dtypes={"x": int}).get_iter()] == [1, 2, 3]
    with pytest.raises(KeyError, match="only key"):
        list(store.get("other"))
    store.set(Shard([Sample({"x": 9}, key="a")], key="data"))  # rewrites the file, atomically
    assert [(s.key, s.value) for s in store.get("data")] == [("a", {"x": "9"})]
    assert list(CsvStore(f"{store_url}/absent.csv").keys()) == []
    with pytest.raises(ValueError, match="implies compression"):
        CsvStore(f"{store_url}/data.csv", compression="gzip")


def test_chunked_reads_keep_quoted_newlines(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks and pieces: records, quoted newlines and gzip members all straddle chunk boundaries."""
    monkeypatch.setattr(aio_csv, "CHUNK_BYTES", 7)
    monkeypatch.setattr(codec_csv, "PIECE_BYTES", 5)
    shard = make_shard(0, size=20)
    expected = [(s.key, as_text(s)) for s in shard.value]
    for compression in (None, "gzip"):
        store = CsvStore(store_url, compression=compression)
        store.set(shard)
        assert [(s.key, s.value) for s in store.get("shard_00")] == expected
        assert [(s.key, s.value) for s in CsvLoader(store_url, compression).get_iter()] == expected


def test_gzip_members_and_long_runs_in_tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inflating with a tiny output bound, across gzip members and chunk boundaries; truncation is caught."""
    monkeypatch.setattr(codec_csv, "PIECE_BYTES", 3)
    text = b"key,v\r\n" + b"".join(b"k%d,%s\r\n" % (i, b"a" * (i * 97 % 5000)) for i in range(40))
    data = gzip.compress(text[:1000], compresslevel=9) + gzip.compress(text[1000:], compresslevel=9)
    decoder = CsvCodec().decoder("mem://x.csv.gz", "x", "gzip")
    got = [s for start in range(0, len(data), 11) for batch in decoder.feed(data[start : start + 11]) for s in batch]
    got.extend(decoder.finish())
    assert [(s.key, s.value) for s in got] == [(s.key, s.value) for s in CsvCodec().decode(text, "mem://x.csv")]
    truncated = CsvCodec().decoder("mem://x.csv.gz", "x", "gzip")
    for _ in truncated.feed(data[:-5]):
        pass
    with pytest.raises(DecodeError, match="truncated"):
        truncated.finish()


def test_empty_shard(store_url: str) -> None:
    store = CsvStore(store_url)
    store.set(Shard([], key="empty"))
    assert list(store.keys()) == ["empty"]
    assert list(store.get("empty")) == []
    assert CsvLoader(store_url).get_iter().collect() == []


def test_malformed_row_names_object_and_line(store_url: str) -> None:
    url = f"{store_url}/bad.csv"
    write_file(url, b'key,a\nk1,"multi\nline"\nk2,1,2\n')
    with pytest.raises(DecodeError) as bad:
        list(CsvStore(url).get("bad"))
    assert url in str(bad.value) and "line 4" in str(bad.value)
    with pytest.raises(DecodeError, match="line 4"):
        CsvLoader(url).get_iter().collect()
    write_file(url, b"key,a\nk1,x\n")
    with pytest.raises(DecodeError, match=r"line 2, column 'a'"):
        list(CsvStore(url, dtypes={"a": int}).get("bad"))
    with pytest.raises(KeyError, match="nope"):
        list(CsvStore(store_url).get("nope"))


def test_encode_refuses_what_csv_cannot_hold() -> None:
    codec = CsvCodec()
    with pytest.raises(EncodeError, match="column 'image'"):
        codec.encode([Sample({"image": np.zeros((2, 2))})])
    with pytest.raises(EncodeError, match="dict values"):
        codec.encode([Sample([1, 2])])
    sample = Sample({"key": "mine", "n": np.int64(3), "none": None})
    assert codec.encode([sample]) == b"key,n,none\r\nmine,3,\r\n"  # a field called key is the key column


def test_unbalanced_quote_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_csv, "MAX_RECORD_BYTES", 100)
    with pytest.raises(DecodeError, match="unbalanced quote"):
        CsvCodec().decode(b'a,b\n"open,' + b"x\n" * 100, "mem://x.csv")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.fixed_dictionaries({"a": st.text(), "b": st.integers()}), max_size=8),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    compression=st.sampled_from([None, "gzip"]),
)
def test_any_text_survives_any_chunking(rows: list[dict], sizes: list[int], compression: str | None) -> None:
    samples = [Sample(row, key=f"k{i}") for i, row in enumerate(rows)]
    data = CsvCodec().encode(samples)
    if compression:
        data = gzip.compress(data)
    decoder = CsvCodec({"b": int}).decoder("mem://x.csv", "x", compression)
    got, start, step = [], 0, 0
    while start < len(data):
        size = sizes[step % len(sizes)]
        got.extend(s for batch in decoder.feed(data[start : start + size]) for s in batch)
        start, step = start + size, step + 1
    got.extend(decoder.finish())
    assert [(s.key, s.value) for s in got] == [(s.key, s.value) for s in samples]


def resident_bytes() -> int:
    """This process's resident memory (from /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_200_mb_file_streams_in_bounded_memory(tmp_path) -> None:
    path = tmp_path / "big.csv"
    block = b"".join(b"%d,%s,0.5\n" % (i, b"x" * 180) for i in range(5000))
    repeats = 200 * 1024 * 1024 // len(block)
    with open(path, "wb") as f:
        f.write(b"id,text,score\n")
        for _ in range(repeats):
            f.write(block)
    before = peak = resident_bytes()
    count = 0
    for sample in CsvLoader(str(path)).get_iter():  # noqa: B007 (the last sample is checked below)
        count += 1
        if count % 2000 == 0:
            peak = max(peak, resident_bytes())
    assert count == repeats * 5000
    assert sample.key == f"big:{count - 1}" and sample.value["id"] == "4999"
    assert peak - before < 64 * 1024 * 1024, f"resident memory grew by {(peak - before) / 2**20:.0f} MiB"


def write_good_and_bad_objects(root: str) -> None:
    """good.csv (2 rows), bad.csv (1 row, then a line with too many fields) and binary.csv (not text)."""
    os.makedirs(root)
    with open(os.path.join(root, "good.csv"), "w") as good:
        good.write("a,b\n1,2\n3,4\n")
    with open(os.path.join(root, "bad.csv"), "w") as bad:
        bad.write("a,b\n5,6\n7,8,9\n10,11\n")
    with open(os.path.join(root, "binary.csv"), "wb") as binary:
        binary.write(b"\xff\xfe\x00garbage\n")


def test_on_error_skip_drops_the_rest_of_a_bad_csv_object(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    root = str(tmp_path / "csvs")
    write_good_and_bad_objects(root)
    with pytest.raises(DecodeError, match=r"bad\.csv: line 3 has 3 fields"):
        CsvLoader(root).get_iter().collect()
    stream = CsvLoader(root).get_iter(on_error="skip")
    rows = sorted(sample.value["a"] for sample in stream)
    assert rows == ["1", "3"]  # bad.csv is one chunk: none of it was streamed before the bad line
    assert stream.metrics.skipped == 2
    assert "bad.csv: line 3" in caplog.text and "binary.csv" in caplog.text


async def test_async_on_error_skip_drops_the_rest_of_a_bad_csv_object(tmp_path) -> None:
    root = str(tmp_path / "csvs")
    write_good_and_bad_objects(root)
    async with AsyncCsvLoader(root) as loader:
        stream = loader.get_iter(on_error="skip", shuffle_item_buffer=3, seed=1)
        rows = sorted([sample.value["a"] async for sample in stream])
    assert rows == ["1", "3"]
    assert stream.metrics.skipped == 2
