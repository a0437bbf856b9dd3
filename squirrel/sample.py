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
    NUL, be `.`/`..`, start with `.` (reserved for temporary files of in-progress writes), hold a lone
    surrogate (not Unicode text: no file system or object store can name an object with it), or be longer
    than `MAX_KEY_BYTES` in UTF-8. The error names the key, escaped and cut to 40 characters.
    """
    if not isinstance(key, str):
        raise ValueError(f"key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise ValueError("key must not be empty")
    if "/" in key or "\\" in key or "\x00" in key:
        raise ValueError(f"key {_shown(key)} must not contain '/', '\\' or NUL")
    if key.startswith("."):
        raise ValueError(f"key {_shown(key)} must not start with '.' (reserved for temporary files)")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"key {_shown(key)} holds a lone surrogate ({key[exc.start]!r} at index {exc.start}), so it is not "
            "valid Unicode and cannot name an object (file names read with 'surrogateescape' do this)"
        ) from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"key {_shown(key)} is longer than {MAX_KEY_BYTES} bytes")
    return key


def validate_keys(keys: Sequence[object]) -> None:
    """Validate many keys at once, as `validate_key` would each, raising its `ValueError` for the first bad key.

    The codecs' hot path: a few C-level passes over the joined keys instead of Python work per key.
    """
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
            and (joined.isascii() or _is_utf8_text(joined))
            and (max(map(len, keys)) * 4 <= MAX_KEY_BYTES or all(map(_short_enough, keys)))
        ):
            return
    for key in keys:
        validate_key(key)


def _all_str(keys: Sequence[object]) -> TypeGuard[Sequence[str]]:
    return set(map(type, keys)) == {str}


def _is_utf8_text(text: str) -> bool:
    """Whether `text` encodes to UTF-8, i.e. holds no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short_enough(key: str) -> bool:
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES


def _shown(key: str, limit: int = 40) -> str:
    """`key` escaped for an error message (lone surrogates and controls as escapes), cut to `limit` chars."""
    return repr(key) if len(key) <= limit else f"{key[:limit]!r}..."


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
        """A sample of `value` from decoded data, checking only that `key` is a str (codecs' hot path).

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

    `value` is any iterable of `Sample`s (a list, a generator). Anything else in it raises `TypeError`
    naming its position and type: a plain value has no key, so wrap it as ``Sample(value, key=...)``.
    """

    __slots__ = ("key", "value")

    def __init__(self, value: Iterable[Sample], key: str | None = None) -> None:
        self.key = random_key() if key is None else validate_key(key)
        self.value: list[Sample] = list(value)
        for position, item in enumerate(self.value):
            if not isinstance(item, Sample):
                raise TypeError(
                    f"shard {self.key!r}: item at position {position} is a {type(item).__name__}, not a Sample; "
                    "wrap each value as Sample(value, key=...) (key optional: random when omitted)"
                )

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
