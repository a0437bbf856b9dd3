"""What the test servers share: a process on 127.0.0.1 and a free port, started and probed until it answers,
stopped, killed as a crash would, restarted on the same port, its output kept in a log file.

`GcsServer` (tests/gcs_server.py) and `S3Server` (tests/s3_server.py) say only how to run theirs, how to
ask whether it answers and how to create a bucket. All traffic goes to 127.0.0.1 (no HTTP proxy is
consulted).
"""

from __future__ import annotations

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

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Ignores http_proxy & co: requests to the servers must never leave the machine."""


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


class LoopbackServer:
    """One server process: `start`, `stop`, `kill`, `restart` (same port), `create_bucket`."""

    name = "server"
    """What the server is called in errors."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.name.replace(' ', '-')}-"))
        self.log = self.folder / "server.log"
        """Everything the process printed, across restarts."""
        self._running: list[subprocess.Popen[bytes]] = []
        weakref.finalize(self, _cleanup, os.getpid(), self._running, self.folder)

    @property
    def url(self) -> str:
        """The server's endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line that runs the server on `port`."""
        raise NotImplementedError

    def probe(self) -> str:
        """The URL that answers 200 once the server is ready."""
        raise NotImplementedError

    def bucket_request(self, name: str) -> urllib.request.Request:
        """The request that creates bucket `name`."""
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start the process (no-op if running) and wait until `probe` answers 200.

        RuntimeError, with the end of the server's log, if it exits or does not answer within `timeout` s.
        """
        if self.running:
            return
        with open(self.log, "ab") as log:  # a file, not a pipe that could fill up and block the server
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._running[:] = [self.process]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"{self.name} exited with {code}; log:\n{self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s; log:\n{self._log_tail()}")

    def _answers(self) -> bool:
        try:
            with LOOPBACK.open(self.probe(), timeout=2) as response:
                return bool(response.status == 200)
        except OSError:  # URLError, HTTPError, connection refused/reset
            return False

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
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (RuntimeError naming it and the server's answer if refused)."""
        try:
            with LOOPBACK.open(self.bucket_request(name), timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace").strip()
            raise RuntimeError(f"creating bucket {name!r} at {self.url} answered {error.code}: {body}") from None

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"
