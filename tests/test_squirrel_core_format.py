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


# --- numpy in squirrel-core's jsonl: {"data": arr.tolist(), "type": arr.dtype.str, "shape": arr.shape} ----------

ARRAYS = [
    np.arange(6, dtype=np.uint8).reshape(2, 3),
    np.array([-1, 0, 2**62], dtype=np.int64),
    np.array([[1.5, -0.25]], dtype=np.float32),
    np.array([0.5, np.nan, np.inf], dtype=np.float16),
    np.array([True, False]),
    np.array(["ab", "ü😀"]),
    np.array(7, dtype=np.int16),  # 0-d
    np.zeros((0, 3), dtype=np.float64),
    np.zeros((2, 0), dtype=np.int32),
    np.array([1, 2], dtype=">i4"),  # big-endian: kept as written
]


def _write_gz_lines(folder: Path, name: str, lines: list[str]) -> None:
    import gzip

    folder.mkdir(exist_ok=True)
    (folder / f"{name}.gz").write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))


def _read_core_jsonl(folder: Path) -> list[Sample]:
    return JsonlLoader(str(folder), format="squirrel-core").get_iter().collect()


def _assert_same_array(got: object, expected: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_literal_squirrel_core_jsonl_with_arrays_decodes_to_numpy(tmp_path: Path) -> None:
    lines = [
        '{"key": "a", "image": {"data": [[1, 2, 3], [4, 5, 6]], "type": "|u1", "shape": [2, 3]}, "label": 3}',
        '{"key": "b", "nested": {"deep": [{"data": [0.5, -1.0], "type": "<f4", "shape": [2]}]}, "score": 0.25}',
        '{"key": "c", "flags": {"data": [true, false], "type": "|b1", "shape": [2]},'
        ' "names": {"data": ["x", "yz"], "type": "<U2", "shape": [2]}, "scalar": {"data": 5, "type": "<i8",'
        ' "shape": []}, "empty": {"data": [], "type": "<f8", "shape": [0, 4]}}',
    ]
    _write_gz_lines(tmp_path / "store", "shard", lines)
    a, b, c = (s.value for s in _read_core_jsonl(tmp_path / "store"))
    _assert_same_array(a["image"], np.arange(1, 7, dtype=np.uint8).reshape(2, 3))
    assert a["label"] == 3 and a["key"] == "a"
    _assert_same_array(b["nested"]["deep"][0], np.array([0.5, -1.0], dtype=np.float32))
    assert b["score"] == 0.25
    _assert_same_array(c["flags"], np.array([True, False]))
    _assert_same_array(c["names"], np.array(["x", "yz"]))
    _assert_same_array(c["scalar"], np.array(5, dtype=np.int64))
    _assert_same_array(c["empty"], np.zeros((0, 4)))


def test_arrays_and_numpy_scalars_round_trip_through_squirrel_core_jsonl(tmp_path: Path) -> None:
    store = JsonlStore(str(tmp_path), format="squirrel-core")
    value = {
        "key": "k",
        "arrays": ARRAYS,
        "nested": {"inner": {"image": ARRAYS[0]}, "list": [ARRAYS[2], [ARRAYS[4]]]},
        "scalars": [np.int8(-3), np.uint64(2**64 - 1), np.float32(0.5), np.float64(1.25), np.bool_(True)],
        "text": np.str_("plain"),
    }
    store.set(Shard([Sample(value, key="k")], key="sh"))
    (got,) = [s.value for s in store.get("sh")]
    for array, expected in zip(got["arrays"], ARRAYS, strict=True):
        _assert_same_array(array, expected)
    _assert_same_array(got["nested"]["inner"]["image"], ARRAYS[0])
    _assert_same_array(got["nested"]["list"][0], ARRAYS[2])
    _assert_same_array(got["nested"]["list"][1][0], ARRAYS[4])
    assert got["scalars"] == [-3, 2**64 - 1, 0.5, 1.25, True]  # numpy scalars are written as plain numbers
    assert [type(x) for x in got["scalars"]] == [int, int, float, float, bool]
    assert got["text"] == "plain"


def test_written_arrays_use_squirrel_core_layout_and_scalars_are_plain(tmp_path: Path) -> None:
    import gzip
    import json

    store = JsonlStore(str(tmp_path), format="squirrel-core")
    store.set(Shard([Sample({"a": np.arange(4, dtype="<i2").reshape(2, 2), "s": np.float32(0.5)}, key="x")], key="sh"))
    line = json.loads(gzip.decompress((tmp_path / "sh.gz").read_bytes()))
    assert line == {"a": {"data": [[0, 1], [2, 3]], "type": "<i2", "shape": [2, 2]}, "s": 0.5}


@pytest.mark.parametrize(
    "value",
    [np.array([object()], dtype=object), np.array([1 + 2j]), np.array([b"x"]), np.complex64(1j)],
    ids=["object", "complex", "bytes", "complex-scalar"],
)
def test_arrays_squirrel_core_jsonl_cannot_hold_are_an_encode_error(tmp_path: Path, value: object) -> None:
    from squirrel.errors import EncodeError

    with pytest.raises(EncodeError, match=r"sample 'x'.*squirrel-core jsonl"):
        JsonlStore(str(tmp_path), format="squirrel-core").set(Shard([Sample({"v": value}, key="x")], key="sh"))


BAD_ARRAYS = {
    "object dtype": ('{"data": [1], "type": "|O", "shape": [1]}', "dtype"),
    "object by name": ('{"data": [1], "type": "object", "shape": [1]}', "dtype"),
    "pickle-ish": ('{"data": [1], "type": "V8", "shape": [1]}', "dtype"),
    "structured": ('{"data": [1], "type": "[(\'a\', \'<i4\')]", "shape": [1]}', "dtype"),
    "datetime": ('{"data": [1], "type": "<M8[s]", "shape": [1]}', "dtype"),
    "garbage dtype": ('{"data": [1], "type": "not a dtype", "shape": [1]}', "dtype"),
    "non-str dtype": ('{"data": [1], "type": 4, "shape": [1]}', "dtype"),
    "shape mismatch": ('{"data": [1, 2, 3], "type": "<i8", "shape": [2]}', "shape"),
    "shape too big for data": ('{"data": [[1, 2]], "type": "<i8", "shape": [2, 2]}', "shape"),
    "ragged": ('{"data": [[1, 2], [3]], "type": "<i8", "shape": [2, 2]}', "data"),
    "negative dim": ('{"data": [], "type": "<i8", "shape": [-1]}', "shape"),
    "float dim": ('{"data": [1], "type": "<i8", "shape": [1.0]}', "shape"),
    "shape not a list": ('{"data": [1], "type": "<i8", "shape": 1}', "shape"),
    "absurd empty": ('{"data": [], "type": "<f8", "shape": [0, 100000000000000000000]}', "shape"),
    "vast str dtype": ('{"data": [""], "type": "<U99999999", "shape": [1]}', "too large"),
    "str dtype too wide": ('{"data": [""], "type": "<U999999999", "shape": [1]}', "too large"),
    "absurd ndim": ('{"data": [], "type": "<f8", "shape": [' + ",".join(["0"] * 100) + "]}", "shape"),
    "int overflow": ('{"data": [300], "type": "|u1", "shape": [1]}', "range"),
    "negative unsigned": ('{"data": [-1], "type": "<u4", "shape": [1]}', "range"),
    "floats as ints": ('{"data": [1.5], "type": "<i4", "shape": [1]}', "data"),
    "text as floats": ('{"data": ["1.5"], "type": "<f4", "shape": [1]}', "data"),
    "ints as bools": ('{"data": [1, 0], "type": "|b1", "shape": [2]}', "data"),
    "text too long": ('{"data": ["abc"], "type": "<U2", "shape": [1]}', "data"),
    "too deep": (
        '{"data": ' + "[" * 70 + "1" + "]" * 70 + ', "type": "<i8", "shape": [' + ",".join(["1"] * 70) + "]}",
        "shape",
    ),
    "dicts in data": ('{"data": [{"a": 1}], "type": "<i8", "shape": [1]}', "data"),
    "nulls in data": ('{"data": [null], "type": "<f8", "shape": [1]}', "data"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_a_bad_array_in_squirrel_core_jsonl_is_a_decode_error_naming_the_shard(tmp_path: Path, case: str) -> None:
    array, complaint = BAD_ARRAYS[case]
    _write_gz_lines(tmp_path / "store", "bad-shard", ['{"key": "ok"}', '{"key": "k", "v": ' + array + "}"])
    with pytest.raises(DecodeError) as info:
        _read_core_jsonl(tmp_path / "store")
    message = str(info.value)
    assert "bad-shard.gz" in message and "line 2" in message
    assert complaint in message
    assert len(message) < 400


def test_a_dict_with_more_than_the_array_fields_stays_a_dict(tmp_path: Path) -> None:
    value = {"data": [1], "type": "circle", "shape": [1], "colour": "red"}
    _write_gz_lines(
        tmp_path / "store", "sh", ['{"key": "k", "v": {"data": [1], "type": "circle", "shape": [1], "colour": "red"}}']
    )
    (sample,) = _read_core_jsonl(tmp_path / "store")
    assert sample.value["v"] == value
