"""Fixtures: store URLs on local disk, memory:// and gs:// (a real fake-gcs-server process on loopback).

The GCS server starts lazily, the first time a test asks for `gcs_server`, `gcs_bucket`, `gcs_url` or the
"gcs" case of `store_url`; tests that use none of them never start it.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import fsspec
import pytest

from tests.gcs_server import GcsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


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


@pytest.fixture
def gcs_bucket(gcs_server: GcsServer) -> str:
    """The name of a fresh, empty bucket on the session's server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs_server.create_bucket(name)
    return name


@pytest.fixture
def gcs_url(gcs_bucket: str) -> str:
    """A store root in a fresh bucket: ``gs://<bucket>/store``."""
    return f"gs://{gcs_bucket}/store"


@pytest.fixture(
    params=["local", "memory", pytest.param("gcs", marks=pytest.mark.gcs)],
    ids=["local", "memory", "gcs"],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty (not yet existing) store root on local disk, memory:// or gs://."""
    if request.param == "local":
        yield str(tmp_path / "store")
    elif request.param == "memory":
        root = f"/test-{uuid.uuid4().hex}"
        yield f"memory://{root.lstrip('/')}/store"
        memory = fsspec.filesystem("memory")
        if memory.exists(root):
            memory.rm(root, recursive=True)
    else:
        yield request.getfixturevalue("gcs_url")
