"""The GCS fixtures work with the real gcsfs client against a real fake-gcs-server process (no mocks).

Some tests pin down how gcsfs behaves against this server (listing prefixes, empty objects, ranges),
since the GCS store code relies on it. Always `gcsfs.core.GCSFileSystem`: `gcsfs.GCSFileSystem` (and
fsspec's "gs" class) is the extended class that asks Google's gRPC control API and hangs on a local server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import google_crc32c
import pytest
from gcsfs.core import GCSFileSystem
from gcsfs.retry import HttpError

from tests.gcs_server import GcsServer

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.gcs

DATA = b"line one\r\nline two\r\n\x00\xff\rend"


def connect(url: str, **options: object) -> GCSFileSystem:
    """A fresh gcsfs client for the server at `url`, without instance or listings caches."""
    return GCSFileSystem(endpoint_url=url, token="anon", skip_instance_cache=True, use_listings_cache=False, **options)


@pytest.fixture
def fs(gcs_server: GcsServer) -> GCSFileSystem:
    return connect(gcs_server.url)


@pytest.fixture
def own_server() -> Iterator[GcsServer]:
    """A server of this test's own, so stopping or killing it touches no other test."""
    server = GcsServer()
    server.start()
    yield server
    server.stop()


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_server_is_on_loopback_and_children_see_it(gcs_server: GcsServer) -> None:
    assert gcs_server.url == f"http://127.0.0.1:{gcs_server.port}"
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_server.url
    child = [sys.executable, "-c", "import os; print(os.environ['STORAGE_EMULATOR_HOST'])"]
    assert subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip() == gcs_server.url


def test_round_trip_list_and_info(fs: GCSFileSystem, gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/store/shard_0.bin"
    fs.pipe_file(path, DATA)
    assert fs.cat_file(path) == DATA  # \r, \r\n, NUL and 0xff bytes survive
    assert fs.ls(f"{gcs_bucket}/store", detail=False) == [path]
    assert fs.find(gcs_bucket) == [path]
    info = fs.info(path)
    assert info["size"] == len(DATA) and info["type"] == "file"
    assert base64.b64decode(info["crc32c"]) == google_crc32c.Checksum(DATA).digest()  # big-endian, base64


def test_url_from_the_environment(gcs_url: str) -> None:
    """Without `endpoint_url`, gcsfs takes STORAGE_EMULATOR_HOST (what child processes rely on)."""
    fs = GCSFileSystem(token="anon", skip_instance_cache=True, use_listings_cache=False)
    fs.pipe_file(f"{gcs_url}/x", b"x")
    assert fs.cat_file(f"{gcs_url}/x") == b"x"


def test_missing_object_is_file_not_found(fs: GCSFileSystem, gcs_bucket: str) -> None:
    missing = f"{gcs_bucket}/store/missing"
    for operation in (fs.cat_file, fs.info, fs.rm_file):
        with pytest.raises(FileNotFoundError):
            operation(missing)
    assert not fs.exists(missing)


def test_missing_bucket_is_file_not_found(fs: GCSFileSystem) -> None:
    for operation in (fs.ls, fs.find, fs.cat_file, fs.info):
        with pytest.raises(FileNotFoundError):
            operation("no-such-bucket/store")
    with pytest.raises(FileNotFoundError):
        fs.pipe_file("no-such-bucket/store/x", b"x")
    assert not fs.exists("no-such-bucket")


def test_empty_object(fs: GCSFileSystem, gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/empty"
    fs.pipe_file(path, b"")
    assert fs.cat_file(path) == b""
    assert fs.info(path)["size"] == 0
    assert fs.cat_file(path, start=-10) == b""
    with pytest.raises(HttpError) as error:  # bytes=0- on an empty object: read it whole, without a range
        fs.cat_file(path, start=0)
    assert error.value.code == 416


def test_ranges(fs: GCSFileSystem, gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/ranged"
    data = bytes(range(100))
    fs.pipe_file(path, data)
    assert fs.cat_file(path, start=-10) == data[-10:]
    assert fs.cat_file(path, start=-1000) == data  # a suffix longer than the object is the whole object
    assert fs.cat_file(path, start=10, end=20) == data[10:20]
    assert fs.cat_file(path, start=0, end=-4) == data[:-4]
    assert fs.cat_file(path, start=90, end=1000) == data[90:]  # end is clamped
    assert fs.cat_file(path, start=5, end=5) == b""  # no request at all
    assert fs.cat_ranges([path, path], [0, -3], [3, None]) == [data[:3], data[-3:]]
    with pytest.raises(HttpError) as error:  # start at or past the end is not clamped
        fs.cat_file(path, start=100)
    assert error.value.code == 416


def test_listing_a_prefix(fs: GCSFileSystem, gcs_bucket: str) -> None:
    root = f"{gcs_bucket}/store"
    for name in ("a/x.bin", "a/y/z.bin", "top.bin"):
        fs.pipe_file(f"{root}/{name}", b"1")
    listed = [(entry["name"], entry["type"]) for entry in fs.ls(f"{root}/a", detail=True)]
    assert listed == [(f"{root}/a/x.bin", "file"), (f"{root}/a/y", "directory")]  # "directories" from prefixes
    assert fs.ls(f"{root}/", detail=False) == [f"{root}/a", f"{root}/top.bin"]  # trailing slash: same
    assert fs.find(root) == [f"{root}/a/x.bin", f"{root}/a/y/z.bin", f"{root}/top.bin"]
    assert fs.find(f"{root}/a/x") == []  # a path is a directory, never a name prefix ...
    assert fs.find(root, prefix="a/x") == [f"{root}/a/x.bin"]  # ... unless prefix= says so
    assert fs.find(f"{root}/top.bin") == [f"{root}/top.bin"]  # a file finds itself
    assert fs.find(f"{gcs_bucket}/nothing") == []  # find of a missing prefix is empty ...
    with pytest.raises(FileNotFoundError):  # ... but ls of it raises
        fs.ls(f"{gcs_bucket}/nothing")
    assert fs.isdir(f"{root}/a") and fs.info(f"{root}/a")["type"] == "directory"
    fs.makedirs(f"{gcs_bucket}/made/dirs", exist_ok=True)  # a no-op: no marker object
    assert not fs.exists(f"{gcs_bucket}/made")


def test_listing_pages(fs: GCSFileSystem, gcs_bucket: str) -> None:
    """More objects than one page of the list API (1000)."""
    fs.pipe({f"{gcs_bucket}/many/{i:05d}": b"" for i in range(1200)})
    assert len(fs.find(f"{gcs_bucket}/many")) == len(fs.ls(f"{gcs_bucket}/many")) == 1200


def test_create_only_upload(fs: GCSFileSystem, gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/once"
    fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"second", mode="create")
    assert fs.cat_file(path) == b"first"


async def test_200_concurrent_reads(gcs_server: GcsServer, gcs_bucket: str) -> None:
    fs = connect(gcs_server.url, asynchronous=True)  # made inside the running loop, so bound to it
    try:
        paths = [f"{gcs_bucket}/c/{i:03d}" for i in range(200)]
        await asyncio.gather(*(fs._pipe_file(p, p.encode() * 10) for p in paths))
        contents = await asyncio.gather(*(fs._cat_file(p) for p in paths))
        assert contents == [p.encode() * 10 for p in paths]
        tails = await asyncio.gather(*(fs._cat_file(p, start=-3) for p in paths))
        assert tails == [p.encode()[-3:] for p in paths]
    finally:
        if fs._session is not None:
            await fs._session.close()


def test_restart_comes_back_on_the_same_port_and_empty(own_server: GcsServer) -> None:
    own_server.create_bucket("before")
    fs = connect(own_server.url)
    fs.pipe_file("before/x", b"x")
    url = own_server.url
    own_server.restart()
    assert own_server.url == url and own_server.running
    with pytest.raises(FileNotFoundError):  # the memory backend forgets everything, buckets too
        fs.cat_file("before/x")
    own_server.create_bucket("before")
    fs.pipe_file("before/x", b"again")  # the same client (and its pooled connections) still works
    assert fs.cat_file("before/x") == b"again"


def test_kill_and_start_again(own_server: GcsServer) -> None:
    own_server.kill()
    assert not own_server.running and refuses_connections(own_server.port)
    own_server.start()
    own_server.create_bucket("after-kill")
    assert connect(own_server.url).ls("after-kill") == []


def test_persistent_server_keeps_objects_across_a_kill() -> None:
    server = GcsServer(persistent=True)
    server.start()
    try:
        server.create_bucket("kept")
        connect(server.url).pipe_file("kept/x", DATA)
        server.kill()
        server.start()
        assert connect(server.url).cat_file("kept/x") == DATA
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = GcsServer(port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited with"):
            server.start(timeout=10)
    assert not server.running


def test_bad_bucket_names_are_refused(gcs_server: GcsServer, gcs_bucket: str) -> None:
    with pytest.raises(RuntimeError, match="409"):
        gcs_server.create_bucket(gcs_bucket)
    for bad in ("a", "Upper-case", "-dash"):  # looser than GCS: 2 or 64 characters pass
        with pytest.raises(RuntimeError, match="400"):
            gcs_server.create_bucket(bad)
