"""Sync streams: `Composable` and `IterableSource`, with the same operators as `squirrel.aio`'s."""

from squirrel.iterstream.base import Composable, IterableSource

__all__ = ["Composable", "IterableSource"]
