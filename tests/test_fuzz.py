"""Fuzzing: mutated real shard and index bytes either decode or raise the library's documented error.

Marked `fuzz`; it runs in CI with every other test (10,000 examples).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squirrel.codec import JsonlCodec, MessagepackCodec, compress, decompress
from squirrel.codec.squirrel_core import SquirrelCoreJsonlCodec, SquirrelCoreMessagepackCodec
from squirrel.errors import DecodeError
from squirrel.index import build_index, describe, dump_index, parse_index
from squirrel.sample import Sample


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


def _json_samples() -> list[Sample]:
    return [Sample({"label": i, "name": f"n{i}", "v": [1.5, None, True]}, key=f"j{i}") for i in range(3)]


CODECS = {
    "messagepack": (MessagepackCodec(), _samples()),
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


@pytest.mark.fuzz
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
