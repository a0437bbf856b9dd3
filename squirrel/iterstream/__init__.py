"""Sync streams: `Composable` and `IterableSource`, with the same operators as `squirrel.aio`'s, and
`MixedStream` (several streams mixed into one, see `squirrel.iterstream.mixing`)."""

from __future__ import annotations

from squirrel.iterstream.base import Composable, IterableSource
from squirrel.iterstream.mixing import MixedStream

__all__ = ["Composable", "IterableSource", "MixedStream"]
