"""Every HTTP response, errors included, carries the security headers; `Server` names no
version; a 400 echoes nothing of the request (docs/security.md "HTTP responses").

With `-s` each test prints what it saw, for the before and after runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import pytest

from helpers import RunningServer, make_token
from openpanel_ws.web.console import SECURITY_HEADERS


def check_headers(what: str, headers: Mapping[str, str]) -> None:
    got = dict(headers)
    missing = [name for name in SECURITY_HEADERS if name not in got]
    server = got.get("Server", "")
    print(f"\nprobe {what}: Server {server!r}; missing headers {missing}")
    assert not missing, (what, missing)
    assert server == "openpanel-ws", (what, server)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no-such-page", 404),
    ("POST", "/healthz", 405),
    ("GET", "/api/containers", 401),
    ("GET", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/client/openpanel-ws.js", 200),
])
async def test_every_response_carries_the_headers(server: RunningServer, method: str, path: str,
                                                  status: int) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.url + path) as resp:
            assert resp.status == status
            check_headers(f"{method} {path} {status}", resp.headers)


async def test_a_refused_origin_gets_the_headers(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/ws/containers",
                            headers={"Origin": "https://evil.example", "Upgrade": "websocket",
                                     "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
            assert resp.status == 403
            check_headers("refused origin 403", resp.headers)


async def test_readyz_tells_an_anonymous_caller_nothing_about_the_engine(
        server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/readyz") as resp:
            anonymous = await resp.json()
        async with http.get(server.url + "/readyz",
                            headers={"Authorization": f"Bearer {make_token()}"}) as resp:
            known = await resp.json()
    print(f"\nprobe readyz: anonymous {anonymous}")
    assert anonymous == {"status": "ready"}
    assert "hosts" in known


async def raw(server: RunningServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(("what", "request_bytes", "needle"), [
    ("oversized header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Probe: " + b"MARKER" * 2000 + b"\r\n\r\n",
     b"MARKER"),
    ("bad request line", b"GET /\x01MARKER-in-the-path HTTP/1.1\r\nHost: x\r\n\r\n", b"MARKER"),
    ("bad method", b"MARKER\x01 / HTTP/1.1\r\nHost: x\r\n\r\n", b"MARKER"),
])
async def test_a_400_echoes_nothing(server: RunningServer, what: str, request_bytes: bytes,
                                    needle: bytes) -> None:
    answer = await raw(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    print(f"\nprobe 400 {what}: {answer[:400]!r}")
    assert head.split(b" ", 2)[1] == b"400", answer[:200]
    assert needle not in body
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    check_headers(f"400 {what}", {k.decode(): v.decode() for k, v in headers.items()})
