"""`Sample`, `Shard` and the key rules of `validate_key`."""

from __future__ import annotations

import re

import numpy as np
import pytest

from squirrel.sample import MAX_KEY_BYTES, Sample, Shard, random_key, validate_key

GOOD_KEYS = [
    "my_key",
    "shard_1",
    "a.b",
    "ünï",
    "a..b",
    "x.",
    "with space",
    "a" * MAX_KEY_BYTES,
    "ü" * (MAX_KEY_BYTES // 2),  # 2 bytes each in UTF-8: exactly at the limit
    "🐿" * (MAX_KEY_BYTES // 4),  # 4 bytes each
]

BAD_STR_KEYS = [
    "",
    "a/b",
    "/",
    "/abs",
    "a\\b",
    "\\",
    "a\x00b",
    "\x00",
    ".",
    "..",
    ".hidden",
    "../escape",
    "..\\escape",
    ".tmp-123",
]

LONG_KEYS = [
    "a" * (MAX_KEY_BYTES + 1),
    "ü" * (MAX_KEY_BYTES // 2 + 1),  # 101 characters but 202 bytes
    "🐿" * (MAX_KEY_BYTES // 4 + 1),  # 51 characters but 204 bytes
    "k" * 10_000,
]

NON_STR_KEYS = [1, 0, 1.5, b"bytes_key", ["a"], ("a",), object()]

MAKERS = {
    "Sample": lambda key: Sample({"x": 1}, key),
    "Shard": lambda key: Shard([Sample(1), Sample(2)], key),
}


# --- random keys and the `values` alias -----------------------------------------------------------------------


def test_random_key_is_valid_and_fresh():
    keys = {random_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert validate_key(key) == key
        assert re.fullmatch(r"[0-9a-f]{32}", key)


def test_sample_without_key_gets_a_random_valid_key():
    a, b = Sample(1), Sample(1, key=None)
    assert isinstance(a.key, str) and isinstance(b.key, str)
    assert a.key != b.key
    assert validate_key(a.key) == a.key
    assert validate_key(b.key) == b.key


def test_sample_keeps_given_key_and_value_identity():
    value = {"image": np.zeros((2, 2), np.uint8), "label": 3}
    sample = Sample(value, "my_key")
    assert sample.key == "my_key"
    assert sample.value is value
    assert sample.values is sample.value
    sample.value = [1, 2]
    assert sample.values is sample.value
    assert "my_key" in repr(sample)


def test_sample_repr_is_short_for_big_values():
    sample = Sample("x" * 10_000, "k")
    assert len(repr(sample)) < 200
    assert repr(sample).startswith("Sample(key='k'")


def test_shard_without_key_gets_a_random_valid_key():
    a, b = Shard(value=[Sample(1)]), Shard(value=[Sample(1)], key=None)
    assert a.key != b.key
    assert validate_key(a.key) == a.key
    assert validate_key(b.key) == b.key


def test_shard_keeps_its_samples_in_a_list():
    samples = [Sample({"a": 1}, "kept"), Sample(None, "none")]
    shard = Shard(value=samples, key="shard_1")
    assert shard.key == "shard_1"
    assert len(shard) == 2
    assert all(a is b for a, b in zip(shard.value, samples, strict=True))
    assert shard.values is shard.value
    assert isinstance(shard.value, list)
    assert "shard_1" in repr(shard) and "2" in repr(shard)


@pytest.mark.parametrize("item", [{"a": 1}, 3, None, "text", ("v", "k")], ids=repr)
def test_shard_refuses_an_item_that_is_not_a_sample(item):
    with pytest.raises(TypeError) as info:
        Shard([Sample(0, "first"), item], key="shard_1")
    message = str(info.value)
    assert "position 1" in message
    assert type(item).__name__ in message
    assert "Sample(value, key=" in message
    assert "shard_1" in message


def test_shard_refuses_a_dict_as_its_only_sample():
    with pytest.raises(TypeError, match=r"position 0.*dict"):
        Shard([{"a": 1}])


def test_shard_accepts_any_iterable_of_samples_and_empty():
    shard = Shard(Sample(x * 2, f"k{x}") for x in range(3))
    assert [s.value for s in shard.values] == [0, 2, 4]
    assert [s.key for s in shard.values] == ["k0", "k1", "k2"]
    assert len(Shard([])) == 0
    assert Shard([]).value == []
    assert Shard(()).value == []


def test_shard_does_not_treat_a_sample_list_as_one_value():
    samples = [Sample(i, f"s{i}") for i in range(3)]
    shard = Shard(samples)
    assert [s.key for s in shard.value] == ["s0", "s1", "s2"]
    assert all(a is b for a, b in zip(shard.value, samples, strict=True))


# --- key rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass(key):
    assert validate_key(key) == key
    assert Sample(0, key).key == key
    assert Shard([Sample(0)], key).key == key


def _check_names_key(message: str, key: object) -> None:
    if key == "":
        assert "empty" in message
    elif isinstance(key, str) and len(key.encode("utf-8")) > MAX_KEY_BYTES:
        assert repr(key[:40]) in message
        assert str(MAX_KEY_BYTES) in message
    else:
        assert repr(key) in message


@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize("key", BAD_STR_KEYS + LONG_KEYS + NON_STR_KEYS, ids=repr)
def test_bad_keys_raise_value_error_naming_the_key(maker, key):
    with pytest.raises(ValueError) as info:
        MAKERS[maker](key)
    _check_names_key(str(info.value), key)
    with pytest.raises(ValueError) as info:
        validate_key(key)
    _check_names_key(str(info.value), key)


@pytest.mark.parametrize("key", NON_STR_KEYS, ids=repr)
def test_non_str_key_message_names_the_type(key):
    with pytest.raises(ValueError, match=type(key).__name__):
        validate_key(key)


def test_long_key_message_is_bounded():
    key = "k" * 10_000
    with pytest.raises(ValueError) as info:
        validate_key(key)
    assert len(str(info.value)) < 200


def test_key_length_counts_utf8_bytes_not_characters():
    at_limit = "é" * (MAX_KEY_BYTES // 2)
    assert len(at_limit) == MAX_KEY_BYTES // 2
    assert validate_key(at_limit) == at_limit
    with pytest.raises(ValueError):
        validate_key(at_limit + "x")
