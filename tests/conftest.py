"""Fixtures: store URLs on local disk, memory://, gs:// (a real fake-gcs-server process on loopback) and s3://
(a real moto server process on loopback).

Each server starts lazily, the first time a test asks for it: `gcs_server`, `gcs_bucket`, `gcs_url` or the
"gcs" case of `store_url`; `s3_server`, `s3_bucket`, `s3_url` or the "s3" case of `store_url`. Tests that use
none of them never start it.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import fsspec
import pytest

from tests.gcs_server import GcsServer
from tests.s3_server import FAKE_CREDENTIALS, S3Server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.server_process import LoopbackServer


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """One fake-gcs-server for the session; STORAGE_EMULATOR_HOST points at it (child processes inherit it)."""
    server = GcsServer()
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


def _fresh_bucket(server: LoopbackServer) -> str:
    """The name of a new, empty bucket on `server`."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    server.create_bucket(name)
    return name


@pytest.fixture
def gcs_bucket(gcs_server: GcsServer) -> str:
    """The name of a fresh, empty bucket on the session's server."""
    return _fresh_bucket(gcs_server)


@pytest.fixture
def gcs_url(gcs_bucket: str) -> str:
    """A store root in a fresh bucket: ``gs://<bucket>/store``."""
    return f"gs://{gcs_bucket}/store"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server for the session. botocore finds it from the environment alone (child processes inherit
    it): ``AWS_ENDPOINT_URL_S3`` points at it and fake credentials are set; the user's AWS profile, session
    token and config files are hidden, so no request is signed with real credentials or sent elsewhere."""
    server = S3Server()
    server.start()
    no_config = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_CONFIG_FILE", str(no_config))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_config))
        patch.setenv("AWS_ENDPOINT_URL_S3", server.url)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """The name of a fresh, empty bucket on the session's moto server."""
    return _fresh_bucket(s3_server)


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    """A store root in a fresh bucket: ``s3://<bucket>/store``."""
    return f"s3://{s3_bucket}/store"


@pytest.fixture(
    params=["local", "memory", pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)],
    ids=["local", "memory", "gcs", "s3"],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty (not yet existing) store root on local disk, memory://, gs:// or s3://."""
    if request.param == "local":
        yield str(tmp_path / "store")
    elif request.param == "memory":
        root = f"/test-{uuid.uuid4().hex}"
        yield f"memory://{root.lstrip('/')}/store"
        memory = fsspec.filesystem("memory")
        if memory.exists(root):
            memory.rm(root, recursive=True)
    elif request.param == "gcs":
        yield request.getfixturevalue("gcs_url")
    else:
        yield request.getfixturevalue("s3_url")
