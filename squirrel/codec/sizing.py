"""What the codecs of `squirrel.codec.compression` share: the probes that decide whether data is worth
compressing, the pieces inflation works in, and the rules for the sizes compressed data declares.

An object's declared output size (gzip's trailer, zstd's frame header) is checked against the cap before
anything is inflated, and only one inflation at a time may run past what it declared (`BEYOND_DECLARED`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BEYOND_DECLARED", "INPUT_PIECE", "OUTPUT_PIECE", "checked_declared", "incompressible"]

INPUT_PIECE = 64 * 1024
"""Compressed bytes handed to a decompressor at once (zlib copies what it has not consumed yet)."""
OUTPUT_PIECE = 256 * 1024
"""Inflated bytes asked of a decompressor at once: what is held besides the output buffer."""

_PROBE_BYTES = 8 * 1024
_PROBES = 8
_INCOMPRESSIBLE = 0.97  # probes that shrink by less than 3% mean the data is not worth compressing

BEYOND_DECLARED = threading.Lock()
"""Held by the one inflation at a time whose output has passed what its data declared (more gzip members
or zstd frames, or a bomb whose trailer or header lies): together, objects in flight then hold at most
their declared sizes, one cap, and a piece each, however many bombs arrive at once."""


def incompressible(data: bytes, probe: Callable[[bytes], bytes]) -> bool:
    """Whether `data` will not compress: three quarters of eight probes spread over it shrink by less than
    3% under `probe` (a fast level of the codec). Small data is never judged so."""
    if len(data) < _PROBES * _PROBE_BYTES:
        return False
    step = (len(data) - _PROBE_BYTES) // (_PROBES - 1)
    starts = range(0, step * _PROBES, step)
    stubborn = sum(len(probe(data[s : s + _PROBE_BYTES])) >= _INCOMPRESSIBLE * _PROBE_BYTES for s in starts)
    return stubborn >= _PROBES * 3 // 4


def checked_declared(declared: int, ratio: int, codec: str, where: str, size: int, source: str, max_size: int) -> int:
    """`declared` (the output size `size` compressed bytes state, at `where`), or `DecodeError` naming `source`
    if it exceeds `max_size` or what `codec` could produce from them at all (`ratio` times: corrupt, and no
    reason to reserve that much memory)."""
    if declared > max_size:
        raise DecodeError(
            f"{source}: {codec} data expands past the cap of {max_size} bytes ({where} declares {declared} bytes)"
        )
    if declared > ratio * size:
        raise DecodeError(
            f"{source}: corrupt or truncated {codec} data ({where} declares {declared} bytes, more than {codec} "
            f"can expand {size} bytes to)"
        )
    return declared
