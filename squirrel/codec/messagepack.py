"""Messagepack shards, laid out so that numpy arrays decode as zero-copy views of the object's bytes.

Layout of one stored object (a shard, or a record: a one-sample shard)::

    prefix  24 bytes   b"SQMP", u16 version (1), u16 flags (0), u64 header length, u64 blob length
    header  msgpack    an array of [key, value] pairs; each numpy array is ext type 1 whose payload
                       is its head (dtype, shape: `squirrel.codec.array_head`) and its offset in the blob
    padding            zeros up to the next 64-byte boundary
    blob               the arrays' raw bytes, each starting 64-byte aligned

The header is plain msgpack that any msgpack library reads. Decoding parses the small header only;
arrays become read-only views into the object's bytes (no copy, aligned), so a sample keeps its
object's buffer alive. Numpy scalars are ext type 2 with their bytes inline. Tuples are written as
lists; int dict keys round-trip. Nothing is ever pickled: object arrays are refused on write and read.
Truncation anywhere is detected: the prefix fixes the total length.

Declared sizes are checked against the stored bytes, so no header can make an array larger than its
object: arrays fill the blob in the order the header lists them, each padded to 64 bytes, so each
array's offset must be where the one before it ends, and together they must end where the blob ends; a
scalar's head is followed by exactly its bytes. An array of no bytes (a zero dimension, or a zero-size
dtype such as ``|S0`` or ``[]``) is bounded too: one slice of it (its non-zero dimensions) may not take
more than `DEFAULT_MAX_DECOMPRESSED_SIZE` bytes (counting a zero-size element as one byte), and an array
of a zero-size dtype may not have more elements than its object has bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import msgpack
import numpy as np

from squirrel.codec.array_head import array_head, array_layout, array_view, parse_array_head, refuse_objects
from squirrel.errors import DecodeError, EncodeError
from squirrel.sample import Sample, validate_keys

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.codec.base import Buffer

__all__ = [
    "EXT_NDARRAY",
    "EXT_NUMPY_SCALAR",
    "MAGIC",
    "VERSION",
    "MessagepackCodec",
    "SampleChunk",
    "pack_value",
    "unpack_value",
]

EXT_NDARRAY = 1
EXT_NUMPY_SCALAR = 2
MAGIC = b"SQMP"
VERSION = 1

_PREFIX = struct.Struct("<4sHHQQ")
_ALIGN = 64
_U64 = struct.Struct("<Q")
_PLAIN_BASES: tuple[type[Any], ...] = (bool, int, float, str, bytes, list, dict)
"""Types msgpack packs as they are; under ``strict_types`` their subclasses reach `default`, packed as the base."""


def _aligned(offset: int) -> int:
    return offset + (-offset % _ALIGN)


# -- encoding --------------------------------------------------------------------------------------


class _Packer:
    """Packs one value: arrays go to the blob (64-byte aligned) and leave an ext reference in the header."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.blob_length = 0

    def default(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            refuse_objects(obj)
            data = obj if obj.flags.c_contiguous else obj.copy(order="C")
            start = self.blob_length
            ref = msgpack.ExtType(EXT_NDARRAY, array_head(data) + _U64.pack(start))
            if data.nbytes:
                self.parts.append(data.reshape(-1).view(np.uint8))
                self.blob_length += data.nbytes
                padding = -self.blob_length % _ALIGN
                if padding:
                    self.parts.append(b"\0" * padding)
                    self.blob_length += padding
            return ref
        if isinstance(obj, np.generic):
            scalar = np.asarray(obj)
            refuse_objects(scalar)
            return msgpack.ExtType(EXT_NUMPY_SCALAR, array_head(scalar) + scalar.tobytes())
        if isinstance(obj, tuple):
            return list(obj)
        if isinstance(obj, Mapping):
            return dict(obj)
        for base in _PLAIN_BASES:
            if isinstance(obj, base):
                return base(obj)
        raise EncodeError(
            f"cannot store a value of type {type(obj).__module__}.{type(obj).__qualname__} in messagepack "
            "(squirrel stores dicts, lists, str, bytes, numbers, bools, None and numpy arrays/scalars)"
        )


def pack_value(value: Any) -> bytes:
    """Serialise one value (any nesting of the supported types) into the layout described above."""
    packer = _Packer()
    try:
        header = msgpack.packb(value, default=packer.default, use_bin_type=True, strict_types=True)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot store value in messagepack: {exc}") from None
    head = _PREFIX.pack(MAGIC, VERSION, 0, len(header), packer.blob_length) + header
    return b"".join([head, b"\0" * (-len(head) % _ALIGN), *packer.parts])


# -- decoding --------------------------------------------------------------------------------------


def _parse_prefix(data: Buffer, source: str) -> tuple[int, int, int]:
    """Header length, blob start and blob length; `DecodeError` unless `data` is exactly that long."""
    try:
        magic, version, _flags, header_length, blob_length = _PREFIX.unpack_from(data, 0)
    except struct.error:
        raise DecodeError(f"{source}: too short to be a squirrel messagepack object ({len(data)} bytes)") from None
    if magic != MAGIC:
        raise DecodeError(f"{source}: not a squirrel messagepack object (starts with {bytes(data[:4])!r})")
    if version != VERSION:
        raise DecodeError(f"{source}: squirrel messagepack version {version} is not supported (expected {VERSION})")
    blob_start = _aligned(_PREFIX.size + header_length)
    if len(data) != blob_start + blob_length:
        problem = "truncated" if len(data) < blob_start + blob_length else "has trailing bytes"
        raise DecodeError(f"{source}: {problem}: {len(data)} bytes, expected {blob_start + blob_length}")
    return header_length, blob_start, blob_length


def _scalar(payload: bytes) -> Any:
    """The numpy scalar of an ext type 2 payload: a 0-d head followed by exactly its bytes."""
    dtype, shape, nbytes, offset = parse_array_head(payload)
    if shape or offset + nbytes != len(payload):
        raise DecodeError(
            f"numpy scalar of dtype {dtype} declares shape {shape} and {nbytes} bytes, but has "
            f"{len(payload) - offset} bytes (a scalar is 0-d, its bytes follow its head exactly)"
        )
    return array_view(payload, dtype, shape, nbytes, offset, len(payload))[()]


class _Blob:
    """The ext hook of one object's header: arrays become views of its blob, which they must fill in header
    order (each at the offset where the one before it ends, padded), so no array claims bytes it lacks."""

    __slots__ = ("data", "end", "filled", "start")

    def __init__(self, data: Buffer, start: int, length: int) -> None:
        self.data = data
        self.start = start
        self.end = start + length
        self.filled = 0
        """Where the next array's bytes must start, from the blob's start."""

    def ext_hook(self, code: int, payload: bytes) -> Any:
        """An array or scalar from its ext payload; `DecodeError` if its declared size does not fit."""
        if code == EXT_NDARRAY:
            dtype, shape, nbytes = array_layout(payload[:-8])
            offset = _U64.unpack_from(payload, len(payload) - 8)[0]
            if offset != self.filled:
                raise DecodeError(
                    f"array of shape {shape} and dtype {dtype} is at blob offset {offset}, but the arrays "
                    f"before it end at offset {self.filled}"
                )
            end = offset + nbytes
            self.filled = end + (-end % _ALIGN)  # `_aligned`, inlined: this runs once per array
            return array_view(self.data, dtype, shape, nbytes, self.start + offset, self.end)
        if code == EXT_NUMPY_SCALAR:
            return _scalar(payload)
        raise ValueError(f"unknown msgpack ext type {code}")


def unpack_value(data: Buffer, source: str = "<bytes>") -> Any:
    """Parse bytes written by `pack_value`; raise `DecodeError` naming `source` if they are bad."""
    header_length, blob_start, blob_length = _parse_prefix(data, source)
    blob = _Blob(data, blob_start, blob_length)
    header = memoryview(data)[_PREFIX.size : _PREFIX.size + header_length]
    try:
        value = msgpack.unpackb(header, ext_hook=blob.ext_hook, raw=False, strict_map_key=False, use_list=True)
    except DecodeError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise DecodeError(f"{source}: corrupt squirrel messagepack header ({type(exc).__name__}: {exc})") from None
    if blob.filled != blob_length:
        raise DecodeError(f"{source}: its arrays' declared sizes fill {blob.filled} of its {blob_length} blob bytes")
    return value


class SampleChunk(Sequence[Sample]):
    """The samples of one decoded object, each made as it is taken (iterated or indexed).

    An object's values are decoded at once, but its `Sample`s are not: a thousand of them made together
    outlived the collections their allocation set off, moved up the collector's generations and brought on
    a full collection of the heap every few passes (10-20 ms each here), the largest part of the spread
    between passes. Made one at a time as a loop takes them, they are gone before the next one is made.
    Each access makes a new `Sample` of the same key and value.
    """

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[str], values: list[Any]) -> None:
        self.keys = keys  # validated keys (`validate_keys`), as many as values
        self.values = values

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Sample]:
        return map(Sample.trusted, self.values, self.keys)

    @overload
    def __getitem__(self, at: int) -> Sample: ...
    @overload
    def __getitem__(self, at: slice) -> list[Sample]: ...
    def __getitem__(self, at: int | slice) -> Sample | list[Sample]:
        if isinstance(at, slice):
            return list(map(Sample.trusted, self.values[at], self.keys[at]))
        return Sample.trusted(self.values[at], self.keys[at])

    def __repr__(self) -> str:
        return f"SampleChunk({len(self)} samples)"


class MessagepackCodec:
    """Shards (and records) as ``[key, value]`` pairs in the zero-copy layout above."""

    suffix = ".msgpack"

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Serialise `samples` as one object."""
        return pack_value([[sample.key, sample.value] for sample in samples])

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Parse an object; every pair must be ``[str key, value]``."""
        return list(self.decode_chunk(data, source))

    def decode_chunk(self, data: Buffer, source: str) -> SampleChunk:
        """`decode`, its samples made only as they are taken (`SampleChunk`): what a loader's pass reads."""
        pairs = unpack_value(data, source)
        if not isinstance(pairs, list):
            raise DecodeError(f"{source}: expected a list of [key, value] pairs, got {type(pairs).__name__}")
        if pairs and (set(map(type, pairs)) != {list} or set(map(len, pairs)) != {2}):
            index, pair = next((i, p) for i, p in enumerate(pairs) if type(p) is not list or len(p) != 2)
            raise DecodeError(f"{source}: item {index} is not a [key, value] pair ({type(pair).__name__})")
        keys = [pair[0] for pair in pairs]
        try:
            validate_keys(keys)
        except ValueError as exc:
            raise DecodeError(f"{source}: malformed [key, value] pair ({exc})") from None
        return SampleChunk(keys, [pair[1] for pair in pairs])
