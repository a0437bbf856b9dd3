"""The physical references of the local read benchmark: what one thread does with no machinery at all.

``ref`` reads each of our uncompressed shard files with ``open().read()`` and parses it with the parser
below, written for the benchmark from the layout documented in ``squirrel/codec/messagepack.py`` (a 24-byte
prefix, a msgpack header of ``[key, value]`` pairs whose arrays are ext type 1 references into a 64-byte
aligned blob): every array becomes a zero-copy, read-only numpy view of the file's bytes. It makes the
checks the loader makes on every sample and object (prefix, length, arrays filling the blob in order, each
pair a ``[str key, value]`` list, keys valid), and its consumer does what the loader's does (count the sample
and its image bytes). ``ref-gzip`` is the same loop over our gzip files, inflating each with zlib in the same
thread. The loader's goals are ratios against these two, measured in the same run.

The ``bound-*`` passes are the older bounds (plain read; msgpack + msgpack-numpy decode), kept for context.
Top-level imports are standard library only (this module is imported wherever ``read_local`` is).
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any

from benchmarks._measure import PassResult, measure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

_PREFIX = struct.Struct("<4sHHQQ")  # magic, version, flags, header length, blob length
_ARRAY_HEAD = struct.Struct("<BBH")  # dtype encoding (0: dtype.str), ndim, dtype-bytes length
_U64 = struct.Struct("<Q")
_ALIGN = 64
_MAGIC, _VERSION = b"SQMP", 1
_EXT_NDARRAY = 1
MAX_KEY_BYTES = 200
MAX_INFLATED_BYTES = 1 << 31
"""Largest inflated shard the gzip reference accepts, like the loader's cap on declared sizes."""


class ShardParser:
    """Parses one shard's bytes into ``[key, value]`` pairs whose arrays are views of those bytes.

    Only what the benchmark's data uses is supported (arrays of plain dtypes, no numpy scalars); anything
    else raises `ValueError` naming the shard. Array heads are cached: a dataset has few distinct ones.
    """

    def __init__(self) -> None:
        import msgpack
        import numpy as np

        self._unpackb = msgpack.unpackb
        self._ndarray = np.ndarray
        self._dtype = np.dtype
        self._layouts: dict[bytes, tuple[Any, tuple[int, ...], int]] = {}

    def _layout(self, head: bytes) -> tuple[Any, tuple[int, ...], int]:
        layout = self._layouts.get(head)
        if layout is None:
            kind, ndim, dtype_length = _ARRAY_HEAD.unpack_from(head, 0)
            start = _ARRAY_HEAD.size + dtype_length
            if kind != 0 or len(head) != start + 8 * ndim:
                raise ValueError(f"unsupported array head {head!r}")
            dtype = self._dtype(head[_ARRAY_HEAD.size : start].decode("ascii"))
            shape = struct.unpack_from(f"<{ndim}Q", head, start)
            size = dtype.itemsize
            for dim in shape:
                size *= dim
            layout = self._layouts[head] = (dtype, shape, size)
        return layout

    def parse(self, data: bytes, source: str) -> list[list[Any]]:
        """The ``[key, value]`` pairs of one shard; `ValueError` naming `source` if anything is off."""
        magic, version, _flags, header_length, blob_length = _PREFIX.unpack_from(data, 0)
        blob_start = _PREFIX.size + header_length
        blob_start += -blob_start % _ALIGN
        if magic != _MAGIC or version != _VERSION or len(data) != blob_start + blob_length:
            raise ValueError(f"{source}: not a complete version-1 shard")
        filled = 0  # where the next array must start, from the blob's start
        blob_end = blob_start + blob_length

        def ext_hook(code: int, payload: bytes) -> Any:
            nonlocal filled
            if code != _EXT_NDARRAY:
                raise ValueError(f"{source}: unsupported ext type {code}")
            dtype, shape, size = self._layout(payload[:-8])
            offset = _U64.unpack_from(payload, len(payload) - 8)[0]
            start = blob_start + offset
            if offset != filled or start + size > blob_end:
                raise ValueError(f"{source}: array at blob offset {offset}, expected {filled}")
            filled = offset + size + (-(offset + size) % _ALIGN)
            return self._ndarray(shape, dtype, data, start)  # a view of `data`: bytes, so read-only

        header = memoryview(data)[_PREFIX.size : _PREFIX.size + header_length]
        pairs = self._unpackb(header, ext_hook=ext_hook, raw=False, strict_map_key=False)
        if filled != blob_length:
            raise ValueError(f"{source}: arrays fill {filled} of {blob_length} blob bytes")
        if not isinstance(pairs, list) or (pairs and (set(map(type, pairs)) != {list} or set(map(len, pairs)) != {2})):
            raise ValueError(f"{source}: not a list of [key, value] pairs")
        check_keys([pair[0] for pair in pairs], source)
        return pairs


def check_keys(keys: list[Any], source: str) -> None:
    """`ValueError` unless every key is a non-empty str without ``/``, ``\\`` or NUL, not starting with ``.``,
    valid UTF-8 and at most `MAX_KEY_BYTES` long: the loader's key checks, made on all keys at once."""
    if not keys:
        return
    joined = "\x00" + "\x00".join(keys) + "\x00" if set(map(type, keys)) == {str} else ""
    if not (
        joined.count("\x00") == len(keys) + 1
        and "/" not in joined
        and "\\" not in joined
        and "\x00." not in joined
        and "\x00\x00" not in joined
        and (joined.isascii() or _encodes(joined))
        and (max(map(len, keys)) * 4 <= MAX_KEY_BYTES or all(len(key.encode()) <= MAX_KEY_BYTES for key in keys))
    ):
        raise ValueError(f"{source}: a key is not valid")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def inflate(data: bytes, source: str) -> bytes:
    """One gzip member inflated into a buffer of its declared size (its trailer's ISIZE); `ValueError`
    naming `source` past `MAX_INFLATED_BYTES` or if the inflated size is not the declared one."""
    declared = int.from_bytes(data[-4:], "little")
    if declared > MAX_INFLATED_BYTES:
        raise ValueError(f"{source}: declares {declared} inflated bytes")
    inflated = zlib.decompress(data, 31, declared or 1)
    if len(inflated) != declared:
        raise ValueError(f"{source}: inflated {len(inflated)} bytes, declared {declared}")
    return inflated


def reference_stream(paths: list[Path], gzip: bool) -> Iterator[Any]:
    """Every sample value of `paths`, in order, read and parsed (and inflated) in this thread."""
    parser = ShardParser()
    for path in paths:
        with open(path, "rb") as file:
            data = file.read()
        source = str(path)
        for _key, value in parser.parse(inflate(data, source) if gzip else data, source):
            yield value


def reference_pass(variant: str, paths: list[Path], gzip: bool, weigh: Callable[[Any], tuple[int, int]]) -> PassResult:
    """One timed pass of `reference_stream` (the parser's imports are done before the timed region)."""
    import msgpack  # noqa: F401  (imported before the baseline, as the loader's pass imports squirrel)
    import numpy  # noqa: F401

    return measure(variant, lambda: reference_stream(paths, gzip), weigh)


def read_bound_pass(paths: list[Path], per_file: tuple[int, int]) -> PassResult:
    """Plain read of every file, in a tight loop; each file counts as `per_file` (samples, bytes)."""

    def stream() -> Iterator[bytes]:
        for path in paths:
            with open(path, "rb") as file:
                yield file.read()

    return measure("bound-read", stream, lambda _: per_file)


def decode_bound_pass(paths: list[Path], weigh: Callable[[Any], tuple[int, int]]) -> PassResult:
    """msgpack + msgpack-numpy decode of plain msgpack files, all bytes in memory first (not timed)."""
    import msgpack
    import msgpack_numpy

    blobs = [path.read_bytes() for path in paths]

    def stream() -> Iterator[dict[str, Any]]:
        for blob in blobs:
            yield from msgpack.unpackb(blob, object_hook=msgpack_numpy.decode)

    return measure("bound-decode", stream, weigh)


def serial_bound_pass(paths: list[Path], weigh: Callable[[Any], tuple[int, int]]) -> PassResult:
    """Serial read+decode bound: read each plain msgpack file and decode it with msgpack-numpy."""
    import msgpack
    import msgpack_numpy

    def stream() -> Iterator[dict[str, Any]]:
        for path in paths:
            with open(path, "rb") as file:
                data = file.read()
            yield from msgpack.unpackb(data, object_hook=msgpack_numpy.decode)

    return measure("bound-read+decode", stream, weigh)
