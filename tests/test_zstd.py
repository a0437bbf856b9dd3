"""compression="zstd" for every driver: round trips on local disk, memory:// and gs:// (both faces), bombs
refused at the cap (with and without a declared content size), corrupt and truncated data named, and the csv
decoder streaming a large zstd object in bounded pieces."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import zstandard

import squirrel.codec.csv as codec_csv
from squirrel.aio import AsyncCsvLoader, AsyncCsvStore, AsyncJsonlStore, AsyncMessagepackLoader, AsyncMessagepackStore
from squirrel.bulk import write_shards
from squirrel.codec import COMPRESSIONS, CsvCodec, compress, decompress
from squirrel.codec.zstd import ENTROPY_MIN_MATCH, MATCH_RICH_LEVEL, ZSTD_LEVEL, ZstdStream, zstd_parameters
from squirrel.driver import CsvStore, JsonlStore, MessagepackLoader, MessagepackStore, RecordStore, Sample, Shard
from squirrel.errors import DecodeError
from tests.helpers import assert_same_samples, make_samples, make_shards, traced_peak

MB = 1024 * 1024
SOURCE = "gs://bucket/store/shard.msgpack.zst"


def zstd_frame(data: bytes, *, declared: bool = True, level: int = ZSTD_LEVEL) -> bytes:
    """One zstd frame of `data`, with or without its content size in the header."""
    return zstandard.ZstdCompressor(level=level, write_content_size=declared, write_checksum=True).compress(data)


def zeros_frame(size: int) -> bytes:
    """A zstd frame of `size` zero bytes that declares no content size, made without holding them."""
    packer = zstandard.ZstdCompressor(level=1, write_checksum=True).compressobj()
    block = bytes(MB)
    parts = [packer.compress(block) for _ in range(size // MB)]
    return b"".join(parts) + packer.flush()


# -- the codec ------------------------------------------------------------------------------------------


def test_zstd_objects_end_in_zst_and_are_standard_frames() -> None:
    assert COMPRESSIONS["zstd"] == ".zst"
    data = b"".join(b"%06d token " % i for i in range(50_000))
    packed = compress(data, "zstd")
    assert len(packed) < len(data) // 4
    assert zstandard.ZstdDecompressor().decompress(packed) == data  # any zstd tool reads it
    assert zstandard.get_frame_parameters(packed).content_size == len(data)
    assert zstandard.get_frame_parameters(packed).has_checksum
    assert decompress(packed, "zstd", SOURCE) == data
    assert decompress(compress(b"", "zstd"), "zstd", SOURCE) == b""


def _kinds_of_data() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "tokens": np.minimum(rng.zipf(1.3, size=200_000), 50_000).astype(np.int32).tobytes(),  # rich in repeats
        "noisy": rng.integers(0, 64, size=800_000, dtype=np.uint8).tobytes(),  # entropy coding only
        "random": rng.integers(0, 256, size=800_000, dtype=np.uint8).tobytes(),  # incompressible
        "small": b"a small record " * 100,  # too small to probe
    }


@pytest.mark.parametrize(
    ("kind", "level", "min_match"),
    [
        ("tokens", MATCH_RICH_LEVEL, None),
        ("noisy", ZSTD_LEVEL, ENTROPY_MIN_MATCH),
        ("random", 1, None),
        ("small", ZSTD_LEVEL, None),
    ],
)
def test_parameters_follow_the_probes_and_frames_stay_standard(kind: str, level: int, min_match: int | None) -> None:
    """Data rich in repeats gets the lazy parse of `MATCH_RICH_LEVEL`, data that shrinks by entropy coding only
    level 3 with shorter matches, incompressible data level 1, small data `ZSTD_LEVEL`: every frame declares its
    size, ends with a checksum, and any zstd reader inflates it."""
    data = _kinds_of_data()[kind]
    chosen = zstd_parameters(data)
    expected = zstandard.ZstdCompressionParameters.from_level(level, source_size=len(data))
    assert (chosen.strategy, chosen.min_match) == (expected.strategy, min_match or expected.min_match)
    packed = compress(data, "zstd")
    header = zstandard.get_frame_parameters(packed)
    assert header.content_size == len(data) and header.has_checksum
    assert zstandard.ZstdDecompressor().decompress(packed) == data
    assert decompress(packed, "zstd", SOURCE) == data


def test_threads_inflating_at_once_each_get_their_own_content() -> None:
    """Each thread inflates with a decompressor of its own (one may not serve two threads): many objects inflated
    at once from several threads all come back whole."""
    contents = [bytes([i]) * 50_000 + b"".join(b"%d,%d;" % (i, j) for j in range(20_000)) for i in range(12)]
    packed = [compress(content, "zstd") for content in contents]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: decompress(packed[i % 12], "zstd", SOURCE), range(240)))
    assert all(out == contents[i % 12] for i, out in enumerate(got))


def test_every_frame_is_read_and_skippable_frames_are_skipped() -> None:
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"
    data = zstd_frame(b"first|") + skippable + zstd_frame(b"second|", declared=False) + zstd_frame(b"")
    assert decompress(data, "zstd", SOURCE) == b"first|second|"


def test_output_comes_in_bounded_pieces_whatever_the_chunking() -> None:
    data = bytes(range(256)) * (16 * 1024) + b"tail"  # 4 MB, very compressible
    packed = zstd_frame(data[: 3 * MB]) + zstd_frame(data[3 * MB :], declared=False)
    for size in (1, 7, 1000, 65536, len(packed)):
        stream = ZstdStream(SOURCE, piece=256 * 1024)
        pieces = [piece for start in range(0, len(packed), size) for piece in stream.feed(packed[start : start + size])]
        stream.finish()
        assert b"".join(pieces) == data
        assert max(map(len, pieces)) <= 256 * 1024


def test_a_declared_bomb_is_refused_before_inflating() -> None:
    bomb = zstd_frame(bytes(50 * MB), level=19)
    assert len(bomb) < 10_000
    error, peak = traced_peak(lambda: decompress(bomb, "zstd", SOURCE, max_size=MB))
    assert isinstance(error, DecodeError)
    assert SOURCE in str(error) and "cap" in str(error) and str(MB) in str(error) and str(50 * MB) in str(error)
    assert peak < 64 * 1024, f"a bomb whose header admits it was inflated: {peak} bytes allocated"


def test_an_undeclared_bomb_is_stopped_at_the_cap() -> None:
    bomb = zeros_frame(64 * MB)
    assert zstandard.get_frame_parameters(bomb).content_size == zstandard.CONTENTSIZE_UNKNOWN
    error, peak = traced_peak(lambda: decompress(bomb, "zstd", SOURCE, max_size=4 * MB))
    assert isinstance(error, DecodeError) and SOURCE in str(error) and f"cap of {4 * MB} bytes" in str(error)
    assert peak < 4 * MB * 9 // 8 + 2 * MB, f"a 4 MB cap let a bomb allocate {peak} bytes"


def test_a_declared_size_beyond_what_the_data_can_hold_is_corrupt() -> None:
    """A 17-byte frame whose header claims 10 MB (one RLE block of 10 bytes follows): no frame that small holds
    that much, so nothing is reserved for it."""
    header = (0xFD2FB528).to_bytes(4, "little") + bytes([0xE0]) + (10 * MB).to_bytes(8, "little")
    rle_block = ((10 << 3) | (1 << 1) | 1).to_bytes(3, "little") + b"x"
    with pytest.raises(DecodeError, match="more than zstd can expand") as info:
        decompress(header + rle_block, "zstd", SOURCE, max_size=64 * MB)
    assert SOURCE in str(info.value)


def test_truncated_zstd_is_a_decode_error_naming_the_object() -> None:
    data = b"".join(b"%06d token " % i for i in range(20_000))
    for packed in (zstd_frame(data), zstd_frame(data, declared=False)):
        for cut in itertools.chain(range(12), range(len(packed) - 6, len(packed)), [len(packed) // 2]):
            with pytest.raises(DecodeError, match="zstd") as info:
                decompress(packed[:cut], "zstd", SOURCE)
            assert SOURCE in str(info.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b"not zstd at all" + d,
        lambda d: d[:20] + bytes([d[20] ^ 0xFF]) + d[21:],
        lambda d: d[:-1] + bytes([d[-1] ^ 1]),  # the checksum
        lambda d: d + b"junk after the frame",
    ],
    ids=["magic", "block", "checksum", "trailing junk"],
)
def test_corrupt_zstd_is_a_decode_error_naming_the_object(damage: Any) -> None:
    packed = zstd_frame(b"".join(b"%06d token " % i for i in range(2000)))
    with pytest.raises(DecodeError, match="zstd") as info:
        decompress(damage(packed), "zstd", SOURCE)
    assert SOURCE in str(info.value)


# -- every driver, every filesystem, both faces ----------------------------------------------------------


@pytest.mark.parametrize("store_class", [RecordStore, MessagepackStore, JsonlStore], ids=lambda c: c.__name__)
def test_sync_round_trip(store_url: str, store_class: type[RecordStore]) -> None:
    store = store_class(store_url, compression="zstd")
    shards = make_shards(2, 4)
    for shard in shards:
        store.set(shard)
    assert store.suffix.endswith(".zst")
    got = [sample for key in store.keys() for sample in store.get(key)]
    expected = [sample for shard in shards for sample in shard.value]
    if store_class is JsonlStore:
        expected = [Sample({"image": s.value["image"].tolist(), "label": s.value["label"]}, s.key) for s in expected]
    assert_same_samples(got, expected)


@pytest.mark.parametrize("store_class", [AsyncMessagepackStore, AsyncJsonlStore], ids=lambda c: c.__name__)
async def test_async_round_trip(store_url: str, store_class: type[AsyncMessagepackStore]) -> None:
    async with store_class(store_url, "zstd") as store:
        await store.set(Shard(make_samples(5), key="only"))
        assert [key async for key in store.keys()] == ["only"]
        got = [sample async for sample in store.get("only")]
    assert [s.key for s in got] == [s.key for s in make_samples(5)]


def test_write_shards_and_loaders_read_zstd(store_url: str) -> None:
    samples = make_samples(9)
    keys = write_shards(samples, store_url, 4, compression="zstd")
    assert keys == ["shard_000000", "shard_000001", "shard_000002"]
    assert MessagepackStore(store_url, "zstd").read_index() is not None
    got = MessagepackLoader(store_url, "zstd").get_iter(max_concurrency=2).collect()
    assert_same_samples(got, samples)


async def test_async_loader_reads_zstd(store_url: str) -> None:
    write_shards(({"i": i} for i in range(7)), store_url, 3, driver="jsonl", compression="zstd")
    assert [
        s.value["i"] for key in JsonlStore(store_url, "zstd").keys() for s in JsonlStore(store_url, "zstd").get(key)
    ] == list(range(7))
    write_shards(make_samples(6), f"{store_url}/mp", 4, compression="zstd")
    async with AsyncMessagepackLoader(f"{store_url}/mp", "zstd") as loader:
        got = await loader.get_iter(max_concurrency=2).collect()
    assert_same_samples(got, make_samples(6))


def test_csv_round_trip(store_url: str) -> None:
    store = CsvStore(store_url, compression="zstd", dtypes={"label": int})
    store.set(Shard([Sample({"label": i, "text": f"row, {i}\nquoted"}, key=f"k{i}") for i in range(20)], key="part"))
    assert list(store.keys()) == ["part"]
    got = list(store.get("part"))
    assert [(s.key, s.value) for s in got] == [(f"k{i}", {"label": i, "text": f"row, {i}\nquoted"}) for i in range(20)]


async def test_async_csv_round_trip(store_url: str) -> None:
    async with AsyncCsvStore(store_url, "zstd") as store:
        await store.set(Shard([Sample({"a": i}, key=f"k{i}") for i in range(5)], key="part"))
        assert [s.value["a"] async for s in store.get("part")] == ["0", "1", "2", "3", "4"]
    async with AsyncCsvLoader(store_url, "zstd", dtypes={"a": int}) as loader:
        assert [s.value["a"] for s in await loader.get_iter().collect()] == [0, 1, 2, 3, 4]


# -- the csv decoder ---------------------------------------------------------------------------------------


def csv_rows(count: int) -> bytes:
    return b"key,value\r\n" + b"".join(b"k%08d,%d\r\n" % (i, i * 7) for i in range(count))


def test_a_large_zstd_csv_streams_in_bounded_pieces(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40 MB csv in two frames (one undeclared), read through the store in 4 MB chunks: every row, in order,
    with the decoder handed text a piece at a time (never a frame's worth at once)."""
    text = csv_rows(2_500_000)
    cut = text.index(b"\r\n", len(text) // 2) + 2
    root = str(tmp_path / "store")
    path = tmp_path / "store" / "big.csv.zst"
    path.parent.mkdir()
    path.write_bytes(zstd_frame(text[:cut]) + zstd_frame(text[cut:], declared=False))
    sizes: list[int] = []
    original = codec_csv.CsvDecoder._inflate

    def watched(self: codec_csv.CsvDecoder, chunk: Any) -> Any:
        for piece in original(self, chunk):
            sizes.append(len(piece))
            yield piece

    monkeypatch.setattr(codec_csv.CsvDecoder, "_inflate", watched)
    count = 0
    for count, sample in enumerate(CsvStore(root, "zstd").get("big"), 1):  # noqa: B007
        pass
    assert count == 2_500_000 and sample.key == "k02499999" and sample.value == {"value": str(2_499_999 * 7)}
    assert sum(sizes) == len(text) and max(sizes) <= codec_csv.PIECE_BYTES


def test_a_zstd_bomb_is_refused_at_the_cap_by_the_csv_decoder(tmp_path) -> None:
    bomb = zstandard.ZstdCompressor(level=3).compressobj()
    data = bomb.compress(b"a,b\n") + b"".join(bomb.compress(b"\n" * MB) for _ in range(64)) + bomb.flush()
    url = str(tmp_path / "bomb.csv.zst")
    with pytest.raises(DecodeError, match=r"bomb\.csv\.zst: zstd data expands past the cap of 65536 bytes"):
        CsvCodec().decode(data, url, compression="zstd", max_decompressed_size=64 * 1024)
    declared = zstd_frame(b"a,b\n" + b"1,2\n" * MB)
    with pytest.raises(DecodeError, match=r"bomb\.csv\.zst: zstd data expands past the cap of 65536 bytes"):
        CsvCodec().decode(declared, url, compression="zstd", max_decompressed_size=64 * 1024)


@pytest.mark.parametrize("cut", [0, 3, 9, -5, -1])
def test_truncated_zstd_csv_is_a_decode_error(cut: int) -> None:
    packed = zstd_frame(csv_rows(1000))
    decoder = CsvCodec().decoder("mem://x.csv.zst", "x", "zstd")
    with pytest.raises(DecodeError, match=r"mem://x\.csv\.zst: zstd data is truncated"):
        for _ in decoder.feed(packed[:cut]):
            pass
        decoder.finish()


def test_corrupt_zstd_csv_names_the_object() -> None:
    decoder = CsvCodec().decoder("mem://x.csv.zst", "x", "zstd")
    with pytest.raises(DecodeError, match=r"mem://x\.csv\.zst: corrupt zstd data"):
        list(decoder.feed(b"key,value\n1,2\n"))


def test_the_command_line_accepts_zstd() -> None:
    from squirrel.cli import build_parser

    args = build_parser().parse_args(["convert", "./src", "./dst", "--to", "jsonl", "--to-compression", "zstd"])
    assert args.to_compression == "zstd"
    assert build_parser().parse_args(["ls", "./data", "--compression", "zstd"]).compression == "zstd"
