"""The csv driver on local disk, memory:// and gs:// (a real fake-gcs-server): round trips, single files,
chunked streaming (quoted newlines across chunk boundaries, gzip), bounded memory on a 200 MB file, and
errors that name the object and line."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
import subprocess
import sys
import time
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import squirrel.aio.stores.csv as aio_csv
import squirrel.codec.csv as codec_csv
import squirrel.codec.csv_decoder as csv_decoder
from squirrel.aio import AsyncCsvLoader, AsyncCsvStore
from squirrel.codec import CsvCodec
from squirrel.driver import CsvLoader, CsvStore, RecordStore, Sample, Shard
from squirrel.driver.file_driver import FileDriver
from squirrel.errors import DecodeError, EncodeError
from squirrel.iterstream.base import Composable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

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
    monkeypatch.setattr(csv_decoder, "PIECE_BYTES", 5)
    shard = make_shard(0, size=20)
    expected = [(s.key, as_text(s)) for s in shard.value]
    for compression in (None, "gzip"):
        store = CsvStore(store_url, compression=compression)
        store.set(shard)
        assert [(s.key, s.value) for s in store.get("shard_00")] == expected
        assert [(s.key, s.value) for s in CsvLoader(store_url, compression).get_iter()] == expected


def test_gzip_members_and_long_runs_in_tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inflating with a tiny output bound, across gzip members and chunk boundaries; truncation is caught."""
    monkeypatch.setattr(csv_decoder, "PIECE_BYTES", 3)
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
    monkeypatch.setattr(csv_decoder, "MAX_RECORD_BYTES", 100)
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


# -- a csv object replaced while it is read in chunks -------------------------------------------------


def versions() -> tuple[Shard, Shard]:
    """Two versions of shard "shard", of different lengths and values."""
    old = Shard([Sample({"v": f"old{i:04d}"}, key=f"k{i:04d}") for i in range(200)], key="shard")
    new = Shard([Sample({"v": f"new{i:06d}", "w": "x"}, key=f"k{i:04d}") for i in range(150)], key="shard")
    return old, new


def rows_of(shard: Shard) -> list[tuple[str, dict[str, str]]]:
    """(key, value as text) of each sample of `shard`."""
    return [(s.key, as_text(s)) for s in shard.value]


def assert_one_version(rows: list, error: Exception | None, url: str) -> None:
    """`rows` read while "shard" was replaced are all of one version, or a prefix of the old one ended by
    an error naming the object and saying it changed."""
    old, new = (rows_of(shard) for shard in versions())
    if error is None:
        assert rows in (old, new)
    else:
        assert isinstance(error, DecodeError) and url in str(error) and "changed" in str(error), error
        assert rows == old[: len(rows)]


def read_while_replacing(samples: Iterable[Sample], replace: Callable[[], object]) -> tuple[list, Exception | None]:
    """Consume `samples`, calling `replace` after the first one; the rows read and the error that ended it."""
    rows: list = []
    try:
        for sample in samples:
            rows.append((sample.key, sample.value))
            if len(rows) == 1:
                replace()
    except DecodeError as error:
        return rows, error
    return rows, None


def test_a_csv_replaced_during_a_read_is_one_version_or_an_error(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio_csv, "CHUNK_BYTES", 256)
    old, new = versions()
    url = f"{store_url}/shard.csv"
    store = CsvStore(store_url)
    for read in (lambda: store.get("shard"), lambda: CsvLoader(store_url).get_iter()):
        store.set(old)
        rows, error = read_while_replacing(read(), lambda: store.set(new))
        assert_one_version(rows, error, url)
    store.set(old)  # a single-file url reads the same way
    rows, error = read_while_replacing(CsvStore(url).get("shard"), lambda: store.set(new))
    assert_one_version(rows, error, url)
    store.set(old)  # unchanged, it reads whole
    assert [(s.key, s.value) for s in store.get("shard")] == rows_of(old)


def test_a_csv_rewritten_in_place_during_a_read_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not replaced but overwritten in place, same size: the file's mtime gives it away."""
    monkeypatch.setattr(aio_csv, "CHUNK_BYTES", 256)
    old, _ = versions()
    store = CsvStore(str(tmp_path))
    store.set(old)
    path = tmp_path / "shard.csv"

    def overwrite() -> None:
        time.sleep(0.05)  # file times tick coarsely (a few ms): a rewrite within the same tick would not show
        with open(path, "r+b") as f:
            f.write(f.read().replace(b"old", b"new"))

    rows, error = read_while_replacing(store.get("shard"), overwrite)
    assert isinstance(error, DecodeError) and "changed during the read" in str(error)
    assert rows == rows_of(old)[: len(rows)]


def test_a_filesystem_without_generations_compares_metadata(gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a remote filesystem without generations to pin, the object's metadata is compared after each read
    (gs:// standing in, with its generations ignored)."""
    monkeypatch.setattr(aio_csv, "GENERATION_PROTOCOLS", ())
    monkeypatch.setattr(aio_csv, "CHUNK_BYTES", 256)
    old, new = versions()
    store = CsvStore(gcs_url)
    store.set(old)
    assert [(s.key, s.value) for s in store.get("shard")] == rows_of(old)
    rows, error = read_while_replacing(store.get("shard"), lambda: store.set(new))
    assert_one_version(rows, error, f"{gcs_url}/shard.csv")
    assert error is not None


async def test_async_read_of_a_replaced_csv_is_one_version_or_an_error(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio_csv, "CHUNK_BYTES", 256)
    old, new = versions()
    async with AsyncCsvStore(store_url) as store, AsyncCsvLoader(store_url) as loader:
        for read in (lambda: store.get("shard"), lambda: loader.get_iter()):
            await store.set(old)
            rows: list = []
            error = None
            try:
                async for sample in read():
                    rows.append((sample.key, sample.value))
                    if len(rows) == 1:
                        await store.set(new)
            except DecodeError as exc:
                error = exc
            assert_one_version(rows, error, f"{store_url}/shard.csv")


# -- bare quotes, unbalanced quotes --------------------------------------------------------------------


def expected_values(text: str, width: int) -> list[dict[str, str]]:
    """The rows csv.reader finds in `text` (blank ones skipped) after the header, as padded dicts."""
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    header = rows[0]
    return [dict(zip(header, row + [""] * (width - len(row)), strict=True)) for row in rows[1:]]


def decode_in_pieces(data: bytes, sizes: list[int]) -> list[Sample]:
    """Decode `data` with `CsvDecoder`, fed in chunks of the given sizes (cycled)."""
    decoder = CsvCodec().decoder("mem://x.csv", "x")
    got: list[Sample] = []
    start, step = 0, 0
    while start < len(data):
        size = sizes[step % len(sizes)]
        got.extend(s for batch in decoder.feed(data[start : start + size]) for s in batch)
        start, step = start + size, step + 1
    got.extend(decoder.finish())
    return got


BARE_QUOTES = (
    'key,a,b\r\nk1,ab"cd,3\r\nk2,"quoted ""x""",4\nk3,x"",5\rk4,"closed"then"more,6\n\n\r\n'
    'k5,"multi\nline "" field",7\nk6,tail",8\nk7,""",9\n'
)


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 512 * 1024])
def test_bare_quotes_parse_as_csv_reader_does(piece: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec_csv, "PIECE_BYTES", piece)
        for sizes in ([1], [2, 3], [7], [len(BARE_QUOTES)]):
            got = decode_in_pieces(BARE_QUOTES.encode(), sizes)
            expected = [{**row} for row in expected_values(BARE_QUOTES, 3)]
            assert [s.key for s in got] == [row.pop("key") for row in expected]
            assert [s.value for s in got] == expected


CSV_TOKENS = ["a", "b", " ", ",", '"', "\r", "\n", "\r\n", "\n" * 70, "\r\n\n" * 30, "\r" * 65]
"""Pieces of csv text: characters that matter to quoting, and runs of blank lines long enough to be skipped."""


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(st.sampled_from(CSV_TOKENS), max_size=60).map("".join),
    sizes=st.lists(st.sampled_from([1, 2, 3, 7, 100, 10_000]), min_size=1, max_size=4),
    piece=st.sampled_from([1, 2, 5, 100, 512 * 1024]),
)
def test_any_quoting_parses_as_csv_reader_does(body: str, sizes: list[int], piece: int) -> None:
    """Bare quotes, unclosed quotes, lone CRs, runs of blank lines in and out of quoted fields: every cut
    gives csv.reader's rows."""
    width = 64
    text = ",".join(f"c{i}" for i in range(width)) + "\n" + body
    expected = expected_values(text, width)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec_csv, "PIECE_BYTES", piece)
        got = decode_in_pieces(text.encode(), sizes)
    assert [s.value for s in got] == expected


def test_bare_quotes_stream_rows_as_they_come() -> None:
    """A bare quote in an unquoted field does not hold back the rows after it until the file ends."""
    decoder = CsvCodec().decoder("mem://x.csv", "x")
    data = b'key,a\nk0,ab"cd\n' + b"".join(b"k%d,v\n" % i for i in range(1, 200_000))
    got = [
        s
        for start in range(0, len(data) // 2, 4096)
        for batch in decoder.feed(data[start : start + 4096])
        for s in batch
    ]
    assert len(got) > 90_000 and got[0].value == {"a": 'ab"cd'}


BARE_QUOTE_MEMORY = """
import resource, sys
from squirrel.driver import CsvLoader
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = 0
for sample in CsvLoader(sys.argv[1]).get_iter():
    count += 1
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(count, grown // 1024, sample.value["a"])
"""


def test_a_40_mb_file_with_bare_quotes_streams_in_bounded_memory(tmp_path) -> None:
    path = tmp_path / "quotes.csv"
    block = b"".join(b'k%d,a%d"b c"d,%s\n' % (i, i, b"x" * 60) for i in range(10_000))
    repeats = 40 * 1024 * 1024 // len(block)
    with open(path, "wb") as f:
        f.write(b"key,a,b\n")
        for _ in range(repeats):
            f.write(block)
    child = subprocess.run(
        [sys.executable, "-c", BARE_QUOTE_MEMORY, str(path)], capture_output=True, text=True, timeout=600, check=True
    )
    count, grown_mib, last = child.stdout.strip().split(maxsplit=2)
    assert int(count) == repeats * 10_000 and last == 'a9999"b c"d'
    assert int(grown_mib) < 200, f"peak resident memory grew by {grown_mib} MiB"


@pytest.mark.parametrize(
    ("opening", "more"),
    [
        (b'k1,"open,\n', b"x,y\n" * 1000),  # a quoted field that never closes
        (b'k1,"a\nb",' * 1000, b'"a\nb",' * 1000),  # a record of many short quoted fields, never ended
    ],
    ids=["long field", "many fields"],
)
def test_an_unbalanced_quote_fails_soon_after_the_record_limit(
    monkeypatch: pytest.MonkeyPatch, opening: bytes, more: bytes
) -> None:
    """A record that never ends is refused once it passes MAX_RECORD_BYTES (or csv's own field size limit),
    before the decoder has been fed much more than that."""
    monkeypatch.setattr(csv_decoder, "MAX_RECORD_BYTES", 1024 * 1024)
    decoder = CsvCodec().decoder("mem://big.csv", "big")
    fed = 0
    with pytest.raises(DecodeError, match=r"mem://big\.csv") as refused:
        for chunk in itertools.chain(
            [b"key,a\nk0,x\n" + opening], itertools.repeat(more, 64 * 1024 * 1024 // len(more))
        ):
            for _ in decoder.feed(chunk):
                pass
            fed += len(chunk)
    assert fed <= 2 * 1024 * 1024, f"fed {fed} bytes before the error"
    assert "line 3" in str(refused.value)


# -- gzip bombs and blank lines --------------------------------------------------------------------------


def gzip_of(head: bytes, filler: bytes, size: int) -> bytes:
    """A gzip member of `head` then `size` bytes of `filler` repeated, compressed without holding them."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = filler * (1024 * 1024 // len(filler))
    parts = [packer.compress(head)]
    parts.extend(packer.compress(block) for _ in range(size // len(block)))
    parts.append(packer.flush())
    return b"".join(parts)


BOMBS = {"newlines": b"\n", "crlf": b"\r\n", "zeros": b"\0", "rows": b"1,2\n"}


@pytest.mark.parametrize("filler", BOMBS.values(), ids=BOMBS.keys())
def test_a_gzip_bomb_is_refused_at_the_cap_on_every_path(tmp_path, filler: bytes) -> None:
    cap = 64 * 1024
    bomb = gzip_of(b"a,b\n", filler, 64 * 1024 * 1024)
    root = str(tmp_path / "store")
    url = f"{root}/bomb.csv.gz"
    write_file(url, bomb)
    started = time.monotonic()
    with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap of 65536 bytes"):
        CsvCodec().decode(bomb, url, compression="gzip", max_decompressed_size=cap)
    with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap"):
        AsyncCsvStore(root, "gzip", max_decompressed_size=cap).decode("bomb", bomb)
    with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap"):
        list(CsvStore(root, "gzip", max_decompressed_size=cap).get("bomb"))
    with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap"):
        CsvLoader(url, max_decompressed_size=cap).get_iter().collect()
    assert time.monotonic() - started < 10  # the cap's worth of work, not the bomb's 64 MB
    normal = make_shard(0, size=50)
    store = CsvStore(root, "gzip", max_decompressed_size=cap)
    store.set(normal)
    assert [(s.key, s.value) for s in store.get("shard_00")] == [(s.key, as_text(s)) for s in normal.value]


async def test_async_reads_refuse_a_gzip_bomb_at_the_cap(tmp_path) -> None:
    root = str(tmp_path / "store")
    write_file(f"{root}/bomb.csv.gz", gzip_of(b"a,b\n", b"\n", 64 * 1024 * 1024))
    async with AsyncCsvStore(root, "gzip", max_decompressed_size=1024 * 1024) as store:
        with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap"):
            await store.fetch("bomb")
    async with AsyncCsvLoader(root, "gzip", max_decompressed_size=1024 * 1024) as loader:
        with pytest.raises(DecodeError, match=r"bomb\.csv\.gz: gzip data expands past the cap"):
            await loader.get_iter().collect()


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_many_blank_lines_are_skipped_fast(blank: bytes) -> None:
    """64 MB of blank lines (what a small gzip bomb of newlines inflates to) cost little, and line numbers
    after them stay right."""
    lines = 32 * 1024 * 1024 // len(blank)
    data = b"a,b" + blank + b"1,2" + blank * lines + b"3,4" + blank + blank * lines + b"5,6,7" + blank
    started = time.monotonic()
    with pytest.raises(DecodeError, match=rf"line {2 * lines + 3} has 3 fields") as bad:
        decode_in_pieces(data, [4 * 1024 * 1024])
    assert time.monotonic() - started < 5, "blank lines were parsed one by one"
    assert "mem://x.csv" in str(bad.value)
    assert [s.value for s in decode_in_pieces(data[: -len(b"5,6,7" + blank)], [1024 * 1024])] == [
        {"a": "1", "b": "2"},
        {"a": "3", "b": "4"},
    ]
