"""Where a store's objects live: root, object paths and URLs, suffix. I/O-free, computed at construction.

Both faces and every store class share it, so a fresh store object knows its paths before it has
touched a filesystem (a store's `exists` and `delete` work on their first call).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squirrel.aio.fs import filesystem_class_and_options
from squirrel.aio.storage_options import split_protocol
from squirrel.codec.compression import COMPRESSIONS
from squirrel.index import INDEX_NAME
from squirrel.sample import validate_key

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["FORMAT_SUFFIXES", "Layout", "format_suffix", "reader_of"]

FORMAT_SUFFIXES = {".msgpack": "messagepack", ".jsonl": "jsonl", ".csv": "csv"}
"""The suffix of each driver's objects (a record store's too: ".msgpack"), before any compression suffix."""


def _without_compression(name: str) -> tuple[str, str | None]:
    """`name` without its compression suffix, and the compression that suffix names (None for none)."""
    for compression, suffix in COMPRESSIONS.items():
        if suffix and name.endswith(suffix):
            return name[: -len(suffix)], compression
    return name, None


def format_suffix(name: str) -> str | None:
    """The suffix of a listed object name if it is one of squirrel's formats (compression included), else None."""
    stem, _ = _without_compression(name)
    for suffix in FORMAT_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix) and not name.startswith("."):
            return name[len(stem) - len(suffix) :]
    return None


def reader_of(suffix: str) -> str:
    """How to read objects ending in `suffix` (one of `format_suffix`'s answers), for error messages."""
    stem, compression = _without_compression(suffix)
    return f"driver {FORMAT_SUFFIXES[stem]!r}, compression={compression!r}"


@dataclass(frozen=True)
class Layout:
    """The objects of a store at `url`: ``<root>/<key><suffix>``, plus the index at the root.

    `root` is the url as its filesystem names paths (protocol stripped, local paths absolute).
    """

    url: str
    protocol: str
    root: str
    suffix: str

    @classmethod
    def of(cls, url: str, suffix: str, storage_options: dict[str, object]) -> Layout:
        """The layout of a store at `url` whose objects end in `suffix`."""
        url = url.rstrip("/") or url
        protocol, _ = split_protocol(url)
        fs_class, _ = filesystem_class_and_options(protocol, dict(storage_options))
        root = fs_class._strip_protocol(url).rstrip("/") or "/"
        return cls(url, protocol, root, suffix)

    @property
    def on_local_disk(self) -> bool:
        """Whether the store is a local folder (read with plain system calls, no filesystem object needed)."""
        return self.protocol in ("file", "local")

    def path(self, key: str) -> str:
        """The filesystem path of the object that holds `key` (`ValueError` for a bad key)."""
        return f"{self.root}/{validate_key(key)}{self.suffix}"

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key`."""
        return f"{self.url}/{key}{self.suffix}"

    @property
    def index_path(self) -> str:
        """The filesystem path of the store's index."""
        return f"{self.root}/{INDEX_NAME}"

    @property
    def index_url(self) -> str:
        """The full URL of the store's index."""
        return f"{self.url}/{INDEX_NAME}"

    def key_of(self, name: str) -> str | None:
        """The key of a listed object's base name, or None when it is not one of this store's objects."""
        if name.endswith(self.suffix) and not name.startswith(".") and len(name) > len(self.suffix):
            return name[: -len(self.suffix)]
        return None

    def nothing_found(self, names: Iterable[str]) -> FileNotFoundError:
        """The error for a reader that found no object of this layout among the root's `names`: it names the
        url and the suffix looked for, and says what the url holds instead (the objects of other formats,
        with the driver and compression that read them), or that nothing is there at all."""
        looked = f"{self.url} holds no object ending in {self.suffix!r}"
        shown_names = [name for name in names if not name.startswith(".")]
        found = Counter(suffix for name in shown_names if (suffix := format_suffix(name)) is not None)
        if found:
            other = "; ".join(
                f"{count} ending in {suffix!r} ({reader_of(suffix)})" for suffix, count in found.most_common()
            )
            hint = f"it holds {other}"
        elif shown_names:
            shown = ", ".join(repr(name) for name in shown_names[:3]) + (", ..." if len(shown_names) > 3 else "")
            hint = f"it holds {len(shown_names)} other file(s) ({shown}), none of them squirrel's"
        else:
            hint = "nothing is there (a typo in the path?"
            if self.protocol == "file" and not self.url.startswith(("/", ".", "~", "file:")):
                hint += f" A bucket is read as gs://{self.url}"
            hint += ")"
        return FileNotFoundError(f"{looked}: {hint}. Pass allow_empty=True to read an empty store as empty.")

    def keys_of(self, names: Iterable[str]) -> list[str]:
        """The sorted keys of those listed base `names` that are this store's objects (see `key_of`)."""
        suffix, cut = self.suffix, -len(self.suffix)
        return sorted(name[:cut] for name in names if name.endswith(suffix) and name[0] != "." and name != suffix)
