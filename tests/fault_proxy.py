"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real test server (fake-gcs-server or moto).

It passes each request on to the server and its answer back, except the requests a test chose to fail: those
it answers itself with an error status (503, 429, 403, ...) in the body the server's protocol uses, so the
client library parses it as it would the real service's. It counts the requests it saw, so a test can tell
how many times a request was tried. `stop` and `start` take it off its port and back (the server behind it
keeps its data), as an outage of the endpoint would.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.server_process import free_port

__all__ = ["FaultProxy"]

Flavour = Literal["gcs", "s3"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"})


@dataclass
class _Fault:
    """Answer `status` to the requests whose path contains `part` (and of `method`, if given), `times` times
    (None: every time)."""

    part: str
    status: int
    method: str | None
    times: int | None

    def applies(self, method: str, path: str) -> bool:
        return self.part in path and self.method in (None, method) and self.times != 0


@dataclass
class _State:
    upstream: str
    flavour: Flavour
    faults: list[_Fault] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_for(self, method: str, path: str) -> int | None:
        """The status to answer (`method`, `path`) with, counting the request; None to pass it on."""
        with self.lock:
            self.seen.append((method, path))
            for fault in self.faults:
                if fault.applies(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault.status
        return None

    def error_body(self, status: int) -> tuple[str, bytes]:
        """The content type and body of an error answer, as the service behind would word it."""
        reason = http.client.responses.get(status, "Error")
        if self.flavour == "gcs":
            return "application/json", json.dumps({"error": {"code": status, "message": reason}}).encode()
        code = {403: "AccessDenied", 404: "NoSuchKey", 429: "SlowDown", 503: "ServiceUnavailable"}.get(status)
        xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code or status}</Code><Message>{reason}</Message>"
        return "application/xml", f"{xml}</Error>".encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect of the real servers
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # the base class's names
        pass  # quiet: pytest would show it for every request

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        body = self._body()
        state = self.server.state
        status = state.fault_for(self.command, urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        if status is not None:
            content_type, error = state.error_body(status)
            self._answer(status, [("Content-Type", content_type)], error)
            return
        upstream = urllib.parse.urlsplit(state.upstream)
        connection = http.client.HTTPConnection(upstream.netloc, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = upstream.netloc
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            self._answer(response.status, response.getheaders(), answer)
        finally:
            connection.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _proxy


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, state: _State) -> None:
        self.state = state
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def cut_connections(self) -> None:
        """Shut the connections clients keep open (keep-alive): the next request on one fails."""
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """The proxy in front of `upstream` (a server's URL), speaking `flavour`'s errors; use it as a context
    manager, or `start` and `stop` it (the same port each time)."""

    def __init__(self, upstream: str, flavour: Flavour) -> None:
        self.port = free_port()
        self._state = _State(upstream, flavour)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint to give the client instead of the server's."""
        return f"http://127.0.0.1:{self.port}"

    def fail(self, part: str, status: int, *, method: str | None = None, times: int | None = None) -> None:
        """Answer `status` to the requests whose path (unquoted, no query) contains `part`: `times` times, or always."""
        with self._state.lock:
            self._state.faults.append(_Fault(part, status, method, times))

    def count(self, part: str, method: str | None = None) -> int:
        """How many requests whose path contains `part` (of `method`, if given) reached the proxy."""
        with self._state.lock:
            return sum(part in path and method in (None, verb) for verb, path in self._state.seen)

    def start(self) -> None:
        """Listen on `port` (again)."""
        self._server = _Server(self.port, self._state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: new connections are refused, as by a server that is down."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.cut_connections()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
