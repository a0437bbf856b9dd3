"""Fuzzing: mutated real shard and index bytes, and hand-declared array headers, either decode to what the
stored bytes hold or raise the library's documented error naming the object.

Marked `fuzz`; it runs in CI with every other test (4,000 mutated objects and 1,000 declared headers: about
half a minute of CPU, almost all of it hypothesis generating examples).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squirrel.codec import JsonlCodec, MessagepackCodec, compress, decompress
from squirrel.codec.base import dtype_from_text
from squirrel.codec.squirrel_core import SquirrelCoreJsonlCodec, SquirrelCoreMessagepackCodec
from squirrel.errors import DecodeError
from squirrel.index import build_index, describe
from squirrel.index_format import dump_index, parse_index
from squirrel.sample import Sample
from tests.test_codec import STRUCTURED_DTYPES, ZERO_SIZE_DTYPES, array_ref, scalar_ref, sqmp_object

_NUMERIC_CODES = [
    "?",
    "i1",
    "u1",
    *(f"{order}{kind}{size}" for order in "<>" for kind in "iu" for size in (2, 4, 8)),
    *(f"{order}f{size}" for order in "<>" for size in (2, 4, 8)),
    *(f"{order}c{size}" for order in "<>" for size in (8, 16)),
    np.dtype(np.longdouble).str,
    *(f"{order}{kind}8[{unit}]" for order in "<>" for kind in "Mm" for unit in ("D", "s", "ns")),
]
_STRUCTURED = np.dtype([("a", ">i4"), ("b", "<f8", (2,)), ("c", "S3"), ("d", "<U2"), ("e", "<M8[ms]")])


def _every_dtype(i: int) -> dict[str, np.ndarray]:
    """A small array of every dtype kind numpy has that messagepack stores (all but object), both byte orders,
    zero-size ones (``|S0``, ``<U0``, ``|V0``, ``[]``) included."""
    arrays = {code: (np.arange(6) + i).astype(code).reshape(2, 3) for code in _NUMERIC_CODES}
    arrays |= {code: np.array([b"ab", b"", b"c\x00d"], code) for code in ("|S1", "|S5")}
    arrays |= {code: np.array(["\xfc", "", "xyz"], code) for code in ("<U3", ">U3")}
    arrays |= {"|V4": np.frombuffer(bytes(range(i, i + 8)), "V4"), "structured": np.zeros(2, _STRUCTURED)}
    arrays |= {str(dtype): np.ndarray((i + 1, 2), dtype, b"") for dtype in ZERO_SIZE_DTYPES}
    return arrays


def _samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    return [
        Sample(
            {
                "image": rng.integers(0, 255, (4, 4, 3), dtype=np.uint8),
                "score": np.float32(i / 3),
                "tags": ["a", "b", i],
                "meta": {1: b"\x00\x01", "nested": [None, True, 1.5]},
                "grid": np.arange(6, dtype=">i4").reshape(2, 3),
            },
            key=f"sample_{i}",
        )
        for i in range(3)
    ]


def _every_dtype_samples() -> list[Sample]:
    return [Sample({**sample.value, "dtypes": _every_dtype(i)}, sample.key) for i, sample in enumerate(_samples())]


def _json_samples() -> list[Sample]:
    return [Sample({"label": i, "name": f"n{i}", "v": [1.5, None, True]}, key=f"j{i}") for i in range(3)]


CODECS = {
    "messagepack": (MessagepackCodec(), _samples()),
    "messagepack-every-dtype": (MessagepackCodec(), _every_dtype_samples()),
    "jsonl": (JsonlCodec(), _json_samples()),
    "squirrel-core-messagepack": (SquirrelCoreMessagepackCodec(), _samples()[:1]),
    "squirrel-core-jsonl": (SquirrelCoreJsonlCodec(), _json_samples()),
}
ORIGINALS = {
    (name, gzip): compress(codec.encode(samples), "gzip" if gzip else None)
    for name, (codec, samples) in CODECS.items()
    for gzip in (False, True)
}
INDEX = dump_index(
    build_index(".msgpack", None, [describe(f"shard_{i}", ORIGINALS[("messagepack", False)], 3) for i in range(3)])
)
for gzip in (False, True):
    ORIGINALS[("index", gzip)] = compress(INDEX, "gzip" if gzip else None)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, bool, bytes]:
    name = draw(st.sampled_from([*sorted(CODECS), "index"]))
    gzip = draw(st.booleans())
    data = bytearray(ORIGINALS[(name, gzip)])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "splice":
            other = ORIGINALS[(draw(st.sampled_from(sorted(CODECS))), gzip)]
            start = draw(st.integers(0, len(other)))
            data[position:] = other[start:]
    return name, gzip, bytes(data)


def assert_within(value: Any, size: int) -> None:
    """Every array in a value decoded from `size` bytes holds at most that many, and (zero-size dtypes) has at
    most one element per byte: a decoder may not make more of an object than it stores."""
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        assert array.nbytes <= size, f"{array.nbytes} bytes decoded from {size}"
        assert array.itemsize or array.size <= size, f"{array.size} elements of zero size decoded from {size} bytes"
    elif isinstance(value, dict):
        for item in value.values():
            assert_within(item, size)
    elif isinstance(value, list):
        for item in value:
            assert_within(item, size)


@pytest.mark.fuzz
@settings(max_examples=4_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_shards_decode_or_raise_decode_error(case: tuple[str, bool, bytes]) -> None:
    name, gzip, data = case
    source = f"fuzz://{name}/shard"
    try:
        raw = decompress(data, "gzip" if gzip else None, source, max_size=1 << 20)
        if name == "index":
            index = parse_index(raw, source)
            assert all(isinstance(entry.key, str) and entry.samples >= 0 for entry in index.entries)
            return
        samples = CODECS[name][0].decode(raw, source)
    except DecodeError as error:
        assert source in str(error)
        return
    assert isinstance(samples, list)
    assert all(isinstance(s, Sample) and isinstance(s.key, str) for s in samples)
    for sample in samples:
        assert_within(sample.value, len(raw))


# --- declared headers: any dtype, shape and offset an object may claim ----------------------------------------------

_RAW_DTYPES = [b"(3,)<i4", b"2<f8", b"|O8", b"O", b"T", b"<M8[generic]", b"<i4,<f8", b"a5", b"zz", b""]
"""Dtype strings no encoder writes: sub-array, object, numpy 2's StringDType, comma-separated, garbage."""
_HUGE_DIMS = [2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
_FLEXIBLE_CODES = [f"{order}{kind}{size}" for order in "<>|" for kind in "SUV" for size in (1, 5)]
DECLARED_DTYPES = st.sampled_from(
    [np.dtype(code) for code in _NUMERIC_CODES + _FLEXIBLE_CODES]
    + [_STRUCTURED, *STRUCTURED_DTYPES, *ZERO_SIZE_DTYPES, *_RAW_DTYPES]
)
_SMALL_SHAPES = st.lists(st.integers(0, 4), max_size=4).map(tuple)
_WILD_SHAPES = st.lists(
    st.integers(0, 4) | st.sampled_from(_HUGE_DIMS) | st.integers(0, 2**64 - 1), min_size=1, max_size=4
).map(tuple)
DECLARED_SHAPES = st.one_of(_SMALL_SHAPES, _SMALL_SHAPES, _WILD_SHAPES)


def _filler(size: int) -> bytes:
    return (bytes(range(1, 256)) * (size // 255 + 1))[:size]


def _as_dtype(dtype: np.dtype | bytes) -> np.dtype | None:
    """The numpy dtype a declaration names, or None when there is none (or only the deprecated 'a' alias)."""
    if isinstance(dtype, np.dtype):
        return dtype
    try:
        return dtype_from_text(dtype.decode())
    except (TypeError, DecodeError):
        return None


@st.composite
def declared_objects(draw: st.DrawFn) -> tuple[list[tuple[str, Any, tuple[int, ...], Any]], bytes]:
    """Up to three arrays or scalars, each declaring any dtype and shape, over bytes that may or may not hold
    them: stored exactly as declared (and at the declared offset) or not."""
    entries: list[tuple[str, Any, tuple[int, ...], Any]] = []
    blob = bytearray()
    for _ in range(draw(st.integers(1, 3))):
        scalar = draw(st.integers(0, 3)) == 0
        dtype = draw(DECLARED_DTYPES)
        shape = () if scalar and draw(st.integers(0, 3)) > 0 else draw(DECLARED_SHAPES)
        numpy_dtype = _as_dtype(dtype)
        declared = math.prod(shape) * numpy_dtype.itemsize if numpy_dtype is not None else -1
        honest = 0 <= declared <= 4096 and draw(st.integers(0, 3)) > 0
        stored = declared if honest else draw(st.integers(0, 200))
        if scalar:
            entries.append(("scalar", dtype, shape, _filler(stored)))
            continue
        offset = draw(st.sampled_from([len(blob)] * 6 + [len(blob) + 64, 0]) | st.integers(0, 2**64 - 1))
        entries.append(("array", dtype, shape, offset))
        blob += _filler(stored) + bytes(-stored % 64)
    blob += bytes(draw(st.sampled_from([0, 0, 0, 1, 64])))
    return entries, bytes(blob)


@pytest.mark.fuzz
@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(declared_objects())
def test_declared_headers_decode_to_the_stored_bytes_or_raise_decode_error(
    case: tuple[list[tuple[str, Any, tuple[int, ...], Any]], bytes],
) -> None:
    """Whatever sizes a header declares, decoding gives arrays that are exactly the bytes stored at their
    declared places (together filling the blob), scalars that are exactly their inline bytes, or a
    `DecodeError` naming the object."""
    entries, blob = case
    refs = [
        (array_ref if kind == "array" else scalar_ref)(dtype, shape, extra) for kind, dtype, shape, extra in entries
    ]
    data = sqmp_object([["k", refs]], blob)
    source = "fuzz://declared/shard_000.msgpack"
    try:
        [sample] = MessagepackCodec().decode(data, source)
    except DecodeError as error:
        assert source in str(error)
        return
    blob_address = np.frombuffer(data, np.uint8).__array_interface__["data"][0] + len(data) - len(blob)
    filled = 0
    for (kind, dtype, shape, extra), value in zip(entries, sample.value, strict=True):
        declared = _as_dtype(dtype)
        assert declared is not None
        if kind == "scalar":  # numpy scalars are native-endian, and b"" or "" has a dtype of size 1
            assert isinstance(value, np.generic) and value.dtype.kind == declared.kind
            assert shape == () and len(extra) == declared.itemsize
            continue
        assert value.dtype == declared and value.nbytes == math.prod(shape) * declared.itemsize
        assert type(value) is np.ndarray and value.shape == shape and not value.flags.writeable
        assert extra == filled, "arrays fill the blob in header order"
        assert extra + value.nbytes <= len(blob)
        assert value.itemsize or value.size <= len(data)
        if value.nbytes:
            assert value.__array_interface__["data"][0] == blob_address + extra, "the array views its stored bytes"
        filled = extra + value.nbytes + (-value.nbytes % 64)
    assert filled == len(blob), "every blob byte belongs to an array"
