"""A unix socket in front of the real engine's, for tests of a host that goes down, hangs
or must not be asked: `open` forwards, `down` refuses new connections and cuts the open
ones, `hang` accepts and never answers, and stalls the open connections (until `open`).
Every request line it forwarded is recorded.

The registry's status probe (`/info`) and the events stream go through it too: tests
look only at the requests they care about (`asked_about`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"
_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r?$", re.MULTILINE)


class EngineProxy:
    """`unix://{path}` for a HostConfig; the engine behind it is the local one."""

    def __init__(self, path: Path | str, upstream: str = ENGINE_SOCKET) -> None:
        self.path = str(path)
        self.upstream = upstream
        self.requests: list[str] = []  # "GET /v1.41/containers/web/json"
        self.hung = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def open(self) -> None:
        """Forward to the engine (again); stalled connections flow on."""
        self.hung = False
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def hang(self) -> None:
        """Accept connections and read requests, answer nothing; what flows on the open
        connections stops there (a hung engine)."""
        self.hung = True
        self._flowing.clear()
        if self._server is None:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def down(self) -> None:
        """The host is down: new connections are refused, open ones are cut."""
        self._flowing.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def asked_about(self, text: str) -> list[str]:
        """The forwarded requests whose path contains `text`."""
        return [r for r in self.requests if text in r]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.hung:
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer, record=True),
                             self._pipe(up_reader, writer, record=False))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *,
                    record: bool) -> None:
        try:
            while data := await src.read(65536):
                if record:
                    self.requests += [f"{m[1].decode()} {m[2].decode()}"
                                      for m in _REQUEST_LINE.finditer(data)]
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)
