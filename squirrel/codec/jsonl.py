"""Jsonl shards: one ``{"key": ..., "value": ...}`` JSON object per line, human-readable.

Numpy arrays become nested lists and numpy scalars plain numbers, so dtypes are not preserved, and int
dict keys come back as strings (JSON objects have string keys). Bytes cannot be stored: use messagepack.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel.errors import DecodeError, EncodeError
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from collections.abc import Sequence

    from squirrel.codec.base import Buffer

__all__ = ["JsonlCodec"]


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise EncodeError(f"cannot store a numpy array of dtype {obj.dtype} (object arrays)")
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise EncodeError(
        f"cannot store a value of type {type(obj).__module__}.{type(obj).__qualname__} in jsonl "
        "(bytes and custom objects need the messagepack driver)"
    )


class JsonlCodec:
    """Encode and decode jsonl shards."""

    suffix = ".jsonl"

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """One JSON object per sample, each on its own line."""
        try:
            lines = [
                json.dumps({"key": s.key, "value": s.value}, default=_default, ensure_ascii=False) for s in samples
            ]
            return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
        except EncodeError:
            raise
        except (TypeError, ValueError) as exc:  # ValueError includes UnicodeEncodeError (lone surrogates)
            raise EncodeError(f"cannot store value in jsonl: {exc}") from None

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Parse every non-empty line; a bad line raises `DecodeError` with its line number."""
        samples: list[Sample] = []
        for number, line in enumerate(bytes(data).split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                samples.append(Sample(record["value"], validate_key(record["key"])))
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                raise DecodeError(
                    f"{source}: line {number} is not a squirrel jsonl record ({type(exc).__name__}: {exc})"
                ) from None
        return samples
