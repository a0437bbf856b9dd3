"""The pure codecs: round trips, refusals on write, and safe failures on corrupt, truncated or hostile input.

Outside the section on declared array headers, nothing here depends on the byte layout of squirrel's messagepack
objects: hostile objects are built with `pack_value` itself (which packs `msgpack.ExtType` and plain maps as given)
or by patching a dtype string in an encoded object in place, so the tests hold for any layout that keeps the
documented contract. Declaring sizes the encoder would never write needs the layout (see that section).
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import random
import struct
import subprocess
import sys
import tracemalloc
import zlib
from typing import Any

import hypothesis.extra.numpy as hnp
import msgpack
import msgpack_numpy
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squirrel.codec import (
    COMPRESSIONS,
    JsonlCodec,
    MessagepackCodec,
    compress,
    decompress,
    pack_value,
    unpack_value,
)
from squirrel.codec.squirrel_core import SquirrelCoreMessagepackCodec
from squirrel.errors import DecodeError, EncodeError, SquirrelError, UnsafePayloadError
from squirrel.sample import Sample, validate_key
from tests.helpers import traced_peak

SOURCE = "gs://bucket/data/shard_007.msgpack"
MSGPACK = MessagepackCodec()
JSONL = JsonlCodec()
INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
MB = 1024 * 1024

HYPOTHESIS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- comparison helpers -------------------------------------------------------------------------------------------


def assert_same(expected: Any, actual: Any, path: str = "value") -> None:
    """Exact structural equality: same types (tuples come back as lists), nan-aware floats, arrays bit-identical
    with the same dtype (byte order included) and shape, numpy scalars of the same numpy type."""
    if isinstance(expected, np.ndarray):
        assert type(actual) is np.ndarray, f"{path}: {type(actual).__name__} is not an ndarray"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.dtype.str == expected.dtype.str, f"{path}: dtype.str {actual.dtype.str} != {expected.dtype.str}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
        assert_same_contents(expected, actual, path)
    elif isinstance(expected, np.generic):
        assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
        left, right = np.asarray(expected), np.asarray(actual)
        assert right.dtype == left.dtype and right.dtype.str == left.dtype.str, f"{path}: scalar dtype differs"
        assert_same_contents(left, right, path)
    elif isinstance(expected, list | tuple):
        assert type(actual) is list, f"{path}: {type(actual).__name__} is not a list"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert type(actual) is dict, f"{path}: {type(actual).__name__} is not a dict"
        assert [(type(k), k) for k in actual] == [(type(k), k) for k in expected], f"{path}: keys differ"
        for key in expected:
            assert_same(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, float):
        assert type(actual) is float, f"{path}: {type(actual).__name__} is not a float"
        if math.isnan(expected):
            assert math.isnan(actual), f"{path}: {actual!r} is not nan"
        else:
            assert actual == expected, f"{path}: {actual!r} != {expected!r}"
            assert math.copysign(1.0, actual) == math.copysign(1.0, expected), f"{path}: sign of zero differs"
    else:
        assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_same_contents(expected: np.ndarray, actual: np.ndarray, path: str) -> None:
    """Bit-identical elements (so nan, NaT and -0.0 compare exactly); structured arrays field by field, because
    numpy does not preserve the padding bytes between fields when it copies."""
    if expected.dtype.names is not None:
        for name in expected.dtype.names:
            assert_same_contents(expected[name], actual[name], f"{path}.{name}")
        return
    assert actual.tobytes() == expected.tobytes(), f"{path}: array contents differ"
    if expected.dtype.kind in "biuSU":
        assert np.array_equal(actual, expected), f"{path}: array values differ"


PLAIN_TYPES = (type(None), bool, int, float, str, bytes)


def assert_plain(value: Any, path: str = "value") -> None:
    """Only the types squirrel documents for decoded values: no object arrays, no arbitrary objects."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_plain(key, f"{path} key")
            assert_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
    elif isinstance(value, np.ndarray | np.generic):
        assert not np.asarray(value).dtype.hasobject, f"{path}: object dtype came back"
    elif isinstance(value, msgpack.Timestamp):
        pass  # msgpack's own ext type -1: a harmless value, decoded by msgpack itself (see report)
    else:
        assert type(value) in PLAIN_TYPES, f"{path}: unexpected {type(value).__name__}"


def assert_good_samples(samples: Any) -> None:
    assert isinstance(samples, list)
    for sample in samples:
        assert isinstance(sample, Sample)
        assert type(sample.key) is str
        assert_plain(sample.value)


def decode_or_decode_error(call: Any, source: str = SOURCE) -> list[Sample] | None:
    """Run a decode: it must either succeed with well-formed samples or raise `DecodeError` naming the source."""
    try:
        samples = call()
    except DecodeError as exc:
        assert source in str(exc)
        return None
    assert_good_samples(samples)
    return samples


# --- strategies ---------------------------------------------------------------------------------------------------


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


KEYS = st.text(min_size=1, max_size=12).filter(_is_valid_key)

ANY_ENDIAN_DTYPES = st.one_of(
    hnp.scalar_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(endianness="?"),
    hnp.byte_string_dtypes(endianness="?", max_len=6),
    hnp.unicode_string_dtypes(endianness="?", max_len=6),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
)

STRUCTURED_DTYPES = [
    np.dtype([("a", ">i4"), ("b", "<f8", (2, 3))]),
    np.dtype([(("Title", "t"), ">u2"), ("n", [("p", "S3"), ("q", "<U2")])]),
    np.dtype([("x", "u1"), ("y", "<i8")], align=True),
    np.dtype({"names": ["x", "y"], "formats": ["u1", ">c8"], "offsets": [0, 8], "itemsize": 24}),
    np.dtype([("when", ">M8[us]"), ("span", "<m8[D]"), ("flag", "?")]),
    np.dtype("V5"),
]
STRUCTURED = st.one_of(
    st.sampled_from(STRUCTURED_DTYPES),
    hnp.array_dtypes(subtype_strategy=hnp.scalar_dtypes(), min_size=1, max_size=3, allow_subarrays=True),
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)


def _from_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Arrays of any dtype filled with arbitrary bytes (hypothesis cannot fill every structured dtype)."""
    size = math.prod(shape) * dtype.itemsize
    return st.binary(min_size=size, max_size=size).map(lambda raw: np.frombuffer(raw, dtype).reshape(shape).copy())


def _relayout(array: np.ndarray, how: int) -> np.ndarray:
    """The same array, possibly as a non-C-contiguous view, to check encoding copes with any memory layout."""
    if array.ndim == 0 or how == 0:
        return array
    if how == 1:
        return array.T
    if how == 2:
        return array[::-1]
    return np.asfortranarray(array)


PLAIN_ARRAYS = st.tuples(ANY_ENDIAN_DTYPES, SHAPES).flatmap(lambda t: hnp.arrays(t[0], t[1]))
STRUCTURED_ARRAYS = st.tuples(STRUCTURED, SHAPES).flatmap(lambda t: _from_bytes(*t))
ARRAYS = st.builds(_relayout, st.one_of(PLAIN_ARRAYS, STRUCTURED_ARRAYS), st.integers(0, 3))
NUMPY_SCALARS = st.one_of(
    ANY_ENDIAN_DTYPES.flatmap(lambda dt: hnp.arrays(dt, ())).map(lambda a: a[()]),
    STRUCTURED.flatmap(lambda dt: _from_bytes(dt, ())).map(lambda a: a[()]),
)

INTS = st.integers(INT64_MIN, UINT64_MAX)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    st.floats(),  # nan and +-inf included
    st.text(max_size=10),
    st.binary(max_size=10),
    ARRAYS,
    NUMPY_SCALARS,
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=6), INTS), children, max_size=4),
    ),
    max_leaves=10,
)
SAMPLE_ITEMS = st.lists(st.tuples(KEYS, VALUES), max_size=4, unique_by=lambda item: item[0])


# --- messagepack round trips --------------------------------------------------------------------------------------


@HYPOTHESIS
@given(SAMPLE_ITEMS)
def test_messagepack_round_trip(items):
    samples = [Sample(value, key) for key, value in items]
    data = MSGPACK.encode(samples)
    assert isinstance(data, bytes)
    decoded = MSGPACK.decode(data, SOURCE)
    assert [s.key for s in decoded] == [key for key, _ in items]
    for (key, value), sample in zip(items, decoded, strict=True):
        assert_same(value, sample.value, key)
    assert MSGPACK.encode(decoded) == data, "re-encoding a decoded shard must give the same bytes"


@HYPOTHESIS
@given(VALUES)
def test_pack_value_round_trip(value):
    assert_same(value, unpack_value(pack_value(value), SOURCE))


def test_tuples_become_lists():
    value = (1, (2, 3), [4, (5,)], {"t": ()}, ((),))
    decoded = unpack_value(pack_value(value))
    assert decoded == [1, [2, 3], [4, [5]], {"t": []}, [[]]]
    assert type(decoded) is list
    assert type(decoded[1]) is list and type(decoded[2][1]) is list and type(decoded[3]["t"]) is list
    [sample] = MSGPACK.decode(MSGPACK.encode([Sample((1, 2), "k")]), SOURCE)
    assert type(sample.value) is list and sample.value == [1, 2]


def test_int_dict_keys_and_64_bit_ints_round_trip():
    value = {1: "one", -5: {INT64_MIN: UINT64_MAX}, "1": 1, 0: True, 2**40: 1.5}
    decoded = unpack_value(pack_value(value))
    assert_same(value, decoded)
    assert 1 in decoded and "1" in decoded


@pytest.mark.parametrize(
    "scalar",
    [
        np.int8(-3),
        np.uint64(UINT64_MAX),
        np.int64(INT64_MIN),
        np.float16(1.5),
        np.float32("nan"),
        np.float64(-0.0),
        np.longdouble(1.25),
        np.complex64(1 - 2j),
        np.complex128(complex("nan+infj")),
        np.bool_(True),
        np.datetime64("2024-02-29T12:00:00.123", "ms"),
        np.datetime64("NaT"),
        np.timedelta64(-7, "D"),
        np.str_("ünï"),
        np.bytes_(b"ab\x00c"),
        np.void(b"\x01\x02\x03"),
        np.zeros((), [("a", "<i4"), ("b", "S2")])[()],
    ],
    ids=repr,
)
def test_numpy_scalars_keep_their_type(scalar):
    decoded = unpack_value(pack_value({"s": scalar, "l": [scalar]}))
    assert_same(scalar, decoded["s"])
    assert_same(scalar, decoded["l"][0])
    assert isinstance(decoded["s"], np.generic) and not isinstance(decoded["s"], np.ndarray)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.arange(6, dtype="<u2").reshape(3, 2).T,
        np.linspace(0, 1, 5, dtype=">f8")[::2],
        np.array([b"ab", b"", b"c\x00d"]),
        np.array(["ünï", "", "x"], dtype=">U3"),
        np.zeros((0, 3), "<f4"),
        np.zeros((2, 0, 4), ">i8"),
        np.array(3.5, ">f4"),
        np.array([True, False]),
        np.zeros((2,), STRUCTURED_DTYPES[1]),
        np.ones((1,) * 16, "u1"),
    ],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_array_examples_round_trip(array):
    decoded = unpack_value(pack_value([array, {"a": array}]))
    assert_same(array, decoded[0])
    assert_same(array, decoded[1]["a"])


def test_arrays_with_many_dimensions_round_trip_or_are_refused():
    """numpy 2 allows up to 64 dimensions; such an array must round-trip, or at worst be an `EncodeError`."""
    for ndim in (32, 33, 64):
        try:
            array = np.zeros((1,) * ndim, "u1")
        except ValueError:
            continue  # this numpy does not allow so many dimensions
        try:
            data = pack_value(array)
        except EncodeError:
            continue
        assert_same(array, unpack_value(data, SOURCE))


def test_empty_shard_round_trips():
    assert MSGPACK.decode(MSGPACK.encode([]), SOURCE) == []
    assert JSONL.decode(JSONL.encode([]), SOURCE) == []


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview], ids=lambda t: t.__name__)
def test_decoded_arrays_are_read_only_zero_copy_views(buffer_type):
    arrays = [
        np.arange(12, dtype="<f4").reshape(3, 4),
        np.arange(5, dtype=">i8"),
        np.array(["a", "bc"]),
        np.zeros((2,), STRUCTURED_DTYPES[0]),
        np.array(7, "<u2"),
        np.arange(6, dtype="u1").reshape(2, 3).T,
    ]
    samples = [Sample({"x": a, "nested": [a]}, f"s{i}") for i, a in enumerate(arrays)]
    data = MSGPACK.encode(samples)
    buffer = buffer_type(bytearray(data)) if buffer_type is memoryview else buffer_type(data)
    decoded = MSGPACK.decode(buffer, SOURCE)
    for original, sample in zip(arrays, decoded, strict=True):
        for array in (sample.value["x"], sample.value["nested"][0]):
            assert_same(original, array)
            assert array.base is not None
            assert not array.flags.owndata
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array[...] = 0
    via_value = unpack_value(buffer_type(bytearray(pack_value(arrays[0]))))
    assert_same(arrays[0], via_value)
    assert via_value.base is not None and not via_value.flags.owndata and not via_value.flags.writeable


# --- jsonl ---------------------------------------------------------------------------------------------------------


JSON_ARRAY_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
)
JSON_ARRAYS = st.tuples(JSON_ARRAY_DTYPES, SHAPES).flatmap(lambda t: hnp.arrays(t[0], t[1]))
JSON_SCALARS = JSON_ARRAY_DTYPES.flatmap(lambda dt: hnp.arrays(dt, ())).map(lambda a: a[()])
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), INTS, st.floats(), st.text(max_size=10), JSON_ARRAYS, JSON_SCALARS),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=10,
)


def _as_json(value: Any) -> Any:
    """What a value looks like after a jsonl round trip."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) else k: _as_json(v) for k, v in value.items()}
    return value


@HYPOTHESIS
@given(st.lists(st.tuples(KEYS, JSON_VALUES), max_size=4, unique_by=lambda item: item[0]))
def test_jsonl_round_trip(items):
    data = JSONL.encode([Sample(value, key) for key, value in items])
    assert data.count(b"\n") == len(items)
    decoded = JSONL.decode(data, SOURCE)
    assert [s.key for s in decoded] == [key for key, _ in items]
    for (key, value), sample in zip(items, decoded, strict=True):
        assert_same(_as_json(value), sample.value, key)


def test_jsonl_arrays_come_back_as_nested_lists():
    array = np.arange(6, dtype=">i2").reshape(2, 3)
    [sample] = JSONL.decode(JSONL.encode([Sample({"a": array, "s": np.float32(0.5)}, "k")]), SOURCE)
    assert sample.value == {"a": [[0, 1, 2], [3, 4, 5]], "s": 0.5}
    assert type(sample.value["a"]) is list


def test_jsonl_int_dict_keys_come_back_as_strings():
    """Documented: JSON objects only have string keys, so int keys are not preserved by jsonl (use messagepack)."""
    [sample] = JSONL.decode(JSONL.encode([Sample({1: "a", "b": {2: [3]}}, "k")]), SOURCE)
    assert sample.value == {"1": "a", "b": {"2": [3]}}
    [sample] = MSGPACK.decode(MSGPACK.encode([Sample({1: "a", "b": {2: [3]}}, "k")]), SOURCE)
    assert sample.value == {1: "a", "b": {2: [3]}}


def test_jsonl_is_one_json_object_per_line():
    data = JSONL.encode([Sample({"t": "line\nbreak \u2028"}, "a"), Sample(1, "b\nc")])
    assert data.endswith(b"\n") and data.count(b"\n") == 2
    assert [json.loads(line) for line in data.split(b"\n") if line] == [
        {"key": "a", "value": {"t": "line\nbreak \u2028"}},
        {"key": "b\nc", "value": 1},
    ]


@pytest.mark.parametrize(
    "value",
    [b"bytes", {"nested": [b"x"]}, np.bytes_(b"ab"), bytearray(b"x"), 1 + 2j, "\ud800", object()],
    ids=repr,
)
def test_jsonl_refuses_what_json_cannot_hold(value):
    with pytest.raises(EncodeError):
        JSONL.encode([Sample(value, "k")])


# --- refusals on write ---------------------------------------------------------------------------------------------


class _Custom:
    pass


OBJECT_ARRAYS = [
    np.array([1, "a"], dtype=object),
    np.empty((0,), dtype=object),
    np.array(None, dtype=object),
    np.zeros(2, dtype=[("a", "<i4"), ("b", "O")]),
]


@pytest.mark.parametrize("codec", [MSGPACK, JSONL], ids=["msgpack", "jsonl"])
@pytest.mark.parametrize("array", OBJECT_ARRAYS, ids=lambda a: str(a.dtype))
def test_object_arrays_are_refused_on_write(codec, array):
    with pytest.raises(EncodeError, match="object"):
        codec.encode([Sample(array, "k")])
    with pytest.raises(EncodeError):
        codec.encode([Sample({"deep": [1, {"x": array}]}, "k")])


@pytest.mark.parametrize(
    "value",
    [_Custom(), {1, 2}, frozenset(), {"a": [_Custom()]}, 2**64, -(2**63) - 1, 10**30, [2**70], 1j],
    ids=repr,
)
def test_messagepack_refuses_unsupported_values(value):
    with pytest.raises(EncodeError) as info:
        pack_value(value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, SquirrelError)
    with pytest.raises(TypeError):
        MSGPACK.encode([Sample(value, "k")])


@pytest.mark.parametrize("value", [_Custom(), {1, 2}, {"a": {3}}], ids=repr)
def test_jsonl_refuses_unsupported_values(value):
    with pytest.raises(EncodeError):
        JSONL.encode([Sample(value, "k")])


def test_refusal_message_names_the_type():
    with pytest.raises(EncodeError, match="_Custom"):
        pack_value({"a": _Custom()})
    with pytest.raises(EncodeError, match="set"):
        JSONL.encode([Sample({1, 2}, "k")])


# --- hostile payloads on read -------------------------------------------------------------------------------------


def _patch_dtype(data: bytes, old: bytes = b"<i8", new: bytes = b"|O8") -> bytes:
    """Replace the one dtype string in an encoded object by another of the same length (msgpack sizes stay valid)."""
    assert np.dtype(new.decode()).hasobject
    assert data.count(old) == 1, "the dtype string must occur exactly once to patch it safely"
    return data.replace(old, new)


OBJECT_DTYPE_PAYLOADS = {
    "array": lambda: [["k", np.arange(4, dtype="<i8")]],
    "2d-array-in-dict": lambda: [["k", {"x": [np.arange(6, dtype="<i8").reshape(2, 3)]}]],
    "scalar": lambda: [["k", np.int64(7)]],
    "structured": lambda: [["k", np.zeros(3, [("a", "<i8"), ("b", "u1")])]],
    "empty-array": lambda: [["k", np.zeros((0, 2), "<i8")]],
}


@pytest.mark.parametrize("name", sorted(OBJECT_DTYPE_PAYLOADS))
def test_object_dtype_on_read_is_unsafe_payload(name):
    data = pack_value(OBJECT_DTYPE_PAYLOADS[name]())
    assert MSGPACK.decode(data, SOURCE)  # the unpatched object is fine
    hostile = _patch_dtype(data)
    with pytest.raises(UnsafePayloadError) as info:
        MSGPACK.decode(hostile, SOURCE)
    assert SOURCE in str(info.value)
    assert isinstance(info.value, DecodeError)
    with pytest.raises(UnsafePayloadError, match="object"):
        unpack_value(hostile, SOURCE)


class _CreatesFile:
    """Unpickling this opens (creates) a file: stands for any code a pickle can run."""

    def __init__(self, path: Any) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def _evil_pickle(path: Any) -> bytes:
    return pickle.dumps(_CreatesFile(path))


def test_evil_pickle_really_runs_code(tmp_path):
    """Guard for the tests below: their payloads would create the file if anything unpickled them."""
    canary = tmp_path / "sanity"
    pickle.loads(_evil_pickle(canary)).close()
    assert canary.exists()
    other = tmp_path / "sanity2"
    unpickled = msgpack_numpy.unpackb(msgpack_numpy.packb(np.array([_CreatesFile(other)], dtype=object)))
    unpickled[0].close()
    assert other.exists()


def test_msgpack_numpy_object_array_is_not_unpickled(tmp_path):
    canary = tmp_path / "pwned"
    objarr = np.array([_CreatesFile(canary)], dtype=object)
    raw = msgpack_numpy.packb(objarr)  # what msgpack-numpy writes: a map with b"kind": b"O" and pickle bytes
    assert b"kind" in raw
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(raw, SOURCE)
    assert SOURCE in str(info.value)
    # The same map inside a well-formed squirrel object: it must stay a plain map of bytes.
    encoded = msgpack_numpy.encode(objarr)
    samples = decode_or_decode_error(lambda: MSGPACK.decode(pack_value([["k", encoded]]), SOURCE))
    if samples is not None:
        [sample] = samples
        assert type(sample.value) is dict
        assert sample.value[b"kind"] == b"O"
        assert type(sample.value[b"data"]) is bytes
    # squirrel-core's reader understands msgpack-numpy maps, and must refuse this one rather than unpickle it.
    with pytest.raises(UnsafePayloadError) as info:
        SquirrelCoreMessagepackCodec().decode(raw, "gs://bucket/old/shard.gz")
    assert "gs://bucket/old/shard.gz" in str(info.value)
    assert not canary.exists()


def test_hand_built_pickle_map_is_not_unpickled(tmp_path):
    canary = tmp_path / "pwned"
    evil = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": _evil_pickle(canary)}
    for value in (evil, {"image": evil}, [evil, evil]):
        samples = decode_or_decode_error(lambda value=value: MSGPACK.decode(pack_value([["k", value]]), SOURCE))
        if samples is not None:
            assert_same(value, samples[0].value)
    plain_msgpack = msgpack.packb([["k", evil]], use_bin_type=True)
    decode_or_decode_error(lambda: MSGPACK.decode(plain_msgpack, SOURCE))
    assert not canary.exists()


# --- corrupt input -----------------------------------------------------------------------------------------------


def _small_shard() -> list[Sample]:
    return [
        Sample({"image": np.arange(12, dtype="<u2").reshape(3, 4), "label": 3, "name": "zero"}, "s0"),
        Sample(
            {
                "f": np.array([1.5, np.nan], ">f4"),
                "rec": np.zeros(2, [("a", "<i4"), ("b", "S2")]),
                "u": np.array(["ab", "ü"]),
                "empty": np.zeros((0, 2), "<i8"),
                "zero_d": np.array(9, "<i2"),
                "scalars": [np.float32(0.25), np.str_("hé"), np.int64(-1)],
            },
            "s1",
        ),
        Sample({1: b"\x00\xff", 2: [None, True, -0.0, float("inf")], "t": (1, 2)}, "s2"),
    ]


SHARD_BYTES = MSGPACK.encode(_small_shard())
GZIP_SHARD_BYTES = compress(SHARD_BYTES, "gzip")


def test_small_shard_is_sane():
    assert len(MSGPACK.decode(SHARD_BYTES, SOURCE)) == 3
    assert decompress(GZIP_SHARD_BYTES, "gzip", SOURCE) == SHARD_BYTES


def test_every_truncation_is_a_decode_error():
    for cut in range(len(SHARD_BYTES)):
        with pytest.raises(DecodeError) as info:
            MSGPACK.decode(SHARD_BYTES[:cut], SOURCE)
        assert SOURCE in str(info.value), cut


def test_every_truncation_of_gzip_shard_is_a_decode_error():
    for cut in range(len(GZIP_SHARD_BYTES)):
        with pytest.raises(DecodeError) as info:
            MSGPACK.decode(decompress(GZIP_SHARD_BYTES[:cut], "gzip", SOURCE), SOURCE)
        assert SOURCE in str(info.value), cut


@pytest.mark.parametrize("seed", range(20))
def test_random_garbage_is_a_decode_error(seed):
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randint(1, 300))
    for data in (garbage, b"\xc1" + garbage, SHARD_BYTES[:8] + garbage):
        with pytest.raises(DecodeError) as info:
            MSGPACK.decode(data, SOURCE)
        assert SOURCE in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x90", b"\xc1", b"[]", b'{"key": "a", "value": 1}\n', gzip.compress(SHARD_BYTES)],
    ids=repr,
)
def test_foreign_bytes_are_a_decode_error(data):
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(data, SOURCE)
    assert SOURCE in str(info.value)


NOT_A_LIST_OF_PAIRS = {
    "dict": {"a": 1},
    "str": "ab",
    "none": None,
    "int": 5,
    "bytes": b"ab",
    "array": np.arange(3),
    "list of ints": [1, 2],
    "list of two-char strings": ["ab", "cd"],
    "list of two-key dicts": [{"a": 1, "b": 2}],
    "pair with int key": [[1, "v"]],
    "pair with None key": [[None, "v"]],
    "pair with bytes key": [[b"k", "v"]],
    "pair with list key": [[["k"], "v"]],
    "pair with key ../x": [["../x", "v"]],
    "pair with key a/b": [["a/b", "v"]],
    "pair with empty key": [["", "v"]],
    "pair with dot key": [[".hidden", "v"]],
    "pair with NUL key": [["a\x00", "v"]],
    "pair with too long key": [["k" * 300, "v"]],
    "three-item pair": [["k", 1, 2]],
    "one-item pair": [["k"]],
    "empty pair": [[]],
    "good then bad": [["good", 1], ["bad/key", 2]],
    "pairs nested once more": [[["k", 1]]],
}


@pytest.mark.parametrize("name", sorted(NOT_A_LIST_OF_PAIRS))
def test_valid_object_that_is_not_a_list_of_pairs_is_a_decode_error(name):
    data = pack_value(NOT_A_LIST_OF_PAIRS[name])
    assert_same(NOT_A_LIST_OF_PAIRS[name], unpack_value(data, SOURCE))  # valid as a value
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(data, SOURCE)
    assert SOURCE in str(info.value)


@pytest.mark.parametrize("trailer", [b"\x00", b"\xc0", b"garbage", SHARD_BYTES, b"\x00" * 64])
def test_trailing_bytes_are_a_decode_error(trailer):
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(SHARD_BYTES + trailer, SOURCE)
    assert SOURCE in str(info.value)


@pytest.mark.parametrize("code", [0, 3, 42, 127])
def test_unknown_ext_type_is_a_decode_error(code):
    data = pack_value([["k", {"x": msgpack.ExtType(code, b"\x00" * 24)}]])
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(data, SOURCE)
    assert SOURCE in str(info.value)
    assert not isinstance(info.value, UnsafePayloadError)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        b"\x00\x01",
        b"\xff" * 40,
        b"\x07\x01\x03\x00<i8" + b"\x00" * 16,
        b"\x00\x01\x03\x00<zz" + bytes(16),
    ],
    ids=repr,
)
@pytest.mark.parametrize("code", [1, 2])
def test_malformed_numpy_ext_payload_is_a_decode_error(code, payload):
    data = pack_value([["k", msgpack.ExtType(code, payload)]])
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(data, SOURCE)
    assert SOURCE in str(info.value)


def test_deeply_nested_input_is_a_decode_error():
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    try:
        data = pack_value([["k", deep]])
    except EncodeError:
        return  # refusing to write it is fine too; msgpack caps nesting
    decode_or_decode_error(lambda: MSGPACK.decode(data, SOURCE))


_OPS = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 2**20), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, position, byte in ops:
        if op == "insert":
            buf.insert(position % (len(buf) + 1), byte)
        elif buf:
            i = position % len(buf)
            if op == "flip":
                buf[i] ^= 1 << (byte % 8)
            elif op == "set":
                buf[i] = byte
            else:
                del buf[i]
    return bytes(buf)


@FUZZ
@given(_OPS)
def test_mutated_shard_decodes_or_raises_decode_error(ops):
    decode_or_decode_error(lambda: MSGPACK.decode(_mutate(SHARD_BYTES, ops), SOURCE))


@FUZZ
@given(_OPS)
def test_mutated_gzip_shard_decodes_or_raises_decode_error(ops):
    data = _mutate(GZIP_SHARD_BYTES, ops)
    decode_or_decode_error(lambda: MSGPACK.decode(decompress(data, "gzip", SOURCE, max_size=MB), SOURCE))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    decode_or_decode_error(lambda: MSGPACK.decode(data, SOURCE))
    decode_or_decode_error(lambda: JSONL.decode(data, SOURCE))


# --- declared array headers ---------------------------------------------------------------------------------------
#
# Unlike the rest of this file, these tests build objects by hand, following the layout documented in
# squirrel/codec/messagepack.py: a 24-byte prefix, a msgpack header in which an array is ext type 1 (dtype, shape
# and offset into the blob) and a numpy scalar ext type 2 (dtype, shape and its bytes inline), zero padding to a
# 64-byte boundary, then the blob. That is the only way to declare sizes the encoder would never write.

SQMP_PREFIX = struct.Struct("<4sHHQQ")
GIB = 1024**3


def array_head(dtype: np.dtype | bytes, shape: tuple[int, ...]) -> bytes:
    """Dtype and shape as an array head declares them; `dtype` as bytes is used verbatim as a plain dtype string."""
    if isinstance(dtype, bytes):
        kind, name = 0, dtype
    elif dtype.fields is None and dtype.subdtype is None:
        kind, name = 0, dtype.str.encode("ascii")
    else:
        kind, name = 1, msgpack.packb(np.lib.format.dtype_to_descr(dtype), use_bin_type=True)
    return struct.pack(f"<BBH{len(name)}s{len(shape)}Q", kind, len(shape), len(name), name, *shape)


def array_ref(dtype: np.dtype | bytes, shape: tuple[int, ...], offset: int = 0) -> msgpack.ExtType:
    """An array declared in the header: its dtype, its shape and where its bytes start in the blob."""
    return msgpack.ExtType(1, array_head(dtype, shape) + struct.pack("<Q", offset))


def scalar_ref(dtype: np.dtype | bytes, shape: tuple[int, ...], raw: bytes) -> msgpack.ExtType:
    """A numpy scalar declared in the header, its bytes inline."""
    return msgpack.ExtType(2, array_head(dtype, shape) + raw)


def sqmp_object(header: Any, blob: bytes = b"") -> bytes:
    """A squirrel messagepack object with the given header (a msgpack-packable value) and blob."""
    packed = msgpack.packb(header, use_bin_type=True)
    head = SQMP_PREFIX.pack(b"SQMP", 1, 0, len(packed), len(blob)) + packed
    return head + bytes(-len(head) % 64) + blob


def assert_decode_error(data: bytes, *fragments: str) -> None:
    with pytest.raises(DecodeError) as info:
        MSGPACK.decode(data, SOURCE)
    assert SOURCE in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


ZERO_SIZE_DTYPES = [
    np.dtype("S0"),
    np.dtype("<U0"),
    np.dtype(">U0"),
    np.dtype("V0"),
    np.dtype([]),
    np.dtype([("a", "<i4", (0,)), ("b", "S0")]),
]


@pytest.mark.parametrize("dtype", ZERO_SIZE_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (3,), (2, 0), (4, 5)], ids=str)
def test_zero_size_dtypes_round_trip_with_their_dtype(dtype, shape):
    array = np.ndarray(shape, dtype, b"")
    decoded = unpack_value(pack_value([array, {"a": array}]), SOURCE)
    assert_same(array, decoded[0])
    assert_same(array, decoded[1]["a"])
    assert decoded[0].nbytes == 0


@pytest.mark.parametrize("dtype", ZERO_SIZE_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(2**34,), (2**17, 2**17), (3, 2**40), (2**63 - 1,)], ids=str)
def test_zero_size_dtype_with_a_huge_shape_is_a_decode_error(dtype, shape):
    """Reported: a 64-byte object decoded to an `|S0` array of 2**34 elements that numpy makes 16 GiB (`|S1`)."""
    data = sqmp_object([["k", array_ref(dtype, shape)]])
    assert len(data) < 200
    assert_decode_error(data, str(shape))


@pytest.mark.parametrize("dtype", ZERO_SIZE_DTYPES, ids=str)
def test_zero_size_elements_are_bounded_by_the_object_size(dtype):
    """An element of zero bytes still costs at least a byte once numpy copies it: at most one per stored byte."""
    size = len(sqmp_object([["k", array_ref(dtype, (1,))]]))
    [sample] = MSGPACK.decode(sqmp_object([["k", array_ref(dtype, (size,))]]), SOURCE)
    assert sample.value.shape == (size,) and sample.value.dtype == dtype and sample.value.nbytes == 0
    assert_decode_error(sqmp_object([["k", array_ref(dtype, (size + 1,))]]), "elements")


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("u1", (0, 2**62)), ("<f8", (2**40, 0)), ("<f4", (0, 2**28, 3)), ("<c16", (0, 0, 2**31)), ("S9", (2**31, 0))],
    ids=str,
)
def test_empty_array_of_an_absurd_shape_is_a_decode_error(dtype, shape):
    """An empty array holds no bytes, but one slice of it larger than any object squirrel reads is corruption
    (and code that allocates by the shape, ``np.empty(a.shape[1:])``, would be bombed)."""
    assert_decode_error(sqmp_object([["k", array_ref(np.dtype(dtype), shape)]]), str(shape))


@pytest.mark.parametrize("shape", [(0, 224, 224, 3), (0, 4), (5, 0), (0, 2**20, 2**7)], ids=str)
def test_empty_arrays_of_sane_shapes_round_trip(shape):
    array = np.zeros(shape, "<f4")
    assert_same(array, unpack_value(pack_value(array), SOURCE))


def _two_arrays_blob() -> tuple[bytes, np.ndarray, np.ndarray]:
    """100 bytes padded to 128, then 8 float64: the blob `pack_value([first, second])` writes."""
    first = np.arange(100, dtype="u1")
    second = np.linspace(0, 1, 8, dtype="<f8")
    return first.tobytes() + bytes(28) + second.tobytes(), first, second


def test_hand_built_object_matches_the_encoder():
    blob, first, second = _two_arrays_blob()
    data = sqmp_object([array_ref(first.dtype, (100,), 0), array_ref(second.dtype, (8,), 128)], blob)
    assert data == pack_value([first, second])
    decoded = unpack_value(data, SOURCE)
    assert_same(first, decoded[0])
    assert_same(second, decoded[1])


@pytest.mark.parametrize(
    ("refs", "fragment"),
    [
        ([("u1", (10,), 0), ("<f8", (8,), 128)], "offset 128"),  # the first array shrank: bytes 64..127 unclaimed
        ([("u1", (200,), 0), ("<f8", (8,), 128)], "past the end"),  # it grew into the second
        ([("u1", (100,), 0), ("<f8", (8,), 64)], "offset 64"),  # the second overlaps the first
        ([("u1", (100,), 0), ("<f8", (8,), 130)], "offset 130"),  # unaligned
        ([("<f8", (8,), 128), ("u1", (100,), 0)], "offset 128"),  # out of order
        ([("u1", (100,), 0), ("<f8", (8,), 0)], "offset 0"),  # both claim the same bytes
        ([("u1", (100,), 0)], "192"),  # the second array's bytes belong to no array
        ([("u1", (100,), 0), ("<f8", (9,), 128)], "past the end"),
        ([("u1", (100,), 0), ("<f8", (8,), 2**64 - 1)], "offset"),
    ],
    ids=repr,
)
def test_declared_sizes_must_match_the_stored_bytes(refs, fragment):
    """Arrays fill the blob in header order, each padded to 64 bytes: a size or offset that does not fit is
    corruption, not a smaller (or aliased) array."""
    blob, _, _ = _two_arrays_blob()
    arrays = [array_ref(np.dtype(dtype), shape, offset) for dtype, shape, offset in refs]
    assert_decode_error(sqmp_object([["k", arrays]], blob), fragment)


@pytest.mark.parametrize(
    ("dtype", "shape", "raw"),
    [
        (b"|S0", (2**34,), b""),  # reported: a scalar that was a 16 GiB array
        (b"<i4", (2,), bytes(8)),  # a scalar is 0-d
        (b"<i4", (), bytes(3)),  # too short ...
        (b"<i4", (), bytes(5)),  # ... and too long
        (b"|V0", (), b"\x00"),
    ],
    ids=repr,
)
def test_numpy_scalar_must_declare_exactly_its_bytes(dtype, shape, raw):
    assert_decode_error(sqmp_object([["k", scalar_ref(dtype, shape, raw)]]))


@pytest.mark.parametrize("dtype", [b"(3,)<i4", b"2<f8", b"(2,2)u1"], ids=repr)
def test_sub_array_dtype_as_an_array_dtype_is_a_decode_error(dtype):
    """numpy never gives an array a sub-array dtype (it moves the sub-shape into the shape), so the encoder never
    writes one; one read would make an array whose shape is not the declared one."""
    assert_decode_error(sqmp_object([["k", array_ref(dtype, (2,), 0)]], bytes(64)), "sub-array")
    assert_decode_error(sqmp_object([["k", scalar_ref(dtype, (), bytes(32))]]), "sub-array")


# --- corrupt jsonl -----------------------------------------------------------------------------------------------


GOOD_LINE = b'{"key": "a", "value": 1}'


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (GOOD_LINE + b"\n" + GOOD_LINE.replace(b'"a"', b'"b"') + b"\n{not json\n", 3),
        (GOOD_LINE + b"\n\n\n" + b'{"key": "b", "value": [1, 2\n', 4),
        (b'{"value": 1}\n', 1),
        (GOOD_LINE + b'\n{"key": "b"}\n', 2),
        (b'{"key": null, "value": 1}\n', 1),
        (b'{"key": 5, "value": 1}\n', 1),
        (b'{"key": "../x", "value": 1}\n', 1),
        (b'{"key": "", "value": 1}\n', 1),
        (b"[1, 2]\n", 1),
        (b'"just a string"\n', 1),
        (b"17\n", 1),
        (b'{"key": "a", "value": "\xff\xfe"}\n', 1),
        (GOOD_LINE + b"\n" + GOOD_LINE[:-3], 2),
        (b'{"key": "a", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", 1),
    ],
    ids=lambda x: repr(x)[:40],
)
def test_bad_jsonl_is_a_decode_error_naming_the_line(data, line):
    with pytest.raises(DecodeError) as info:
        JSONL.decode(data, SOURCE)
    assert SOURCE in str(info.value)
    assert f"line {line}" in str(info.value)


def test_jsonl_tolerates_blank_lines_and_missing_final_newline():
    data = b"\n" + GOOD_LINE + b"\n  \n" + GOOD_LINE.replace(b'"a"', b'"b"')
    assert [(s.key, s.value) for s in JSONL.decode(data, SOURCE)] == [("a", 1), ("b", 1)]


# --- gzip --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 100, SHARD_BYTES])
def test_gzip_round_trip(data):
    packed = compress(data, "gzip")
    assert packed != data
    assert decompress(packed, "gzip", SOURCE) == data
    assert gzip.decompress(packed) == data  # a standard gzip stream
    assert decompress(gzip.compress(data), "gzip", SOURCE) == data


def test_no_compression_passes_bytes_through():
    assert compress(b"abc", None) == b"abc"
    assert decompress(b"abc", None, SOURCE) == b"abc"
    assert COMPRESSIONS[None] == "" and COMPRESSIONS["gzip"] == ".gz"


def test_multi_member_gzip_decompresses_every_member():
    data = gzip.compress(b"first|") + gzip.compress(b"") + compress(b"second", "gzip")
    assert decompress(data, "gzip", SOURCE) == b"first|second"


def test_truncated_gzip_is_a_decode_error():
    packed = compress(bytes(range(256)) * 20, "gzip")
    for cut in range(len(packed)):
        with pytest.raises(DecodeError) as info:
            decompress(packed[:cut], "gzip", SOURCE)
        assert SOURCE in str(info.value), cut
    two = gzip.compress(b"a" * 100) + gzip.compress(b"b" * 100)
    with pytest.raises(DecodeError):
        decompress(two[:-3], "gzip", SOURCE)


@pytest.mark.parametrize("data", [b"not gzip at all", b"\x1f\x8b" + bytes(30), gzip.compress(b"x") + b"junk"])
def test_corrupt_gzip_is_a_decode_error(data):
    with pytest.raises(DecodeError) as info:
        decompress(data, "gzip", SOURCE)
    assert SOURCE in str(info.value)


def test_gzip_crc_mismatch_is_a_decode_error():
    packed = bytearray(gzip.compress(b"hello world" * 10))
    packed[-8] ^= 0xFF  # CRC32 in the trailer
    with pytest.raises(DecodeError):
        decompress(bytes(packed), "gzip", SOURCE)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MB)
    bomb = b"".join(packer.compress(zeros) for _ in range(50)) + packer.flush()
    assert len(bomb) < 100_000
    return bomb


def test_gzip_bomb_is_refused_without_expanding_it(gzip_bomb):
    assert len(zlib.decompress(gzip_bomb, 31)) == 50 * MB  # it really is a bomb
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as info:
            decompress(gzip_bomb, "gzip", SOURCE, max_size=MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MB, f"decompressing with a 1 MB cap allocated {peak} bytes"
    assert SOURCE in str(info.value)
    assert str(MB) in str(info.value) and "cap" in str(info.value)


def with_trailer_size(data: bytes, size: int) -> bytes:
    """`data` (gzip) with the size field of its last member's trailer (ISIZE, its last 4 bytes) replaced."""
    return data[:-4] + struct.pack("<I", size)


def test_gzip_trailer_over_the_cap_is_refused_before_inflating(gzip_bomb):
    error, peak = traced_peak(lambda: decompress(gzip_bomb, "gzip", SOURCE, max_size=MB))
    assert isinstance(error, DecodeError)
    assert SOURCE in str(error) and str(MB) in str(error) and str(50 * MB) in str(error)
    assert peak < 64 * 1024, f"a bomb whose trailer admits it was inflated: {peak} bytes allocated"


def _text_like(size: int) -> bytes:
    """Compressible bytes (about 3:1), like a shard's keys and labels: random words of a small vocabulary."""
    vocabulary = np.frombuffer(b"".join(b"%07d " % i for i in range(4096)), "S8")
    return vocabulary[np.random.default_rng(1).integers(0, 4096, size // 8)].tobytes()


def _gzip(data: bytes, level: int = 1) -> bytes:
    """One gzip member (level 1: the tests need the stream's shape, not its size, and level 9 takes seconds)."""
    return zlib.compress(data, level, wbits=31)


GZIP_STREAMS = {  # name: (how to compress, whether the last trailer gives the whole size)
    "one member": (_gzip, True),
    "stored blocks": (lambda data: _gzip(data, 0), True),
    "bgzf-like members, last one empty": (
        lambda data: b"".join(_gzip(data[i : i + 65536]) for i in range(0, len(data), 65536)) + _gzip(b""),
        False,
    ),
    "a big member then a small one": (lambda data: _gzip(data[:-100]) + _gzip(data[-100:]), False),
}


@pytest.mark.parametrize("stream", sorted(GZIP_STREAMS))
def test_gzip_inflates_within_its_output_size_plus_a_constant(stream):
    """Reported: inflating held about twice the output (a list of parts, then their join). One member goes
    into a buffer of exactly its size; multi-member data grows one buffer in place, for which CPython reserves
    up to an eighth more (reserved, not touched: it costs address space, not memory)."""
    pack, sized_by_trailer = GZIP_STREAMS[stream]
    data = _text_like(16 * MB)
    packed = pack(data)
    out, peak = traced_peak(lambda: decompress(packed, "gzip", SOURCE))
    assert out == data
    limit = len(data) + MB if sized_by_trailer else len(data) * 9 // 8 + MB
    assert peak < limit, f"inflating {len(data)} bytes allocated up to {peak}"


@pytest.mark.parametrize("declared", [0, 1000, 3 * MB], ids=str)
def test_lying_gzip_bomb_costs_at_most_the_cap(gzip_bomb, declared):
    """A trailer that understates the size cannot be told from multi-member data before the member ends: the
    cap, not twice the cap, bounds what it costs."""
    liar = with_trailer_size(gzip_bomb, declared)
    error, peak = traced_peak(lambda: decompress(liar, "gzip", SOURCE, max_size=4 * MB))
    assert isinstance(error, DecodeError) and SOURCE in str(error) and "cap" in str(error)
    assert peak < 4 * MB * 9 // 8 + MB, f"a 4 MB cap let a lying bomb allocate {peak} bytes"


@pytest.mark.parametrize("change", [-1, +1, -50_000, +50_000], ids=lambda c: f"{c:+}")
def test_lying_gzip_trailer_is_refused(change):
    data = _text_like(100_000)
    packed = with_trailer_size(compress(data, "gzip"), len(data) + change)
    with pytest.raises(DecodeError) as info:
        decompress(packed, "gzip", SOURCE)
    assert SOURCE in str(info.value)


def test_gzip_trailer_deflate_cannot_reach_is_refused_before_allocating():
    """Deflate expands at most 1032:1, so a 30-byte object declaring a gigabyte is corrupt: refused, not given a
    gigabyte buffer to fill."""
    packed = with_trailer_size(gzip.compress(b"tiny"), GIB)
    error, peak = traced_peak(lambda: decompress(packed, "gzip", SOURCE))
    assert isinstance(error, DecodeError) and SOURCE in str(error) and str(GIB) in str(error)
    assert peak < 64 * 1024


CONCURRENT_BOMBS = """
import json, resource, sys, zlib
from concurrent.futures import ThreadPoolExecutor
from squirrel.codec import decompress
from squirrel.errors import DecodeError

count, cap, honest = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "honest"
packer = zlib.compressobj(9, zlib.DEFLATED, 31)
zeros = bytes(1 << 20)
bomb = b"".join(packer.compress(zeros) for _ in range(cap * 3 // 2 >> 20)) + packer.flush()
del zeros, packer
if not honest:
    bomb = bomb[:-4] + (1000).to_bytes(4, "little")

def inflate(_):
    try:
        decompress(bomb, "gzip", "bomb", max_size=cap)
    except DecodeError as exc:
        return "cap" in str(exc)
    return False

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ThreadPoolExecutor(count) as pool:
    refused = sum(pool.map(inflate, range(count)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"refused": refused, "growth": (after - before) * 1024}))
"""


@pytest.mark.parametrize("honest", [True, False], ids=["honest-trailer", "lying-trailer"])
def test_concurrent_gzip_bombs_cost_one_cap_between_them(honest):
    """Reported: 8 bombs under a 256 MiB cap peaked at 2.1 GiB. Each bomb here inflates to 1.5 times the cap; in a
    fresh process (so no other test's peak counts), the peak RSS growth of inflating them in threads is measured.
    Honest trailers are refused without inflating; lying ones run past their declared size one at a time, so
    together they cost the cap (and a piece of zlib's output: CPython's reserve when growing a buffer is not
    touched, so not resident), not one cap each."""
    count, cap = 8, 64 * MB
    run = subprocess.run(
        [sys.executable, "-c", CONCURRENT_BOMBS, str(count), str(cap), "honest" if honest else "lying"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(run.stdout)
    assert result["refused"] == count
    limit = cap if honest else cap + count * 2 * MB  # the cap, and a piece of zlib's output per bomb
    assert result["growth"] < limit, f"{count} bombs under a {cap} byte cap grew RSS by {result['growth']}"


def test_gzip_cap_is_exact_and_counts_all_members():
    data = bytes(1000)
    assert decompress(compress(data, "gzip"), "gzip", SOURCE, max_size=1000) == data
    with pytest.raises(DecodeError, match="999"):
        decompress(compress(data, "gzip"), "gzip", SOURCE, max_size=999)
    members = compress(bytes(600), "gzip") * 2
    assert decompress(members, "gzip", SOURCE, max_size=1200) == bytes(1200)
    with pytest.raises(DecodeError):
        decompress(members, "gzip", SOURCE, max_size=1000)


@pytest.mark.parametrize("name", ["lz4", "ZSTD", "GZIP", "gz", "", "none"])
def test_unknown_compression_is_a_value_error(name):
    with pytest.raises(ValueError, match="compression"):
        compress(b"x", name)
    with pytest.raises(ValueError, match="compression"):
        decompress(b"x", name, SOURCE)


def test_incompressible_data_is_stored_not_deflated_and_still_gzip() -> None:
    import gzip

    from squirrel.codec import compress, decompress

    random_bytes = np.random.default_rng(0).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    stored = compress(random_bytes, "gzip")
    assert gzip.decompress(stored) == random_bytes == decompress(stored, "gzip", "x")
    assert len(stored) < len(random_bytes) * 1.01
    text = b"squirrel " * 200_000
    packed = compress(text, "gzip")
    assert len(packed) < len(text) / 50 and gzip.decompress(packed) == text
