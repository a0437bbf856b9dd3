"""`AsyncFileDriver`: one file at a URL (a model checkpoint, say), opened for async reading or writing.

``async with AsyncFileDriver(url).get_store("rb") as f: data = await f.read()``. The file object is an
aiofiles one (``read``, ``write``, ``readline``, ``seek``, ``async for line in f``), in binary or text mode:

- reading a local file opens it directly; on any other filesystem the object is first downloaded to a
  temporary file (gcsfs has no async file object), so memory stays bounded whatever its size;
- writing goes to a temporary file, committed only when the block exits without an error: renamed over
  the target on local disk, uploaded to an object store. Readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from typing import Any

import aiofiles
from fsspec.asyn import AsyncFileSystem

from squirrel.aio.fs import acquire_filesystem, check_storage_options, is_local, release_filesystem, split_protocol

MODES = ("rb", "r", "wb", "w", "ab")
"""The modes a file can be opened in."""


def check_mode(mode: str) -> str:
    """Return `mode` if it is one of `MODES`, else raise `ValueError` listing them."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    return mode


def missing_folder_error(url: str) -> FileNotFoundError:
    """The error for writing to a local file whose folder does not exist."""
    return FileNotFoundError(f"the folder of {url} does not exist (pass create_if_not_exists=True to make it)")


class AsyncFileDriver:
    """One file at `url` on any fsspec filesystem, opened with ``async with driver.get_store(mode) as f``."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        check_storage_options(split_protocol(url)[0], storage_options)
        self.url = url
        self.storage_options = storage_options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def get_store(self, mode: str = "rb", create_if_not_exists: bool = False) -> AsyncFile:
        """An async context manager giving the file opened in `mode` (one of `MODES`).

        `create_if_not_exists` makes missing parent folders of a local file being written (object stores
        need none). A missing file in a read mode raises `FileNotFoundError` naming the url.
        """
        return AsyncFile(self.url, check_mode(mode), create_if_not_exists, self.storage_options)


class AsyncFile:
    """The file of an `AsyncFileDriver`: open on ``__aenter__``, closed (and a write committed) on exit."""

    def __init__(self, url: str, mode: str, create_if_not_exists: bool, storage_options: dict[str, Any]) -> None:
        self.url = url
        self.mode = mode
        self.create_if_not_exists = create_if_not_exists
        self.storage_options = storage_options
        self._fs: AsyncFileSystem | None = None
        self._file: Any = None
        self._temp: str | None = None

    async def __aenter__(self) -> Any:
        self._fs = acquire_filesystem(split_protocol(self.url)[0], self.storage_options)
        try:
            self._file = await self._open(self._fs, self._fs._strip_protocol(self.url))
        except BaseException:
            await self._cleanup()
            raise
        return self._file

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            await self._file.close()
            if exc_type is None and "r" not in self.mode:
                await self._commit(self._fs, self._fs._strip_protocol(self.url))
        finally:
            await self._cleanup()

    async def _open(self, fs: AsyncFileSystem, path: str) -> Any:
        local = is_local(fs)
        if "r" in self.mode:
            try:
                if not local:
                    self._temp = _temp_path()
                    await fs._get_file(path, self._temp)
                return await aiofiles.open(self._temp or path, self.mode)
            except FileNotFoundError:
                raise FileNotFoundError(f"no file at {self.url}") from None
        if local:
            folder = os.path.dirname(path)
            if self.create_if_not_exists:
                os.makedirs(folder, exist_ok=True)
            elif not os.path.isdir(folder):
                raise missing_folder_error(self.url)
        self._temp = _temp_path(path if local else None)
        if "a" in self.mode and await fs._exists(path):
            await fs._get_file(path, self._temp)
        return await aiofiles.open(self._temp, self.mode)

    async def _commit(self, fs: AsyncFileSystem, path: str) -> None:
        if is_local(fs):
            os.replace(self._temp, path)
        else:
            await fs._put_file(self._temp, path)

    async def _cleanup(self) -> None:
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None
        if self._fs is not None:
            await release_filesystem(self._fs)
            self._fs = None


def _temp_path(beside: str | None = None) -> str:
    """A fresh temporary file: hidden beside `beside` (so a rename is atomic), else in the system's temp folder."""
    if beside is not None:
        folder, name = os.path.split(beside)
        return os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    handle, path = tempfile.mkstemp(prefix="squirrel-")
    os.close(handle)
    return path
