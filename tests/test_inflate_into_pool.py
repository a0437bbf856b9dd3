"""Compressed objects inflate into recycled buffers, and gzip files stream from disk through the inflater.

Reading a gzip shard whole held its compressed bytes beside the inflated ones and inflated into a fresh
buffer (zeroed under the GIL): a loader's gzip pass peaked at twice a plain pass's memory. Now the inflated
bytes go into the pass's `BufferPool` and, on local disk, the file reaches the inflater a piece at a time.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import os
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zstandard

from squirrel.aio import AsyncMessagepackLoader
from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.stores.local import READ_PIECE, read_local_gzip
from squirrel.codec.compression import decompress
from squirrel.codec.gzip import gzip_inflate
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SOURCE = "gs://bucket/shard.msgpack.gz"
CAP = 64 * 1024 * 1024


def _text_like(size: int) -> bytes:
    rng = np.random.default_rng(size)
    words = [b"alpha ", b"beta ", b"gamma ", b"delta ", b"\n"]
    return b"".join(words[i] for i in rng.integers(0, len(words), size // 5))[:size]


DATA = _text_like(700_000) + np.random.default_rng(1).bytes(300_000)  # repeats, then noise
GZIP_FORMS = {
    "one member": gzip.compress(DATA),
    "stored blocks": gzip.compress(DATA, compresslevel=0),
    "two members": gzip.compress(DATA[:400_000]) + gzip.compress(DATA[400_000:]),
    "a big member, then a small one": gzip.compress(DATA[:-100]) + gzip.compress(DATA[-100:]),
}
GZIP = pytest.mark.parametrize("form", sorted(GZIP_FORMS))


def _cut(data: bytes, size: int) -> Iterator[memoryview]:
    """`data` in pieces of `size`, each a view of one buffer refilled for the next (as a file reader does)."""
    buffer = bytearray(size)
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        buffer[: len(piece)] = piece
        yield memoryview(buffer)[: len(piece)]


@GZIP
@pytest.mark.parametrize("piece", [1000, 65_535, READ_PIECE], ids=str)
@pytest.mark.parametrize("pooled", [False, True], ids=["new buffer", "pooled"])
def test_gzip_fed_in_pieces_inflates_what_was_written(form: str, piece: int, pooled: bool) -> None:
    packed = GZIP_FORMS[form]
    take = BufferPool().take if pooled else None
    out = gzip_inflate(_cut(packed, piece), len(packed), packed[-4:], SOURCE, CAP, take)
    assert bytes(out) == DATA
    assert bytes(decompress(packed, "gzip", SOURCE, CAP, take)) == DATA


def test_one_member_inflates_into_the_pool_and_more_members_move_out_of_it() -> None:
    pool = BufferPool()
    one = decompress(GZIP_FORMS["one member"], "gzip", SOURCE, CAP, pool.take)
    assert isinstance(one, memoryview) and one.obj is pool._buffers[0]  # the trailer's size: exactly the buffer
    two = decompress(GZIP_FORMS["two members"], "gzip", SOURCE, CAP, pool.take)
    assert isinstance(two, bytearray) and two == DATA  # past the trailer's word: a buffer that can grow


def test_every_truncation_fed_in_pieces_is_a_decode_error() -> None:
    packed = gzip.compress(DATA[:3000])
    for cut in range(len(packed)):
        part = packed[:cut]
        with pytest.raises(DecodeError) as info:
            gzip_inflate(_cut(part, 100), len(part), part[-4:], SOURCE, CAP, BufferPool().take)
        assert SOURCE in str(info.value), cut


def test_the_cap_holds_when_fed_in_pieces() -> None:
    bomb = gzip.compress(bytes(20 * 1024 * 1024))
    with pytest.raises(DecodeError, match="cap"):
        gzip_inflate(_cut(bomb, 100), len(bomb), bomb[-4:], SOURCE, 1024 * 1024, BufferPool().take)


@GZIP
def test_a_gzip_file_streams_into_a_recycled_buffer(tmp_path: Path, form: str) -> None:
    path = tmp_path / "shard.gz"
    path.write_bytes(GZIP_FORMS[form])
    pool = BufferPool(max_buffers=2)
    buffers = set()
    for _ in range(3):
        out = read_local_gzip(str(path), SOURCE, CAP, pool)
        assert bytes(out) == DATA
        if isinstance(out, memoryview):
            buffers.add(id(out.obj))
        del out
        gc.collect()
    assert len(buffers) == (1 if form in ("one member", "stored blocks") else 0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:100] + bytes(200) + data[300:],
        lambda data: data[:-8] + (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little") + data[-4:],
        lambda data: b"",
    ],
    ids=["truncated", "corrupt", "wrong crc", "empty"],
)
def test_a_bad_gzip_file_is_a_decode_error_naming_it(tmp_path: Path, damage: Any) -> None:
    path = tmp_path / "shard.gz"
    path.write_bytes(damage(GZIP_FORMS["one member"]))
    with pytest.raises(DecodeError) as info:
        read_local_gzip(str(path), SOURCE, CAP, BufferPool())
    assert SOURCE in str(info.value)


def test_a_missing_gzip_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_local_gzip(str(tmp_path / "none.gz"), SOURCE, CAP, BufferPool())


def test_zstd_inflates_into_the_pool_and_more_frames_move_out_of_it() -> None:
    pool = BufferPool()
    packer = zstandard.ZstdCompressor(write_content_size=True, write_checksum=True)
    one = decompress(packer.compress(DATA), "zstd", SOURCE, CAP, pool.take)
    assert isinstance(one, memoryview) and one.obj is pool._buffers[0] and bytes(one) == DATA
    two = decompress(packer.compress(DATA[:10]) + packer.compress(DATA[10:]), "zstd", SOURCE, CAP, pool.take)
    assert isinstance(two, bytearray) and two == DATA
    with pytest.raises(DecodeError, match="cap"):
        decompress(packer.compress(bytes(8 * 1024 * 1024)), "zstd", SOURCE, 1024 * 1024, pool.take)


# -- every filesystem, both faces: samples held while the pool recycles ------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("face", ["sync", "async"])
def test_held_samples_keep_their_values_while_buffers_are_recycled(store_url: str, compression: str, face: str) -> None:
    # 8 shards of 640 KB of noise: large, so a pass inflates them into its pool's recycled buffers, and reuses
    # the buffers of the samples it let go while it holds the others
    store = MessagepackStore(store_url, compression=compression)
    for s in range(8):
        store.set(Shard([Sample({"x": _noise(s * 10 + i), "n": s * 10 + i}, f"s{s}_{i}") for i in range(4)], f"sh{s}"))
    if face == "sync":
        loader = MessagePackDataLoader(store_url, compression=compression)
        kept = [sample for n, sample in enumerate(loader.get_iter(prefetch=2)) if n % 3 == 0]
    else:
        kept = asyncio.run(_every_third(store_url, compression))
    assert len(kept) == 11
    for sample in kept:
        assert (sample.value["x"] == _noise(sample.value["n"])).all()


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**62, 20_000)


async def _every_third(url: str, compression: str) -> list[Sample]:
    async with AsyncMessagepackLoader(url, compression=compression) as loader:
        return [sample async for n, sample in _enumerate(loader.get_iter(prefetch=2)) if n % 3 == 0]


async def _enumerate(stream: Any) -> Any:
    n = 0
    async for item in stream:
        yield n, item
        n += 1


def test_streaming_is_used_for_large_gzip_shards_on_local_disk(tmp_path: Path, monkeypatch: Any) -> None:
    import squirrel.aio.stores.record as record

    streamed = []
    original = record.read_local_gzip

    def watched(*args: Any) -> Any:
        streamed.append(os.path.basename(args[0]))
        return original(*args)

    monkeypatch.setattr(record, "read_local_gzip", watched)
    store = MessagepackStore(str(tmp_path), compression="gzip")
    rng = np.random.default_rng(0)
    for s in range(3):  # 640 KB of noise each: large shards, read one at a time
        store.set(Shard([Sample({"x": rng.integers(0, 256, 640_000, np.uint8), "s": s}, f"s{s}")], f"sh{s}"))
    loader = MessagePackDataLoader(str(tmp_path), compression="gzip")
    assert [sample.value["s"] for sample in loader.get_iter()] == [0, 1, 2]
    assert sorted(streamed) == ["sh0.msgpack.gz", "sh1.msgpack.gz", "sh2.msgpack.gz"]
    checked = MessagepackStore(str(tmp_path), compression="gzip", verify_checksums=True)
    checked.write_index()
    streamed.clear()
    assert len(list(MessagePackDataLoader(str(tmp_path), compression="gzip", verify_checksums=True).get_iter())) == 3
    assert streamed == []  # checked against the index first: read whole
