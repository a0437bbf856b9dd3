"""FileDriver and AsyncFileDriver on local disk, memory:// and gs:// (a real fake-gcs-server): the spec's
torch example, sync/async round trips in every mode, atomic async writes, and clear errors."""

from __future__ import annotations

import pytest

from squirrel.aio import AsyncFileDriver
from squirrel.driver.file_driver import FileDriver


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
def test_spec_torch_example_on_local_disk(tmp_path) -> None:
    run_spec_torch_example(str(tmp_path / "path" / "to" / "test_model.pt"))  # folders made by create_if_not_exists


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_spec_torch_example_on_gcs(gcs_url: str) -> None:
    run_spec_torch_example(f"{gcs_url}/path/to/my/bucket/test_model.pt")


async def test_sync_and_async_faces_read_each_other(store_url: str) -> None:
    url = f"{store_url}/folder/blob.bin"
    payload = bytes(range(256)) * 1000
    with FileDriver(url).get_store("wb", create_if_not_exists=True) as f:
        f.write(payload)
    async with AsyncFileDriver(url).get_store("rb") as f:
        assert await f.read() == payload
    async with AsyncFileDriver(url).get_store("ab") as f:
        await f.write(b"tail")
    with FileDriver(url).get_store("ab") as f:
        f.write(b"+sync")
    with FileDriver(url).get_store("rb") as f:
        assert f.read() == payload + b"tail+sync"
    async with AsyncFileDriver(f"{store_url}/notes.txt").get_store("w", create_if_not_exists=True) as f:
        await f.write("line one\nligne deux é\n")
    with FileDriver(f"{store_url}/notes.txt").get_store("r") as f:
        assert f.read() == "line one\nligne deux é\n"
    with FileDriver(f"{store_url}/notes.txt").get_store("w") as f:
        f.write("replaced\n")
    async with AsyncFileDriver(f"{store_url}/notes.txt").get_store("r") as f:
        assert [line async for line in f] == ["replaced\n"]


async def test_an_async_write_that_fails_leaves_nothing(store_url: str) -> None:
    url = f"{store_url}/model.pt"
    async with AsyncFileDriver(url).get_store("wb", create_if_not_exists=True) as f:
        await f.write(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        async with AsyncFileDriver(url).get_store("wb") as f:
            await f.write(b"half of the new")
            raise RuntimeError("boom")
    async with AsyncFileDriver(url).get_store("rb") as f:
        assert await f.read() == b"old"


async def test_errors_name_the_mode_and_the_url(store_url: str) -> None:
    with pytest.raises(ValueError, match=r"'xb'.*\['rb', 'r', 'wb', 'w', 'ab'\]"):
        FileDriver(f"{store_url}/x").get_store(mode="xb")
    with pytest.raises(ValueError, match="'rb', 'r', 'wb', 'w', 'ab'"):
        AsyncFileDriver(f"{store_url}/x").get_store(mode="a+")
    missing = f"{store_url}/missing.pt"
    with pytest.raises(FileNotFoundError, match=missing):
        FileDriver(missing).get_store("rb")
    with pytest.raises(FileNotFoundError, match=missing):
        async with AsyncFileDriver(missing).get_store("r"):
            pass


async def test_local_writes_need_the_folder_unless_asked_to_create_it(tmp_path) -> None:
    url = str(tmp_path / "new" / "folder" / "file.bin")
    with pytest.raises(FileNotFoundError, match="create_if_not_exists"):
        FileDriver(url).get_store("wb")
    with pytest.raises(FileNotFoundError, match="create_if_not_exists"):
        async with AsyncFileDriver(url).get_store("wb"):
            pass
    async with AsyncFileDriver(url).get_store("wb", create_if_not_exists=True) as f:
        await f.write(b"data")
    assert (tmp_path / "new" / "folder" / "file.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "new" / "folder").iterdir()] == ["file.bin"]  # no temp file left
