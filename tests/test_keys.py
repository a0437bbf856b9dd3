"""Key validation: `validate_keys` (the codecs' batch check) accepts exactly what `validate_key` accepts, and
an accepted key is always a safe object name (valid UTF-8, no separator or NUL, not hidden, short enough)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squirrel.driver import MessagepackStore, Sample, Shard
from squirrel.sample import MAX_KEY_BYTES, validate_key, validate_keys

KEY_TEXT = st.text(alphabet=st.sampled_from(["a", "é", ".", "/", "\\", "\x00", "-", "😀", "\ud800"]), max_size=60)
KEYS = st.lists(st.one_of(KEY_TEXT, st.integers(), st.none()), max_size=6)
ANY_CHAR = st.one_of(
    st.characters(codec=None, categories=None, exclude_categories=()),  # every code point, unassigned included
    st.sampled_from(["\ud800", "\udc80", "\udfff", "/", "\\", "\x00", ".", "\x7f", "\n", "é", "😀"]),  # edges, often
)
ANY_TEXT = st.one_of(  # lists joined, not st.text: st.text draws lone surrogates almost never
    st.lists(ANY_CHAR, max_size=20).map("".join),
    st.lists(ANY_CHAR, min_size=40, max_size=220).map("".join),  # around MAX_KEY_BYTES
    st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(0, 5000)),  # very long
)
SURROGATE_KEYS = ["a\udc80b", "\ud800", "ok\udfff", "😀\ud83d"]


def _valid(key: object) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


def _batch_valid(keys: list[object]) -> bool:
    try:
        validate_keys(keys)
    except ValueError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(KEYS)
def test_batch_validation_agrees_with_one_by_one(keys: list[object]) -> None:
    assert _batch_valid(keys) == all(_valid(key) for key in keys)


@settings(max_examples=600, deadline=None)
@given(ANY_TEXT)
def test_any_text_is_a_safe_key_or_a_value_error(key: str) -> None:
    accepted = _valid(key)  # any exception but ValueError fails the test
    assert _batch_valid([key]) == accepted
    if accepted:
        assert validate_key(key) == key
        assert key.encode("utf-8").decode("utf-8") == key
        assert key and not key.startswith(".")
        assert not {"/", "\\", "\x00"} & set(key)
        assert len(key.encode("utf-8")) <= MAX_KEY_BYTES


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TEXT, max_size=6))
def test_batch_validation_agrees_on_several_arbitrary_keys(keys: list[str]) -> None:
    assert _batch_valid(list(keys)) == all(_valid(key) for key in keys)


@pytest.mark.parametrize("key", SURROGATE_KEYS, ids=ascii)
def test_a_key_with_a_lone_surrogate_is_refused_by_name(key: str) -> None:
    for check in (validate_key, lambda k: validate_keys(["fine", k]), lambda k: Sample(1, k), lambda k: Shard([], k)):
        with pytest.raises(ValueError, match="surrogate") as info:
            check(key)
        assert repr(key) in str(info.value)  # escaped: the message itself is printable UTF-8
        str(info.value).encode("utf-8")


def test_a_long_key_with_a_surrogate_gets_a_bounded_message() -> None:
    with pytest.raises(ValueError, match="surrogate") as info:
        validate_key("k" * 5000 + "\udc80")
    assert len(str(info.value)) < 300


def test_a_local_store_refuses_a_surrogate_key_with_a_value_error(tmp_path) -> None:
    store = MessagepackStore(str(tmp_path))
    with pytest.raises(ValueError, match="surrogate"):
        store.get("a\udc80b")
