"""The head of one numpy array in a messagepack shard (`squirrel.codec.messagepack`): its dtype and shape,
written before the array's offset (an array) or its bytes (a scalar), and the checked zero-copy view of
the bytes it describes.

Layout of a head: u8 dtype encoding (0: the dtype's ``.str``, e.g. ``<f4``; 1: a structured dtype's
msgpack-packed numpy descr), u8 ndim, u16 length of the dtype bytes, the dtype bytes, then ndim u64
dimensions. Object dtypes are refused both ways (they would need pickle), and an array of no bytes with
an absurd shape is refused on read (see `check_empty_shape`).
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from squirrel.codec.base import Buffer, dtype_from_text
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE
from squirrel.errors import DecodeError, EncodeError, UnsafePayloadError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["array_head", "array_layout", "array_view", "check_empty_shape", "parse_array_head", "refuse_objects"]

_DTYPE_PLAIN = 0  # dtype given by its `.str`, e.g. b"<f4"
_DTYPE_DESCR = 1  # structured or sub-array dtype, given as a msgpack-packed numpy descr
_ARRAY_HEAD = struct.Struct("<BBH")  # dtype encoding, ndim, dtype-bytes length
_DIMS = [struct.Struct(f"<{n}Q") for n in range(65)]  # numpy allows at most 32 dimensions (64 in numpy 2)
_NO_BYTES = b""  # what arrays of no bytes view
_dtype_cache: dict[bytes, np.dtype[Any]] = {}


def _dtype_bytes(dtype: np.dtype[Any]) -> tuple[int, bytes]:
    if dtype.fields is None and dtype.subdtype is None:
        return _DTYPE_PLAIN, dtype.str.encode("ascii")
    return _DTYPE_DESCR, msgpack.packb(np.lib.format.dtype_to_descr(dtype), use_bin_type=True)


def _as_tuples(descr: Any) -> Any:
    """Undo msgpack's tuple-to-list: numpy wants each field of a structured descr as a tuple."""
    if not isinstance(descr, list):
        return descr
    fields = []
    for name, fmt, *shape in descr:
        field = (tuple(name) if isinstance(name, list) else name, _as_tuples(fmt))
        fields.append(field + tuple(tuple(dims) for dims in shape))
    return fields


def _parse_dtype(kind: int, raw: bytes) -> np.dtype[Any]:
    cached = _dtype_cache.get(raw)
    if cached is not None and kind == _DTYPE_PLAIN:
        return cached
    if kind == _DTYPE_PLAIN:
        dtype = dtype_from_text(raw.decode("ascii"))
    elif kind == _DTYPE_DESCR:
        dtype = np.lib.format.descr_to_dtype(_as_tuples(msgpack.unpackb(raw, raw=False)))
    else:
        raise ValueError(f"unknown dtype encoding {kind}")
    if dtype.hasobject:
        raise UnsafePayloadError(f"refusing a numpy array of dtype {dtype}: object arrays need pickle")
    if dtype.subdtype is not None:  # numpy moves a sub-array dtype's shape into the array's: never written
        raise DecodeError(
            f"sub-array dtype {dtype} cannot be an array's dtype (its shape would not be the declared one)"
        )
    if kind == _DTYPE_PLAIN and len(_dtype_cache) < 1024:
        _dtype_cache[raw] = dtype
    return dtype


def refuse_objects(array: npt.NDArray[Any]) -> None:
    """`EncodeError` if `array` holds Python objects (storing them would need pickle)."""
    if array.dtype.hasobject:
        raise EncodeError(
            f"cannot store a numpy array of dtype {array.dtype} (object arrays would need pickle); "
            "convert it to a numeric, string or bytes dtype, or to a list"
        )


def array_head(array: npt.NDArray[Any]) -> bytes:
    """The head of `array`: its dtype and shape, in the layout of the module docstring."""
    kind, dtype_bytes = _dtype_bytes(array.dtype)
    return _ARRAY_HEAD.pack(kind, array.ndim, len(dtype_bytes)) + dtype_bytes + _DIMS[array.ndim].pack(*array.shape)


def parse_array_head(payload: bytes) -> tuple[np.dtype[Any], tuple[int, ...], int, int]:
    """dtype, shape, byte size, and where the bytes after the head start.

    Raises `DecodeError` for an array of no bytes whose shape is absurd (see `check_empty_shape`).
    """
    kind, ndim, dtype_len = _ARRAY_HEAD.unpack_from(payload, 0)
    offset = _ARRAY_HEAD.size + dtype_len
    dtype = _parse_dtype(kind, payload[_ARRAY_HEAD.size : offset])
    shape = _DIMS[ndim].unpack_from(payload, offset)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow, however large the dimensions
    if nbytes == 0:
        check_empty_shape(dtype, shape)
    return dtype, shape, nbytes, offset + 8 * ndim


def check_empty_shape(dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    """Refuse an array of no bytes whose one slice would be larger than the largest object squirrel reads.

    Such an array costs nothing itself, but its shape is corruption, and numpy turns ``|S0``/``<U0``
    elements into real bytes as soon as it copies them; code allocating by the shape would be bombed too.
    """
    extent = math.prod(dim for dim in shape if dim) * max(dtype.itemsize, 1)
    if extent > DEFAULT_MAX_DECOMPRESSED_SIZE:
        raise DecodeError(
            f"array of shape {shape} and dtype {dtype} is absurd: one slice of it would take {extent} bytes, "
            f"more than the {DEFAULT_MAX_DECOMPRESSED_SIZE} bytes of the largest object squirrel reads"
        )


_layouts: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], int]] = {}


def array_layout(head: bytes) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """dtype, shape and byte size of an array head, cached: a dataset has few distinct ones."""
    layout = _layouts.get(head)
    if layout is None:
        dtype, shape, nbytes, end = parse_array_head(head)
        if end != len(head):
            raise ValueError("malformed array header")
        layout = (dtype, shape, nbytes)
        if len(_layouts) < 4096:
            _layouts[head] = layout
    return layout


def array_view(
    buffer: Buffer, dtype: np.dtype[Any], shape: tuple[int, ...], nbytes: int, start: int, end: int
) -> npt.NDArray[Any]:
    """A read-only view of `buffer[start:start + nbytes]`, which must end by `end`.

    An array of no bytes is a new empty one, or for a zero-size dtype a view of an empty constant
    (``np.zeros`` would turn ``|S0`` into ``|S1``) with at most one element per byte of `buffer`, else
    `DecodeError` (numpy's copies give each element a byte or more).
    """
    if start + nbytes > end:
        raise DecodeError(f"array of shape {shape} and dtype {dtype} runs past the end of its data")
    if nbytes:
        array = np.ndarray(shape, dtype, buffer, start)
    elif dtype.itemsize:
        array = np.zeros(shape, dtype)
    elif math.prod(shape) <= len(buffer):
        array = np.ndarray(shape, dtype, _NO_BYTES)
    else:
        raise DecodeError(
            f"array of shape {shape} and zero-size dtype {dtype} declares more elements than its "
            f"object's {len(buffer)} bytes could hold"
        )
    array.setflags(write=False)  # the buffer may be a (recycled) bytearray; faster than `.flags.writeable`
    return array
