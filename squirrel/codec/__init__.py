"""Pure codecs: bytes <-> lists of `Sample`, with no I/O and no asyncio.

Each codec has a file `suffix`, `encode(samples) -> bytes` and `decode(data, source) -> list[Sample]`.
Decoding never unpickles; bad bytes raise `squirrel.errors.DecodeError` naming `source`.
"""

from squirrel.codec.base import Codec
from squirrel.codec.compression import COMPRESSIONS, compress, decompress
from squirrel.codec.csv import CsvCodec
from squirrel.codec.jsonl import JsonlCodec
from squirrel.codec.messagepack import MessagepackCodec, pack_value, unpack_value

__all__ = [
    "COMPRESSIONS",
    "Codec",
    "CsvCodec",
    "JsonlCodec",
    "MessagepackCodec",
    "compress",
    "decompress",
    "pack_value",
    "unpack_value",
]
