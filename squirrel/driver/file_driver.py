"""`FileDriver`: one file at a URL (a model checkpoint, say), opened as a blocking file object.

``with FileDriver(url).get_store(mode="wb", create_if_not_exists=True) as f: torch.jit.save(model, f)``.
Opened with fsspec's sync filesystem for the url (for gs:// with an endpoint, the same gcsfs class and
options as the async core); `squirrel.aio.AsyncFileDriver` is the async twin.
"""

from __future__ import annotations

import shutil
from typing import IO, Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from squirrel.aio.file_driver import check_mode, missing_folder_error
from squirrel.aio.fs import check_storage_options, filesystem_class_and_options, split_protocol


class FileDriver:
    """One file at `url` on any fsspec filesystem: ``with FileDriver(url).get_store("rb") as f: ...``."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        check_storage_options(split_protocol(url)[0], storage_options)
        self.url = url
        self.storage_options = storage_options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def get_store(self, mode: str = "rb", create_if_not_exists: bool = False) -> IO[Any]:
        """The file opened in `mode` ("rb", "r", "wb", "w", "ab"), to use in a ``with`` block.

        `create_if_not_exists` makes missing parent folders of a local file being written (object stores
        need none). A missing file in a read mode raises `FileNotFoundError` naming the url.
        """
        check_mode(mode)
        cls, options = filesystem_class_and_options(split_protocol(self.url)[0], self.storage_options)
        fs = cls(**options)
        path = fs._strip_protocol(self.url)
        local = isinstance(fs, LocalFileSystem)
        if local and create_if_not_exists and "r" not in mode:
            fs.makedirs(fs._parent(path), exist_ok=True)
        try:
            if mode == "ab" and not local and fs.exists(path):
                return _reopen_for_append(fs, path)
            return fs.open(path, mode)
        except FileNotFoundError:
            if "r" in mode:
                raise FileNotFoundError(f"no file at {self.url}") from None
            if local:
                raise missing_folder_error(self.url) from None
            raise


def _reopen_for_append(fs: AbstractFileSystem, path: str) -> IO[Any]:
    """Object stores cannot append (gcsfs would silently overwrite): rewrite the old content, then append.

    The old object is opened first, so it stays readable while it is copied into the new one.
    """
    with fs.open(path, "rb") as old:
        file = fs.open(path, "wb")
        shutil.copyfileobj(old, file)
    return file
