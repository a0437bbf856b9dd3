"""Stores written by squirrel-core 0.20.2 itself (tests/data/squirrel_core) load without conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from squirrel.driver import JsonlLoader, JsonlStore, MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.errors import DecodeError, UnsafePayloadError

DATA = Path(__file__).parent / "data" / "squirrel_core"


def test_messagepack_driver_store_loads() -> None:
    loader = MessagePackDataLoader(str(DATA / "messagepack"), format="squirrel-core")
    samples = loader.get_iter().collect()
    assert [s.key for s in samples] == [f"s{s}_{i}" for s in range(2) for i in range(3)]
    first = samples[0].value
    assert first["image"].dtype == np.uint8 and first["image"].shape == (4, 4, 3)
    expected = np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(first["image"], expected)
    assert samples[2].value["label"] == 2 and samples[2].value["score"] == np.float32(1.0)
    assert type(samples[2].value["score"]) is np.float32
    assert list(loader.get_store().keys()) == ["shard-0", "shard-1"]
    assert isinstance(loader.get_store(), MessagepackStore)


def test_jsonl_driver_store_loads() -> None:
    samples = JsonlLoader(str(DATA / "jsonl"), format="squirrel-core").get_iter().collect()
    assert [s.value for s in samples][:2] == [
        {"key": "j0_0", "label": 0, "name": "n0"},
        {"key": "j0_1", "label": 1, "name": "n1"},
    ]
    assert len(samples) == 6


def test_writing_squirrel_core_format_round_trips(tmp_path: Path) -> None:
    store = JsonlStore(str(tmp_path), format="squirrel-core")
    store.set(Shard([Sample({"key": "a", "x": 1}), Sample({"x": 2}, key="b")], key="sh"))
    assert (tmp_path / "sh.gz").exists()
    assert [s.key for s in store.get("sh")] == ["a", "sh:1"]  # no usable "key" field: "<shard>:<index>"


def test_unknown_format_and_bad_compression_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        MessagepackStore(str(tmp_path), format="parquet")
    with pytest.raises(ValueError, match="gzip"):
        MessagepackStore(str(tmp_path), compression="zstd", format="squirrel-core")


def test_a_truncated_squirrel_core_shard_is_named(tmp_path: Path) -> None:
    data = (DATA / "messagepack" / "shard-0.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[:-9])
    with pytest.raises(DecodeError, match=r"cut\.gz"):
        list(MessagepackStore(str(tmp_path), format="squirrel-core").get("cut"))


class _Canary:
    """Unpickling this creates a file: proof that data would have run code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_object_array_in_a_squirrel_core_shard_is_refused_not_run(tmp_path: Path) -> None:
    import gzip
    import pickle

    import msgpack

    canary = tmp_path / "canary"
    payload = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": pickle.dumps(_Canary(str(canary)))}
    shard = msgpack.packb({"key": "evil", "image": payload}, use_bin_type=True)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "evil.gz").write_bytes(gzip.compress(shard))
    with pytest.raises(UnsafePayloadError, match=r"evil\.gz"):
        MessagePackDataLoader(str(tmp_path / "store"), format="squirrel-core").get_iter().collect()
    assert not canary.exists()
    pickle.loads(payload[b"data"]).close()  # the same bytes, unpickled on purpose, do create it
    assert canary.exists()


def test_a_deprecated_numpy_dtype_alias_is_a_decode_error(tmp_path: Path) -> None:
    import gzip

    import msgpack

    payload = {b"nd": True, b"type": "a", b"kind": b"", b"shape": [1], b"data": b"x"}
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "odd.gz").write_bytes(gzip.compress(msgpack.packb({"key": "odd", "v": payload})))
    with pytest.raises(DecodeError, match=r"odd\.gz.*unsupported numpy dtype 'a'"):
        MessagePackDataLoader(str(tmp_path / "store"), format="squirrel-core").get_iter().collect()
