"""A TCP proxy on loopback that delays every client->server chunk by a fixed time: a stand-in for a
real bucket's request latency, sitting between the client under test and the local GCS server.

Chunks keep their order per connection and requests may pipeline; replies pass straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class DelayProxy:
    """``with DelayProxy(upstream_port, delay=0.02) as proxy: ... proxy.url ...`` runs it in a thread."""

    def __init__(self, upstream_port: int, delay: float = 0.020, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.delay = delay
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        """The proxy's endpoint, to give the client instead of the server's."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._serve, self.host, 0, backlog=1024)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        delayed: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            while chunk := await client_reader.read(65536):
                await delayed.put((time.monotonic() + self.delay, chunk))
            await delayed.put((0.0, b""))

        async def forward_delayed() -> None:
            while True:
                due, chunk = await delayed.get()
                if not chunk:
                    upstream_writer.write_eof()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                upstream_writer.write(chunk)
                await upstream_writer.drain()

        async def reply() -> None:
            while chunk := await upstream_reader.read(262144):
                client_writer.write(chunk)
                await client_writer.drain()
            client_writer.close()  # the server hung up: so does the proxy, which ends receive()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(receive())
                group.create_task(forward_delayed())
                group.create_task(reply())
        except* (ConnectionError, OSError):
            pass
        except* asyncio.CancelledError:
            pass  # the proxy is shutting down
        finally:
            for writer in (client_writer, upstream_writer):
                with contextlib.suppress(Exception):
                    writer.close()
