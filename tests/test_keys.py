"""`validate_keys` (the codecs' batch check) accepts exactly what `validate_key` accepts, key by key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from squirrel.sample import validate_key, validate_keys

KEY_TEXT = st.text(alphabet=st.sampled_from(["a", "é", ".", "/", "\\", "\x00", "-", "😀", "\ud800"]), max_size=60)
KEYS = st.lists(st.one_of(KEY_TEXT, st.integers(), st.none()), max_size=6)


def _valid(key: object) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(KEYS)
def test_batch_validation_agrees_with_one_by_one(keys: list[object]) -> None:
    try:
        validate_keys(keys)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == all(_valid(key) for key in keys)
