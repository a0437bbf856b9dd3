"""One file at a URL (a model checkpoint, say), opened for reading or writing: the core of both faces.

``async with AsyncFileDriver(url).get_store("rb") as f: data = await f.read()`` gives an aiofiles file
object (``read``, ``write``, ``readline``, ``seek``, ``async for line in f``), in binary or text mode; its
blocking twin `squirrel.driver.file_driver.FileDriver` gives a plain file object. Both stand on
`StagedFile`, which does all the work that touches a filesystem, so they behave alike everywhere:

- reading a local file opens it directly; on any other filesystem the object is first downloaded to a
  temporary file (gcsfs has no async file object), so memory stays bounded whatever its size;
- writing goes to a temporary file (hidden beside the target on local disk, so the rename is atomic; in
  the system's temp folder for object stores), committed only when the block exits without an error:
  renamed over the target on local disk, uploaded to an object store. Readers never see a half-written
  file, and a block that fails leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
import uuid
from typing import IO, TYPE_CHECKING, Any

import aiofiles

from squirrel.aio.fs import acquire_filesystem, is_local, release_filesystem
from squirrel.aio.storage_options import check_storage_options, split_protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractAsyncContextManager
    from typing import TypeAlias

    from fsspec.asyn import AsyncFileSystem

    Opener: TypeAlias = Callable[[str, str, str | None], Awaitable[Any]]
    """Opens a staged file: ``await opener(path, mode, encoding)`` gives the file object of a face."""

__all__ = [
    "MODES",
    "AsyncFile",
    "AsyncFileDriver",
    "FileDriverBase",
    "StagedFile",
    "check_mode",
    "missing_folder_error",
    "open_aiofile",
    "open_plain_file",
]

MODES = ("rb", "r", "wb", "w", "ab")
"""The modes a file can be opened in."""

TEXT_ENCODING = "utf-8"
"""The encoding of text modes ("r", "w"), whatever the machine's locale: files outlive the machine."""


def check_mode(mode: str) -> str:
    """Return `mode` if it is one of `MODES`, else raise `ValueError` listing them."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    return mode


def missing_folder_error(url: str) -> FileNotFoundError:
    """The error for writing to a local file whose folder does not exist."""
    return FileNotFoundError(f"the folder of {url} does not exist (pass create_if_not_exists=True to make it)")


class StagedFile:
    """One opening of the file at `url`, staged as a local file that the caller reads or writes itself.

    `open` (a coroutine) returns the local path to open with any file API, in `mode`, with `encoding`:
    for reading, the local file itself or a download of the object into a temp file; for writing, a new
    temp file, holding a copy of the old content first in "ab". `close(commit)` ends the opening: in a
    write mode and with ``commit=True`` the temp file replaces the target (`os.replace` on local disk, an
    upload on object stores); in every case the temp file is removed and the filesystem released. The
    target is therefore only touched by a commit, never by a failed block.

    Both coroutines run on one event loop (the filesystem is bound to it); the caller closes its own file
    object on the staged path before `close`. One opening at a time: `open` again only after `close`.
    """

    def __init__(self, url: str, mode: str, create_if_not_exists: bool, storage_options: dict[str, Any]) -> None:
        self.url = url
        self.mode = check_mode(mode)
        self.create_if_not_exists = create_if_not_exists
        self.storage_options = storage_options
        self._fs: AsyncFileSystem | None = None
        self._temp: str | None = None

    @property
    def writing(self) -> bool:
        """Whether the mode writes (and so a clean exit commits)."""
        return "r" not in self.mode

    @property
    def encoding(self) -> str | None:
        """The encoding to open the staged file with: `TEXT_ENCODING` in a text mode, None in a binary one."""
        return None if "b" in self.mode else TEXT_ENCODING

    async def open(self) -> str:
        """Stage the file and return the local path to open in `mode`.

        Raises `FileNotFoundError` naming the url for a missing file in a read mode, or saying to pass
        ``create_if_not_exists=True`` for a local file to write whose folder is missing; `RuntimeError`
        if this opening is already open. Nothing is left behind when it raises.
        """
        if self._fs is not None:
            raise RuntimeError(f"{self.url} is already open; close it before opening it again")
        self._fs = acquire_filesystem(split_protocol(self.url)[0], self.storage_options)
        try:
            return await self._stage(self._fs, self._fs._strip_protocol(self.url))
        except BaseException:
            await self.close(commit=False)
            raise

    async def close(self, commit: bool) -> None:
        """End the opening: commit a write if `commit` (the block exited cleanly), then clean up always.

        Raises what the commit raises (the upload of an object store, say): the target is then unchanged.
        Calling it when not open does nothing.
        """
        try:
            if commit and self.writing and self._fs is not None and self._temp is not None:
                await self._commit(self._fs, self._fs._strip_protocol(self.url), self._temp)
        finally:
            await self._cleanup()

    async def _stage(self, fs: AsyncFileSystem, path: str) -> str:
        """The local path to open for `path` on `fs`, staging a temp file where one is needed (see `open`)."""
        local = is_local(fs)
        if not self.writing:
            if local:
                if not await fs._exists(path):
                    raise FileNotFoundError(f"no file at {self.url}")
                return path
            self._temp = _new_temp_file()
            try:
                await fs._get_file(path, self._temp)
            except FileNotFoundError:
                raise FileNotFoundError(f"no file at {self.url}") from None
            return self._temp
        if local:
            folder = os.path.dirname(path)
            if self.create_if_not_exists:
                await fs._makedirs(folder, exist_ok=True)
            elif not await fs._isdir(folder):
                raise missing_folder_error(self.url)
        self._temp = _new_temp_file(beside=path if local else None)
        if "a" in self.mode and await fs._exists(path):
            await fs._get_file(path, self._temp)
        return self._temp

    async def _commit(self, fs: AsyncFileSystem, path: str, temp: str) -> None:
        """Make the staged `temp` the file at `path`: a rename on local disk (atomic, temp beside it), else an
        upload (an object store replaces an object whole)."""
        if is_local(fs):
            os.replace(temp, path)
            self._temp = None
        else:
            await fs._put_file(temp, path)

    async def _cleanup(self) -> None:
        """Remove the temp file (if any is left) and release the filesystem; safe to call twice."""
        temp, fs = self._temp, self._fs
        self._temp = self._fs = None
        if temp is not None:  # first, and without awaiting: even a cancelled cleanup removes it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if fs is not None:
            await release_filesystem(fs)


def _new_temp_file(beside: str | None = None) -> str:
    """Create an empty temporary file and return its path: hidden beside `beside` (so a rename over it is
    atomic; named like `squirrel.aio.stores.local`'s temp files), else in the system's temp folder."""
    if beside is None:
        handle, path = tempfile.mkstemp(prefix="squirrel-")
    else:
        folder, name = os.path.split(beside)
        path = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(handle)
    return path


async def open_aiofile(path: str, mode: str, encoding: str | None) -> Any:
    """The staged file at `path` as an aiofiles file object (the async face's)."""
    opener: Callable[..., Awaitable[Any]] = aiofiles.open  # its stubs want a literal mode
    return await opener(path, mode, encoding=encoding)


async def open_plain_file(path: str, mode: str, encoding: str | None) -> IO[Any]:
    """The staged file at `path` as a plain file object (the blocking face's: its reads and writes then cost
    no trip to the IO loop). Opening a local file does not wait on anything worth a thread hop."""
    return open(path, mode, encoding=encoding)  # noqa: ASYNC230  # the caller's `with` closes it


class FileDriverBase:
    """The url, the storage options and `get_store`, shared by the async and the blocking file drivers."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        """Remember `url` and gcsfs-style `storage_options`; `ValueError` for an unsupported url or a bad
        ``max_connections``, `TypeError` for an option the url's filesystem does not take (checked now, so
        errors come before any file is opened)."""
        check_storage_options(split_protocol(url)[0], storage_options, url=url, parameters=type(self).__init__)
        self.url = url
        self.storage_options = storage_options

    def __repr__(self) -> str:
        """``FileDriver('gs://bucket/model.pt')``."""
        return f"{type(self).__name__}({self.url!r})"

    def _file(self, mode: str, create_if_not_exists: bool, opener: Opener) -> AsyncFile:
        """The `AsyncFile` for this url; `ValueError` listing `MODES` for an unknown `mode`."""
        return AsyncFile(StagedFile(self.url, mode, create_if_not_exists, self.storage_options), opener)


class AsyncFileDriver(FileDriverBase):
    """One file at `url` on any fsspec filesystem, opened with ``async with driver.get_store(mode) as f``."""

    def get_store(self, mode: str = "rb", create_if_not_exists: bool = False) -> AbstractAsyncContextManager[Any]:
        """A context manager giving the file opened in `mode` (one of `MODES`): an aiofiles file object here,
        a plain file object on the blocking face (`squirrel.driver.file_driver.FileDriver`).

        `create_if_not_exists` makes missing parent folders of a local file being written (object stores
        need none). Raises `ValueError` for an unknown mode now; on entering the block, `FileNotFoundError`
        naming the url for a missing file in a read mode, or for a missing local folder to write in. A write
        lands only when the block exits without an error.
        """
        return self._file(mode, create_if_not_exists, open_aiofile)


class AsyncFile:
    """A staged file: opened (with `opener`) on ``__aenter__``; closed, and a write committed, on exit."""

    def __init__(self, staged: StagedFile, opener: Opener) -> None:
        """Wrap `staged`, not yet open."""
        self._staged = staged
        self._opener = opener
        self._file: Any = None

    async def __aenter__(self) -> Any:
        """Stage the file and open it; raises what `StagedFile.open` raises."""
        path = await self._staged.open()
        try:
            self._file = await self._opener(path, self._staged.mode, self._staged.encoding)
        except BaseException:
            await self._staged.close(commit=False)
            raise
        return self._file

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """Close the file; commit a write only if the block raised nothing; always clean up."""
        clean = False
        try:
            file, self._file = self._file, None
            if file is not None and inspect.isawaitable(closed := file.close()):
                await closed
            clean = exc_type is None  # a failed close (a write that did not flush) commits nothing either
        finally:
            await self._staged.close(commit=clean)
