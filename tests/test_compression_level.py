"""`compression_level`: a store writes at the level it is given (gzip 0-9, zstd 1-22), on every filesystem
and both faces, and objects written at any level read back with the default store; bad levels are refused."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from squirrel.aio import AsyncMessagepackStore
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard


def _shard() -> Shard:
    ramp = np.tile(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)  # compressible
    return Shard([Sample({"image": ramp, "label": i}, key=f"s{i:03d}") for i in range(8)], key="shard_0")


@pytest.mark.parametrize(("compression", "low", "high"), [("gzip", 1, 9), ("zstd", 1, 19)])
def test_a_higher_level_stores_no_more_and_reads_back(store_url: str, compression: str, low: int, high: int) -> None:
    sizes = {}
    for level in (low, high):
        url = f"{store_url}/level{level}"
        entries = MessagepackStore(url, compression, compression_level=level).set(_shard())
        sizes[level] = entries[0].size
        samples = list(MessagePackDataLoader(url, compression).get_iter())
        assert [s.key for s in samples] == [f"s{i:03d}" for i in range(8)]
        assert np.array_equal(samples[3].value["image"], _shard().value[3].value["image"])
    assert sizes[high] <= sizes[low]


def test_the_async_store_takes_the_level_too(store_url: str) -> None:
    async def run() -> int:
        async with AsyncMessagepackStore(store_url, "zstd", compression_level=5) as store:
            assert store.compression_level == 5
            return (await store.set(_shard()))[0].size

    assert asyncio.run(run()) > 0
    assert MessagepackStore(store_url, "zstd", compression_level=5).compression_level == 5


@pytest.mark.parametrize(
    ("compression", "level", "message"),
    [
        (None, 3, "needs a compression"),
        ("gzip", 10, "from 0 to 9"),
        ("zstd", 0, "from 1 to 22"),
        ("zstd", 23, "from 1 to 22"),
        ("zstd", 3.0, "from 1 to 22"),
    ],
)
def test_a_level_the_compression_does_not_take_is_refused(
    tmp_path: object, compression: str | None, level: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MessagepackStore(str(tmp_path), compression, compression_level=level)  # type: ignore[arg-type]
