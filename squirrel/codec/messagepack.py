"""Messagepack shards: one msgpack array of ``[key, value]`` pairs; numpy data as msgpack ext types.

Numpy arrays and scalars are msgpack ext types whose payload is a small header (dtype, shape) and the raw
bytes, so decoding costs one Python call per array and no hook on every map. Decoded arrays are read-only
zero-copy views of the ext payload. Tuples are written as lists; int dict keys round-trip. Nothing is
ever pickled: object arrays are refused on write and on read.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from squirrel.errors import DecodeError, EncodeError, UnsafePayloadError
from squirrel.sample import Sample

EXT_NDARRAY = 1
EXT_NUMPY_SCALAR = 2

_DTYPE_PLAIN = 0  # dtype given by its `.str`, e.g. b"<f4"
_DTYPE_DESCR = 1  # structured or sub-array dtype, given as a msgpack-packed numpy descr
_HEADER = struct.Struct("<BBH")  # dtype kind, ndim, dtype-bytes length
_DIM = struct.Struct("<Q")
_ALIGN = 16  # data starts 16-byte aligned inside the payload


def _dtype_bytes(dtype: np.dtype) -> tuple[int, bytes]:
    if dtype.fields is None and dtype.subdtype is None:
        return _DTYPE_PLAIN, dtype.str.encode("ascii")
    descr = np.lib.format.dtype_to_descr(dtype)
    return _DTYPE_DESCR, msgpack.packb(descr, use_bin_type=True)


def _as_tuples(descr: Any) -> Any:
    """Undo msgpack's tuple-to-list: numpy wants each field of a structured descr as a tuple."""
    if not isinstance(descr, list):
        return descr
    fields = []
    for name, fmt, *shape in descr:
        field = (tuple(name) if isinstance(name, list) else name, _as_tuples(fmt))
        fields.append(field + tuple(tuple(dims) for dims in shape))
    return fields


def _encode_array(array: np.ndarray) -> bytes:
    if array.dtype.hasobject:
        raise EncodeError(
            f"cannot store a numpy array of dtype {array.dtype} (object arrays would need pickle); "
            "convert it to a numeric, string or bytes dtype, or to a list"
        )
    kind, dtype_bytes = _dtype_bytes(array.dtype)
    shape = array.shape
    header = _HEADER.pack(kind, len(shape), len(dtype_bytes)) + dtype_bytes
    header += b"".join(_DIM.pack(dim) for dim in shape)
    header += b"\0" * (-len(header) % _ALIGN)
    return header + np.ascontiguousarray(array).tobytes()


def _decode_array(payload: bytes) -> np.ndarray:
    kind, ndim, dtype_len = _HEADER.unpack_from(payload, 0)
    offset = _HEADER.size
    dtype_bytes = payload[offset : offset + dtype_len]
    offset += dtype_len
    if kind == _DTYPE_PLAIN:
        dtype = np.dtype(dtype_bytes.decode("ascii"))
    elif kind == _DTYPE_DESCR:
        dtype = np.lib.format.descr_to_dtype(_as_tuples(msgpack.unpackb(dtype_bytes, raw=False)))
    else:
        raise ValueError(f"unknown dtype encoding {kind}")
    if dtype.hasobject:
        raise UnsafePayloadError(f"refusing a numpy array of dtype {dtype}: object arrays need pickle")
    shape = tuple(_DIM.unpack_from(payload, offset + 8 * i)[0] for i in range(ndim))
    offset += 8 * ndim
    offset += -offset % _ALIGN
    count = 1
    for dim in shape:
        count *= dim
    if count * dtype.itemsize != len(payload) - offset:
        raise ValueError(f"array of shape {shape} and dtype {dtype} does not match its payload size")
    if count == 0 or dtype.itemsize == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)


def _default(obj: Any) -> Any:
    """msgpack's hook for types it does not pack itself (it runs with strict_types)."""
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, _encode_array(obj))
    if isinstance(obj, np.generic):
        return msgpack.ExtType(EXT_NUMPY_SCALAR, _encode_array(np.asarray(obj)))
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(obj, base):
            return base(obj)
    raise EncodeError(
        f"cannot store a value of type {type(obj).__module__}.{type(obj).__qualname__} in messagepack "
        "(squirrel stores dicts, lists, str, bytes, numbers, bools, None and numpy arrays/scalars)"
    )


def _ext_hook(code: int, payload: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _decode_array(payload)
    if code == EXT_NUMPY_SCALAR:
        return _decode_array(payload)[()]
    raise ValueError(f"unknown msgpack ext type {code}")


def pack_value(value: Any) -> bytes:
    """Serialise one value (any nesting of the supported types) to msgpack bytes."""
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot store value in messagepack: {exc}") from None


def unpack_value(data: bytes, source: str = "<bytes>") -> Any:
    """Parse msgpack bytes written by `pack_value`; raise `DecodeError` naming `source` if they are bad."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)
    except DecodeError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise DecodeError(f"{source}: not valid squirrel messagepack data ({type(exc).__name__}: {exc})") from None


class MessagepackCodec:
    """A shard is one msgpack array of ``[key, value]`` pairs, so truncation anywhere is detected."""

    suffix = ".msgpack"

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Serialise `samples` as one msgpack array of ``[key, value]`` pairs."""
        return pack_value([[sample.key, sample.value] for sample in samples])

    def decode(self, data: bytes, source: str) -> list[Sample]:
        """Parse a shard; every pair must be ``[str key, value]``."""
        pairs = unpack_value(data, source)
        if not isinstance(pairs, list):
            raise DecodeError(f"{source}: expected a list of [key, value] pairs, got {type(pairs).__name__}")
        try:
            return [Sample(value, key) for key, value in pairs]
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"{source}: malformed [key, value] pair ({exc})") from None
