"""The library's error types: every failure a user should handle has one of these, naming what and where."""

from __future__ import annotations


class SquirrelError(Exception):
    """Base class of every error squirrel raises on purpose."""


class DecodeError(SquirrelError, ValueError):
    """Stored bytes could not be decoded: corrupt, truncated, or not in the expected format.

    The message names the object (its URL or path) and what is wrong with it.
    """


class UnsafePayloadError(DecodeError):
    """Stored bytes ask for something squirrel never does, such as unpickling an object array."""


class EncodeError(SquirrelError, TypeError):
    """A value cannot be written by a codec (an object array, a type the format cannot hold)."""
