"""Handshake hygiene (issue 12, F4 and F5): slowloris, caps, resets, fd exhaustion."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import resource
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import SECRET, RunningServer, eventually, free_port, make_token, scaled
from openpanel_ws.server import GUARD_KEY

pytestmark = pytest.mark.timeout(120)

UPGRADE = (
    "GET /ws/containers HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
)


TRICKLE = 0.3  # seconds between a slowloris client's header lines (the attack's pace)
RESET_PACE = 0.005  # seconds between two reset connections (the attack's pace)


def pending(server: RunningServer) -> int:
    """Sockets the server counts as not yet authenticated."""
    return server.app[GUARD_KEY].pending.count


def upgrade_request() -> bytes:
    return UPGRADE.format(key=base64.b64encode(os.urandom(16)).decode()).encode()


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ends the socket (EOF or reset) within `within` seconds (scaled)."""
    deadline = time.monotonic() + scaled(within)
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not data:
                return True
    except TimeoutError:  # (an OSError subclass: first)
        return False
    except (ConnectionError, OSError):
        return True
    return False


async def test_f4_sockets_that_never_finish_the_upgrade_are_closed(make_server: Any) -> None:
    srv: RunningServer = await make_server(handshake_timeout=1.0)
    silent = [await open_raw(srv.port) for _ in range(20)]
    request_line = [await open_raw(srv.port) for _ in range(20)]
    for _, w in request_line:
        w.write(b"GET /ws/containers HTTP/1.1\r\n")
    slow = [await open_raw(srv.port) for _ in range(20)]

    async def slowloris(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(b"GET /ws/containers HTTP/1.1\r\n")
            for i in range(20):
                writer.write(f"X-Slow-{i}: a\r\n".encode())
                await writer.drain()
                await asyncio.sleep(TRICKLE)

    trickle = [asyncio.ensure_future(slowloris(w)) for _, w in slow]
    results = await asyncio.gather(
        *(closed_by_server(r, 6.0) for r, _ in silent + request_line + slow))
    for task in trickle:
        task.cancel()
    for _, w in silent + request_line + slow:
        w.close()
    assert sum(results) == 60
    # An upgraded socket is not cut by the handshake clock (auth has its own).
    client = await srv.connect("/ws/containers")
    await asyncio.sleep(srv.settings.handshake_timeout * 1.5)  # past the clock under test
    await client.auth()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    """One keep-alive GET on an open socket; the response's status line."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(5))
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length is not None, head
    await asyncio.wait_for(reader.readexactly(int(length.group(1))), scaled(5))
    return head.split(b"\r\n", 1)[0]


async def test_f4_a_busy_keep_alive_socket_is_not_cut_by_the_handshake_clock(
        make_server: Any) -> None:
    """The clock bounds each request, not the socket's life: a browser that keeps fetching
    the console's modules on one keep-alive socket is never reset mid-page, while that
    socket idle, or trickling its next request, is still closed."""
    srv: RunningServer = await make_server(handshake_timeout=1.0)
    reader, writer = await open_raw(srv.port)
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < 2.5 * srv.settings.handshake_timeout:
        statuses.append(await _get(reader, writer, "/client/openpanel-ws.js"))
        await asyncio.sleep(0.3 * srv.settings.handshake_timeout)
    assert statuses and set(statuses) == {b"HTTP/1.1 200 OK"}
    assert await closed_by_server(reader, 3.0)  # idle past the clock: closed
    writer.close()
    reader, writer = await open_raw(srv.port)
    assert await _get(reader, writer, "/healthz") == b"HTTP/1.1 200 OK"
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next request, trickled
    trickle_started = time.monotonic()
    with contextlib.suppress(ConnectionError, OSError):
        for i in range(20):
            writer.write(f"X-Slow-{i}: a\r\n".encode())
            await writer.drain()
            if await closed_by_server(reader, TRICKLE):
                break
    assert time.monotonic() - trickle_started < 3 * srv.settings.handshake_timeout
    writer.close()


async def test_f4_unauthenticated_sockets_are_capped(make_server: Any) -> None:
    srv: RunningServer = await make_server(handshake_timeout=30.0, max_unauthenticated=10)
    authed = [await srv.connect("/ws/containers", auth=True) for _ in range(3)]
    idle = [await open_raw(srv.port) for _ in range(10)]
    await eventually(lambda: pending(srv) == 10, what="10 sockets pending")
    extra_reader, extra_writer = await open_raw(srv.port)
    assert await closed_by_server(extra_reader, 2.0)  # refused at once
    extra_writer.close()
    for _, w in idle:
        w.close()
    await eventually(lambda: pending(srv) == 0, what="the idle sockets released")
    client = await srv.connect("/ws/containers", auth=True)  # room again
    await client.send({"type": "ping"})
    await client.expect("pong")
    for c in authed:
        await c.send({"type": "ping"})
        await c.expect("pong")


async def test_f4_per_ip_cap_when_enabled(make_server: Any) -> None:
    srv: RunningServer = await make_server(handshake_timeout=30.0, max_unauthenticated_per_ip=3)
    idle = [await open_raw(srv.port) for _ in range(3)]
    await eventually(lambda: pending(srv) == 3, what="3 sockets pending")
    reader, writer = await open_raw(srv.port)
    assert await closed_by_server(reader, 2.0)
    writer.close()
    for _, w in idle:
        w.close()


async def test_f5_handshake_resets_log_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(upgrade_request())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        await asyncio.sleep(RESET_PACE)
    await eventually(lambda: pending(server) == 0, what="every reset socket released")
    client = await server.connect("/ws/containers", auth=True)  # still serving
    await client.close()
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks][:3]
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 2, [r.getMessage() for r in noisy]


async def _serve(port: int, nofile: int, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "OPENPANEL_WS_JWT_SECRET": SECRET, "OPENPANEL_WS_PORT": str(port),
           "OPENPANEL_WS_HANDSHAKE_TIMEOUT": "3"}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile // 2, nofile))

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "openpanel_ws", "serve", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=fd, preexec_fn=limit)
    finally:
        os.close(fd)


async def _authenticates(port: int) -> bool:
    """A real client connects and authenticates (the server is serving)."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"http://127.0.0.1:{port}/ws/containers") as ws:
            await ws.receive_json(timeout=scaled(5))
            await ws.send_json({"type": "auth", "token": make_token()})
            return bool((await ws.receive_json(timeout=scaled(5)))["type"] == "authenticated")
    except (aiohttp.ClientError, TimeoutError, TypeError, ValueError):
        return False


async def test_f4_f5_fd_exhaustion_is_logged_once_without_tracebacks(
    engine: None, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = await _serve(port, 128, log)
    socks: list[socket.socket] = []
    try:
        def logged_the_limit() -> bool:
            assert proc.returncode is None, log.read_text()
            return re.search(r"open-files limit: 128 \(hard 128\)", log.read_text()) is not None

        await eventually(logged_the_limit, 20, step=0.1, what="the open-files limit logged")
        text = log.read_text()
        assert re.search(r"open-files limit: 128 \(hard 128\)", text), text
        # The limit is logged before the listening socket is bound: wait until it serves.
        await eventually(lambda: _authenticates(port), 20, step=0.1, what="the server serving")
        for _ in range(200):
            with contextlib.suppress(OSError):
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
                socks.append(s)
        await eventually(lambda: "out of file descriptors" in log.read_text(), 10,
                         what="the server running out of file descriptors")
        for s in socks:
            s.close()
        socks.clear()
        # Serving again (the idle ones are cut by the handshake timeout): a real client
        # authenticates.
        await eventually(lambda: _authenticates(port), 20, step=0.5, what="serving again")
    finally:
        for s in socks:
            s.close()
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), scaled(10))
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text[:3000]
    assert len(text) < 20_000, len(text)
    assert text.count("out of file descriptors") <= 3
