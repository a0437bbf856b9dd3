"""`Sample` and `Shard`: the two units a store holds, and the rule every key obeys."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MAX_KEY_BYTES", "Sample", "Shard", "random_key", "validate_key", "validate_keys"]

MAX_KEY_BYTES = 200
"""Longest key in UTF-8 bytes: room for a suffix and a temp prefix under the usual 255-byte file-name limit."""


def validate_key(key: object) -> str:
    """Return `key` if it is safe to use as an object name under a store's root, else raise `ValueError`.

    A key names one object directly under the root, so it may not be empty, contain a path separator or
    NUL, be `.`/`..`, or start with `.` (reserved for temporary files of in-progress writes).
    """
    if not isinstance(key, str):
        raise ValueError(f"key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise ValueError("key must not be empty")
    if "/" in key or "\\" in key or "\x00" in key:
        raise ValueError(f"key {key!r} must not contain '/', '\\' or NUL")
    if key.startswith("."):
        raise ValueError(f"key {key!r} must not start with '.' (reserved for temporary files)")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes")
    return key


def validate_keys(keys: Sequence[object]) -> None:
    """Validate many keys at once, as `validate_key` would each (codecs' hot path: a few C-level passes
    over the joined keys instead of Python work per key); on a failure, raise for the first bad key."""
    if not keys:
        return
    if _all_str(keys):
        joined = "\x00" + "\x00".join(keys) + "\x00"  # NUL is never in a valid key: a safe separator
        if (
            joined.count("\x00") == len(keys) + 1
            and "/" not in joined
            and "\\" not in joined
            and "\x00." not in joined
            and "\x00\x00" not in joined
            and (max(map(len, keys)) * 4 <= MAX_KEY_BYTES or all(map(_short_enough, keys)))
        ):
            return
    for key in keys:
        validate_key(key)


def _all_str(keys: Sequence[object]) -> TypeGuard[Sequence[str]]:
    return set(map(type, keys)) == {str}


def _short_enough(key: str) -> bool:
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def random_key() -> str:
    """A fresh random key (32 hex digits)."""
    return uuid.uuid4().hex


class Sample:
    """One item of a dataset: a `value` (usually a dict of arrays and metadata) under a `key`.

    `key` defaults to a random one. `values` is the same object as `value`.
    """

    __slots__ = ("key", "value")

    def __init__(self, value: Any, key: str | None = None) -> None:
        self.key = random_key() if key is None else validate_key(key)
        self.value = value

    @classmethod
    def trusted(cls, value: Any, key: Any) -> Sample:
        """A sample from decoded data, checking only that `key` is a str (codecs' hot path).

        Keys are validated again wherever they become paths, so this skips no safety check.
        """
        if type(key) is not str:
            raise TypeError(f"sample key must be a str, got {type(key).__name__}")
        sample = object.__new__(cls)
        sample.key = key
        sample.value = value
        return sample

    @property
    def values(self) -> Any:
        """The same object as `value`."""
        return self.value

    def __repr__(self) -> str:
        return f"Sample(key={self.key!r}, value={_short_repr(self.value)})"


class Shard:
    """A list of samples stored together as one object under `key` (random when not given).

    Items that are not `Sample`s are wrapped as samples with random keys.
    """

    __slots__ = ("key", "value")

    def __init__(self, value: Iterable[Sample | Any], key: str | None = None) -> None:
        self.key = random_key() if key is None else validate_key(key)
        self.value: list[Sample] = [item if isinstance(item, Sample) else Sample(item) for item in value]

    @property
    def values(self) -> list[Sample]:
        """The same list as `value`."""
        return self.value

    def __len__(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        return f"Shard(key={self.key!r}, samples={len(self.value)})"


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
