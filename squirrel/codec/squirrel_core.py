"""Read (and write) datasets in squirrel-core 0.20's formats, so its users move over without converting.

squirrel-core's MessagepackDriver stores a shard as ``<key>.gz``: gzip of concatenated msgpack maps, one
per sample, numpy arrays encoded the msgpack-numpy way (maps with ``nd``, ``type``, ``shape``, ``data``).
Its JsonlDriver stores gzip of JSON lines, one sample dict per line. Samples are plain dicts; their
squirrel key is the dict's ``"key"`` when that is a valid key, else ``"<shard>:<index>"``.
msgpack-numpy unpickles object arrays; this decoder refuses them.
"""

from __future__ import annotations

import json
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


class SquirrelCoreJsonlCodec:
    """squirrel-core's jsonl shards (the content inside the gzip): one sample dict per line."""

    suffix = ""

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """One JSON object (the sample's value) per line."""
        try:
            return "".join(json.dumps(s.value) + "\n" for s in samples).encode()
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"cannot store value in squirrel-core jsonl: {exc}") from None

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Every non-empty line as a sample; a bad line raises `DecodeError` with its number."""
        shard_key = _shard_key(source)
        samples: list[Sample] = []
        for number, line in enumerate(bytes(data).split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                samples.append(_sample(json.loads(line), shard_key, len(samples)))
            except (ValueError, RecursionError) as exc:
                raise DecodeError(f"{source}: line {number} is not JSON ({exc})") from None
        return samples
