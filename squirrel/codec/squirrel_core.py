"""Read (and write) datasets in squirrel-core 0.20's formats, so its users move over without converting.

squirrel-core's MessagepackDriver stores a shard as ``<key>.gz``: gzip of concatenated msgpack maps, one
per sample, numpy arrays encoded the msgpack-numpy way (maps with ``nd``, ``type``, ``shape``, ``data``).
Its JsonlDriver stores gzip of JSON lines, one sample dict per line, numpy arrays as objects
``{"data": arr.tolist(), "type": arr.dtype.str, "shape": arr.shape}`` and numpy scalars as plain numbers
(its ``SquirrelJsonEncoder``). Samples are plain dicts; their squirrel key is the dict's ``"key"`` when that
is a valid key, else ``"<shard>:<index>"``.
msgpack-numpy unpickles object arrays; this decoder refuses them. In jsonl, an object with exactly those
three fields is read as an array, strictly (see `_array_from_json`); a user's dict of the same three fields
therefore cannot be stored there, as in squirrel-core.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import TYPE_CHECKING, Any

import msgpack
import msgpack_numpy
import numpy as np

from squirrel.codec.base import Buffer, dtype_from_text
from squirrel.errors import DecodeError, EncodeError, UnsafePayloadError
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SquirrelCoreJsonlCodec", "SquirrelCoreMessagepackCodec"]

_ARRAY_FIELDS = frozenset({"data", "type", "shape"})
"""The fields of an array in squirrel-core's jsonl, and its only fields."""

_JSON_DTYPE = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248]|U[0-9]{1,9})")
"""The ``dtype.str`` of the arrays jsonl can hold: bool, int, uint, float and str; never object or void."""

_MAX_NDIM = 64
"""numpy's limit on dimensions."""

_ARRAY_SLACK_BYTES = 1 << 20
"""Arrays of a jsonl shard may take 8 times the shard's text plus this much: enough for any array written
from real data, too little for a short line declaring a vast str dtype."""


def _field(obj: dict[Any, Any], name: str) -> Any:
    return obj[name.encode()] if name.encode() in obj else obj[name]


def _dtype(descr: Any) -> np.dtype[Any]:
    if isinstance(descr, bytes):
        descr = descr.decode("ascii")
    if isinstance(descr, list | tuple):
        descr = [(_text(f[0]), _dtype(f[1]), *[tuple(s) for s in f[2:]]) for f in descr]
    dtype = dtype_from_text(descr) if isinstance(descr, str) else np.dtype(descr)
    if dtype.hasobject:
        raise UnsafePayloadError(f"refusing a numpy array of dtype {dtype}: object arrays need pickle")
    return dtype


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _numpy_hook(obj: dict[Any, Any]) -> Any:
    """msgpack-numpy's array and scalar maps -> numpy, without ever unpickling."""
    if b"nd" not in obj and "nd" not in obj:
        if (b"complex" in obj or "complex" in obj) and len(obj) == 2:
            return complex(_text(_field(obj, "data")))
        return obj
    if _field(obj, "nd") is True:
        kind = _field(obj, "kind") if (b"kind" in obj or "kind" in obj) else b""
        if kind in (b"O", "O"):
            raise UnsafePayloadError("refusing a msgpack-numpy object array: decoding it would unpickle data")
        dtype = _dtype(_field(obj, "type"))
        shape = tuple(_field(obj, "shape"))
        data = _field(obj, "data")
        return np.frombuffer(data, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
    return np.frombuffer(_field(obj, "data"), dtype=_dtype(_field(obj, "type")))[0]


def _sample(value: Any, shard_key: str, index: int) -> Sample:
    key = value.get("key") if isinstance(value, dict) else None
    try:
        return Sample(value, validate_key(key))
    except ValueError:
        return Sample(value, f"{shard_key}:{index}")


def _shard_key(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return name[: -len(".gz")] if name.endswith(".gz") else name


class SquirrelCoreMessagepackCodec:
    """squirrel-core's messagepack shards (the content inside the gzip)."""

    suffix = ""

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Concatenated msgpack maps of the samples' values, arrays in msgpack-numpy's form."""

        def default(obj: Any) -> Any:
            if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
                raise EncodeError(f"cannot store a numpy array of dtype {obj.dtype} (object arrays)")
            encoded = msgpack_numpy.encode(obj)
            if encoded is obj:
                raise EncodeError(f"cannot store a value of type {type(obj).__qualname__}")
            return encoded

        try:
            return b"".join(msgpack.packb(s.value, use_bin_type=True, default=default) for s in samples)
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot store value in squirrel-core messagepack: {exc}") from None

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Every sample map in `data`; truncation or garbage raises `DecodeError` naming `source`."""
        unpacker = msgpack.Unpacker(
            raw=False, object_hook=_numpy_hook, strict_map_key=False, max_buffer_size=max(len(data), 1)
        )
        unpacker.feed(data)
        shard_key = _shard_key(source)
        samples: list[Sample] = []
        try:
            for value in unpacker:
                samples.append(_sample(value, shard_key, len(samples)))
        except UnsafePayloadError as exc:
            raise UnsafePayloadError(f"{source}: {exc}") from None
        except Exception as exc:
            raise DecodeError(f"{source}: not valid squirrel-core messagepack ({type(exc).__name__}: {exc})") from None
        if unpacker.tell() != len(data):
            raise DecodeError(f"{source}: truncated squirrel-core messagepack shard")
        return samples


def _brief(value: Any, limit: int = 60) -> str:
    """`value`'s repr for an error message, cut to `limit` characters (stored text can be any size)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_dtype(text: Any) -> np.dtype[Any]:
    """The dtype a jsonl array's ``"type"`` names, checked against `_JSON_DTYPE` before numpy parses it."""
    if not isinstance(text, str) or not _JSON_DTYPE.fullmatch(text):
        raise DecodeError(
            f"array type {_brief(text)} is not a numpy dtype squirrel-core jsonl holds (bool, int, uint, float or "
            "str as dtype.str writes them, e.g. '<f4'; object and other dtypes are refused)"
        )
    try:
        return np.dtype(text)
    except TypeError as exc:  # a str dtype too wide for numpy
        raise DecodeError(f"array type {_brief(text)} is too large for numpy ({exc})") from None


def _json_shape(shape: Any) -> tuple[int, ...]:
    """A jsonl array's ``"shape"``: a list of at most 64 non-negative ints."""
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(type(n) is int and n >= 0 for n in shape):
        raise DecodeError(f"array shape {_brief(shape)} is not a list of at most {_MAX_NDIM} non-negative ints")
    return tuple(shape)


def _parsed_data(data: Any, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """`data` as numpy infers it, checked to hold values of `dtype`'s kind that fit it."""
    try:
        found = np.array(data)
    except ValueError as exc:
        raise DecodeError(f"array data is not a regular nested list ({exc})") from None
    if found.size == 0:
        return found
    allowed = {"b": "b", "i": "iu", "u": "iu", "f": "iuf", "U": "U"}[dtype.kind]
    if found.dtype.kind not in allowed:
        raise DecodeError(f"array data holds {found.dtype} values, not values of its type {dtype}")
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if found.min() < limits.min or found.max() > limits.max:
            raise DecodeError(f"array data is out of range for its type {dtype}")
    if dtype.kind == "U" and found.dtype.itemsize > dtype.itemsize:
        raise DecodeError(f"array data holds strings longer than its type {dtype} allows")
    return found


def _array_from_json(data: Any, type_text: Any, shape_list: Any, limit: int) -> np.ndarray[Any, Any]:
    """The array squirrel-core's encoder wrote as `data`, `type_text` and `shape_list`, checked strictly.

    Raises `DecodeError` (without the source: the codec adds it) for a dtype outside `_JSON_DTYPE`, a shape
    that is no list of ints or that `data` does not have, values that do not fit the dtype, or an array
    over `limit` bytes. numpy only ever parses a dtype string that passed `_JSON_DTYPE`.
    """
    dtype = _json_dtype(type_text)
    shape = _json_shape(shape_list)
    size = math.prod(shape)
    if size * dtype.itemsize > limit:
        raise DecodeError(
            f"array shape {_brief(list(shape))} of {dtype} is too large ({size * dtype.itemsize} bytes, over "
            f"{limit} for this shard)"
        )
    found = _parsed_data(data, dtype)
    listed = shape[: shape.index(0) + 1] if 0 in shape else shape  # what arr.tolist() nests to
    if found.shape != listed:
        raise DecodeError(
            f"array data of shape {_brief(list(found.shape))} does not match its shape {_brief(list(shape))}"
        )
    if size == 0:
        try:
            return np.empty(shape, dtype)
        except ValueError as exc:
            raise DecodeError(f"array shape {_brief(list(shape))} is too large for numpy ({exc})") from None
    try:
        with np.errstate(over="raise", invalid="raise"):
            return found.astype(dtype)
    except FloatingPointError:
        raise DecodeError(f"array data is out of range for its type {dtype}") from None


def _array_hook(obj: dict[str, Any], limit: int) -> Any:
    """json's object hook: an object of exactly squirrel-core's array fields -> ndarray; others unchanged."""
    if len(obj) != len(_ARRAY_FIELDS) or obj.keys() != _ARRAY_FIELDS:
        return obj
    return _array_from_json(obj["data"], obj["type"], obj["shape"], limit)


def _json_default(obj: Any) -> Any:
    """squirrel-core's encoding of numpy in jsonl: arrays as data/type/shape objects, scalars as numbers."""
    if isinstance(obj, np.ndarray) and _JSON_DTYPE.fullmatch(obj.dtype.str):
        return {"data": obj.tolist(), "type": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic) and obj.dtype.kind in "biuf" and _JSON_DTYPE.fullmatch(obj.dtype.str):
        return obj.item()
    if isinstance(obj, np.ndarray | np.generic):
        what = f"numpy {type(obj).__name__} of dtype {obj.dtype}"
    else:
        what = f"value of type {type(obj).__module__}.{type(obj).__qualname__}"
    raise EncodeError(
        f"cannot store a {what} in squirrel-core jsonl "
        "(numpy bool, int, uint, float and str arrays, and plain JSON values, only)"
    )


def _json_line(sample: Sample) -> str:
    """`sample`'s value as one line of squirrel-core jsonl; `EncodeError` naming its key if JSON cannot hold it."""
    try:
        return json.dumps(sample.value, default=_json_default) + "\n"
    except EncodeError as exc:
        raise EncodeError(f"sample {sample.key!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"sample {sample.key!r}: cannot store value in squirrel-core jsonl: {exc}") from None


class SquirrelCoreJsonlCodec:
    """squirrel-core's jsonl shards (the content inside the gzip): one sample dict per line."""

    suffix = ""

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """One JSON object (the sample's value) per line, numpy as squirrel-core writes it.

        Raises `EncodeError` naming the sample's key for a value JSON cannot hold (bytes, complex, object
        arrays, custom objects).
        """
        return "".join(map(_json_line, samples)).encode()

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Every non-empty line as a sample, arrays as numpy; a bad line raises `DecodeError` naming `source`
        and the line's number."""
        shard_key = _shard_key(source)
        hook = functools.partial(_array_hook, limit=8 * len(data) + _ARRAY_SLACK_BYTES)
        samples: list[Sample] = []
        for number, line in enumerate(bytes(data).split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                samples.append(_sample(json.loads(line, object_hook=hook), shard_key, len(samples)))
            except DecodeError as exc:
                raise DecodeError(f"{source}: line {number}: {exc}") from None
            except (ValueError, RecursionError) as exc:
                raise DecodeError(f"{source}: line {number} is not JSON ({exc})") from None
        return samples
