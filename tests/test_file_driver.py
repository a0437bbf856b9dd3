"""FileDriver and AsyncFileDriver on local disk, memory:// and gs:// (a real fake-gcs-server).

One suite runs every behaviour on both faces (the `face` fixture: the blocking `FileDriver` and the async
`AsyncFileDriver`) and on every filesystem (`store_url`): round trips in each mode, appends, atomic writes
(a block that raises leaves the previous file as it was, and no temp file), and clear errors. Then the
spec's torch example, each face reading what the other wrote, and what only one face has.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from squirrel._runtime import io_loop, run_sync
from squirrel.aio import AsyncFileDriver
from squirrel.aio import fs as aio_fs
from squirrel.aio.file_driver import MODES, check_mode, missing_folder_error
from squirrel.aio.storage_options import split_protocol
from squirrel.driver.file_driver import FileDriver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PAYLOAD = bytes(range(256)) * 1000
TEXT = "line one\nligne deux é\n"


class Boom(Exception):
    """The error a block raises half-way through a write."""


class Face(Protocol):
    """One face of the file driver, driven through the same few operations."""

    name: str

    async def write(self, url: str, mode: str, *chunks: Any, create: bool = False, fail: bool = False) -> None:
        """Open `url` in `mode`, write `chunks`, then raise `Boom` if `fail`."""

    async def read(self, url: str, mode: str = "rb") -> Any:
        """The whole content of `url`, read in `mode`."""

    async def enter(self, url: str, mode: str, create: bool = False) -> None:
        """Open `url` in `mode` and close it again, doing nothing in between."""


class SyncFace:
    name = "sync"

    async def write(self, url: str, mode: str, *chunks: Any, create: bool = False, fail: bool = False) -> None:
        with FileDriver(url).get_store(mode, create_if_not_exists=create) as f:
            assert isinstance(f, io.IOBase)  # a plain blocking file object, as torch.jit.save needs
            for chunk in chunks:
                f.write(chunk)
            if fail:
                raise Boom("half-way")

    async def read(self, url: str, mode: str = "rb") -> Any:
        with FileDriver(url).get_store(mode) as f:
            assert isinstance(f, io.IOBase)
            return f.read()

    async def enter(self, url: str, mode: str, create: bool = False) -> None:
        with FileDriver(url).get_store(mode, create_if_not_exists=create):
            pass


class AsyncFace:
    name = "async"

    async def write(self, url: str, mode: str, *chunks: Any, create: bool = False, fail: bool = False) -> None:
        async with AsyncFileDriver(url).get_store(mode, create_if_not_exists=create) as f:
            for chunk in chunks:
                await f.write(chunk)
            if fail:
                raise Boom("half-way")

    async def read(self, url: str, mode: str = "rb") -> Any:
        async with AsyncFileDriver(url).get_store(mode) as f:
            return await f.read()

    async def enter(self, url: str, mode: str, create: bool = False) -> None:
        async with AsyncFileDriver(url).get_store(mode, create_if_not_exists=create):
            pass


@pytest.fixture(params=[SyncFace(), AsyncFace()], ids=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Face:
    """The blocking face, then the async one."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The system temp folder, pointed at an empty folder that must be empty again once the test is done
    (object stores stage their downloads and uploads there)."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def local_files(store_url: str) -> list[str] | None:
    """The names in the local folder of `store_url` (temp files included), None for other filesystems."""
    if "://" in store_url:
        return None
    return sorted(os.listdir(store_url)) if os.path.isdir(store_url) else []


# -- one suite, both faces, every filesystem --


@pytest.mark.parametrize(("write_mode", "read_mode", "content"), [("wb", "rb", PAYLOAD), ("w", "r", TEXT)])
async def test_a_round_trip_in_each_mode(
    face: Face, store_url: str, staging: Path, write_mode: str, read_mode: str, content: Any
) -> None:
    url = f"{store_url}/folder/file"
    await face.write(url, write_mode, content[:1000], content[1000:], create=True)
    assert await face.read(url, read_mode) == content
    await face.write(url, write_mode, content[:10])  # overwrites
    assert await face.read(url, read_mode) == content[:10]
    if "://" not in store_url:
        assert os.listdir(os.path.join(store_url, "folder")) == ["file"]


async def test_text_modes_are_utf8_lines(face: Face, store_url: str, staging: Path) -> None:
    url = f"{store_url}/notes.txt"
    await face.write(url, "w", TEXT, create=True)
    assert await face.read(url, "rb") == TEXT.encode("utf-8")
    assert (await face.read(url, "r")).splitlines(keepends=True) == ["line one\n", "ligne deux é\n"]


async def test_append_adds_to_the_file_or_creates_it(face: Face, store_url: str, staging: Path) -> None:
    url = f"{store_url}/log.bin"
    await face.write(url, "ab", b"first", create=True)  # no file yet: created
    await face.write(url, "ab", b"+second", b"+third")
    assert await face.read(url) == b"first+second+third"


@pytest.mark.parametrize("mode", ["wb", "w", "ab"])
async def test_a_block_that_raises_leaves_the_previous_file(
    face: Face, store_url: str, staging: Path, mode: str
) -> None:
    url = f"{store_url}/model.pt"
    await face.write(url, "wb", b"old checkpoint", create=True)
    new = b"half of the new one" if "b" in mode else "half of the new one"
    with pytest.raises(Boom, match="half-way"):
        await face.write(url, mode, new, new, fail=True)
    assert await face.read(url) == b"old checkpoint"
    assert local_files(store_url) in (None, ["model.pt"])  # no temp file left beside it


async def test_a_block_that_raises_creates_nothing(face: Face, store_url: str, staging: Path) -> None:
    url = f"{store_url}/model.pt"
    with pytest.raises(Boom):
        await face.write(url, "wb", b"half", create=True, fail=True)
    with pytest.raises(FileNotFoundError, match="no file at"):
        await face.read(url)
    assert local_files(store_url) in (None, [])


@pytest.mark.parametrize("mode", ["rb", "r"])
async def test_a_missing_file_is_named(face: Face, store_url: str, staging: Path, mode: str) -> None:
    missing = f"{store_url}/missing.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no file at {missing}")):
        await face.read(missing, mode)


async def test_local_writes_need_the_folder_unless_asked_to_create_it(face: Face, tmp_path: Path) -> None:
    url = str(tmp_path / "new" / "folder" / "file.bin")
    for mode in ("wb", "w", "ab"):
        with pytest.raises(FileNotFoundError, match=r"pass create_if_not_exists=True"):
            await face.enter(url, mode)
    assert not (tmp_path / "new").exists()
    await face.write(url, "wb", b"data", create=True)
    assert (tmp_path / "new" / "folder" / "file.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "new" / "folder").iterdir()] == ["file.bin"]  # no temp file left


async def test_object_stores_need_no_folder(face: Face, store_url: str, staging: Path) -> None:
    if "://" not in store_url:
        pytest.skip("local disk needs create_if_not_exists (the test above)")
    url = f"{store_url}/deep/er/file.bin"
    await face.write(url, "wb", b"data")
    assert await face.read(url) == b"data"


async def test_an_unknown_mode_is_refused_by_get_store(face: Face, store_url: str) -> None:
    driver = FileDriver(f"{store_url}/x") if face.name == "sync" else AsyncFileDriver(f"{store_url}/x")
    for mode in ("xb", "a+", "a", "r+b"):
        with pytest.raises(ValueError, match=re.escape(f"{mode!r}; choose one of ['rb', 'r', 'wb', 'w', 'ab']")):
            driver.get_store(mode)


async def test_reads_can_seek_and_tell(face: Face, store_url: str, staging: Path) -> None:
    url = f"{store_url}/file.bin"
    await face.write(url, "wb", PAYLOAD, create=True)
    if face.name == "sync":
        with FileDriver(url).get_store("rb") as f:
            f.seek(1000)
            assert f.read(3) == PAYLOAD[1000:1003]
            assert f.tell() == 1003
    else:
        async with AsyncFileDriver(url).get_store("rb") as f:
            await f.seek(1000)
            assert await f.read(3) == PAYLOAD[1000:1003]
            assert await f.tell() == 1003


def _users(loop: asyncio.AbstractEventLoop, protocol: str) -> dict[str, int]:
    """How many users hold each shared filesystem of `protocol` on `loop`."""
    return {key: entry.users for key, entry in aio_fs._pool.by_loop.get(loop, {}).items() if key.startswith(protocol)}


async def test_every_opening_releases_its_filesystem(face: Face, store_url: str, staging: Path) -> None:
    url = f"{store_url}/file.bin"
    loop = io_loop() if face.name == "sync" else asyncio.get_running_loop()
    protocol = split_protocol(store_url)[0]
    before = _users(loop, f"{protocol}|")
    await face.write(url, "wb", b"data", create=True)
    with pytest.raises(Boom):
        await face.write(url, "ab", b"more", fail=True)
    with pytest.raises(FileNotFoundError):
        await face.read(f"{store_url}/missing")
    assert await face.read(url) == b"data"
    assert _users(loop, f"{protocol}|") == before  # other users (stores of other tests) may hold some


# -- the spec's example, and the two faces together --


def run_spec_torch_example(url: str) -> None:
    """The spec's two torch snippets, as written, with only the URL changed; then a check of the model."""
    # -- "Trace your model to TorchScript and save using file driver." --
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from squirrel.driver.file_driver import FileDriver

    class Model(nn.Module):
        def __init__(self):
            super(Model, self).__init__()  # noqa: UP008 (as the spec writes it)
            self.conv1 = nn.Conv2d(1, 20, 5)
            self.conv2 = nn.Conv2d(20, 20, 5)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            return F.relu(self.conv2(x))

    my_model = Model()

    with FileDriver(url).get_store(mode="wb", create_if_not_exists=True) as f:
        my_scripted_model = torch.jit.script(my_model)
        torch.jit.save(my_scripted_model, f)

    original = my_model

    # -- "Load a TorchScript model from a remote bucket." --
    import torch

    from squirrel.driver.file_driver import FileDriver

    with FileDriver(url).get_store(mode="rb") as f:
        my_model = torch.jit.load(f)

    # -- not in the spec: the loaded model computes what the saved one did --
    x = torch.rand(1, 1, 12, 12)
    torch.testing.assert_close(my_model(x), original(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_spec_torch_example_on_local_disk(tmp_path: Path) -> None:
    run_spec_torch_example(str(tmp_path / "path" / "to" / "test_model.pt"))  # folders made by create_if_not_exists


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_spec_torch_example_on_gcs(gcs_url: str) -> None:
    run_spec_torch_example(f"{gcs_url}/path/to/my/bucket/test_model.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_a_failed_torch_save_keeps_the_previous_checkpoint(store_url: str) -> None:
    import torch

    url = f"{store_url}/checkpoints/model.pt"
    with FileDriver(url).get_store(mode="wb", create_if_not_exists=True) as f:
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), f)
    with FileDriver(url).get_store(mode="rb") as f:
        before = f.read()
    with pytest.raises(Boom), FileDriver(url).get_store(mode="wb") as f:
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 3)), f)
        raise Boom("killed after the save, before the block ended")
    with FileDriver(url).get_store(mode="rb") as f:
        assert f.read() == before
        f.seek(0)
        assert torch.jit.load(f).weight.shape == (2, 2)


async def test_sync_and_async_faces_read_each_other(store_url: str, staging: Path) -> None:
    url = f"{store_url}/folder/blob.bin"
    with FileDriver(url).get_store("wb", create_if_not_exists=True) as f:
        f.write(PAYLOAD)
    async with AsyncFileDriver(url).get_store("rb") as f:
        assert await f.read() == PAYLOAD
    async with AsyncFileDriver(url).get_store("ab") as f:
        await f.write(b"tail")
    with FileDriver(url).get_store("ab") as f:
        f.write(b"+sync")
    with FileDriver(url).get_store("rb") as f:
        assert f.read() == PAYLOAD + b"tail+sync"
    async with AsyncFileDriver(f"{store_url}/notes.txt").get_store("w", create_if_not_exists=True) as f:
        await f.write(TEXT)
    with FileDriver(f"{store_url}/notes.txt").get_store("r") as f:
        assert f.read() == TEXT
    with FileDriver(f"{store_url}/notes.txt").get_store("w") as f:
        f.write("replaced\n")
    async with AsyncFileDriver(f"{store_url}/notes.txt").get_store("r") as f:
        assert [line async for line in f] == ["replaced\n"]


# -- the faces' surface --


def test_both_faces_have_the_same_public_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, list[inspect.Parameter]]:
        return {
            name: list(inspect.signature(member).parameters.values())
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name == "__init__"
        }

    assert public(FileDriver) == public(AsyncFileDriver)
    assert set(public(FileDriver)) == {"__init__", "get_store"}
    assert repr(FileDriver("memory://x/y")) == "FileDriver('memory://x/y')"
    assert repr(AsyncFileDriver("memory://x/y")) == "AsyncFileDriver('memory://x/y')"


def test_file_driver_imports_from_squirrel_driver_as_in_squirrel_core() -> None:
    import squirrel.driver

    assert squirrel.driver.FileDriver is FileDriver


def test_the_shared_helpers_stay_importable() -> None:
    assert MODES == ("rb", "r", "wb", "w", "ab")
    assert check_mode("ab") == "ab"
    assert "create_if_not_exists=True" in str(missing_folder_error("/x/y"))


def test_the_sync_face_refuses_the_io_loop_itself(tmp_path: Path) -> None:
    async def on_the_loop() -> None:
        with FileDriver(str(tmp_path / "file.bin")).get_store("wb"):
            pass

    with pytest.raises(RuntimeError, match="deadlock"):
        run_sync(on_the_loop())
    assert list(tmp_path.iterdir()) == []
