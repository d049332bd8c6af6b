"""Helpers of the console browser tests (no tests here)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from multidict import CIMultiDict

from helpers import RunningServer
from openpanel_ws.server import CLIENTS_KEY


def drop_connections(server: RunningServer) -> int:
    """Close every WebSocket of the server the way a failing network looks to a client."""
    sessions = list(server.app[CLIENTS_KEY])
    for session in sessions:
        session.close(1011, "dropped by the test")
    return len(sessions)


async def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def api_containers(base: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{base}/api/containers", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


class EngineProxy:
    """A TCP port in front of the local engine's unix socket: a Docker host the test can
    take down (`stop` closes the port and every connection through it) and bring back."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
