"""A real S3-compatible server for tests: moto's server (``python -m moto.server``), as a separate process on
127.0.0.1 and a free port, the way s3fs's own suite runs it.

moto keeps everything in memory: `restart` and `kill` lose all buckets and objects.
"""

from __future__ import annotations

import sys
import urllib.request

from tests.server_process import LoopbackServer

__all__ = ["FAKE_CREDENTIALS", "S3Server"]

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "squirrel-test-key",
    "AWS_SECRET_ACCESS_KEY": "squirrel-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What botocore signs requests with: moto accepts any credentials, and none of the user's may be used."""


class S3Server(LoopbackServer):
    """One moto server process: `start`, `stop`, `kill`, `restart` (same port), `create_bucket`."""

    name = "moto server"

    def command(self) -> list[str]:
        """moto's server on `port`."""
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def probe(self) -> str:
        """moto's own API, which answers once the server is up."""
        return f"{self.url}/moto-api/"

    def bucket_request(self, name: str) -> urllib.request.Request:
        """S3's ``PUT /<bucket>`` (moto does not check signatures by default, so the request needs none)."""
        return urllib.request.Request(f"{self.url}/{name}", data=b"", method="PUT")
