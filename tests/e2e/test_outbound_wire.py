"""The outbound path end to end over real sockets (docs/protocol.md, "Outbound path"):
a client that stops reading is cut off without holding up the others; a slow reader
gets every frame in order; frames never interleave and nothing follows a Close frame.

The clients here are raw sockets that check every byte the server writes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from helpers import eventually, free_port, make_token, scaled
from helpers import make_settings as settings_with
from openpanel_ws import protocol
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.outbound import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, masked_frame, text_frame
from openpanel_ws.server import create_app
from openpanel_ws.services import Services

SLOW_LINK = 0.001  # seconds a slow reader pauses every 20 frames (the link under test)


class BurstGateway(Gateway):
    """Test-only: `fire` {count, size, every?} publishes frames encoded once to every
    other client, in a task (the requester stays free to send `close_others`), yielding
    every `every` frames and waiting while a client's backlog is over half the bound;
    `close_others` closes every other client with 4000 while the burst goes on (those
    frames must never reach the wire)."""

    name = "burst"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.sessions: set[Session] = set()
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed_at: int | None = None  # the burst's seq when `close_others` came
        self.seq = 0

    def handlers(self) -> dict[str, Handler]:
        return {"fire": self.fire, "close_others": self.close_others}

    async def on_authenticated(self, session: Session) -> None:
        self.sessions.add(session)

    async def on_disconnect(self, session: Session) -> None:
        self.sessions.discard(session)

    async def fire(self, session: Session, message: dict[str, Any]) -> None:
        self.task = asyncio.get_running_loop().create_task(self._burst(session, message))

    async def close_others(self, session: Session, message: dict[str, Any]) -> None:
        self.closed_at = self.seq
        for target in self.sessions - {session}:
            target.close(4000, "burst over")

    async def _burst(self, requester: Session, message: dict[str, Any]) -> None:
        payload = "x" * int(message["size"])
        every = int(message.get("every", 50))
        for seq in range(int(message["count"])):
            self.seq = seq
            if self.closed_at is not None and seq > self.closed_at + 2000:
                break  # well past the close
            frame = text_frame(protocol.encode({"type": "burst", "seq": seq, "data": payload}))
            targets = [t for t in self.sessions if t is not requester]
            if not targets and seq:
                break
            for target in targets:
                target.send_frame(frame)
            if seq % every == every - 1:
                await asyncio.sleep(0)
                for target in targets:
                    if target.writer.backlog >= 0.5:
                        await target.writer.wait_backlog_below(0.5)
        self.done.set()


@asynccontextmanager
async def burst_server(**overrides: Any) -> AsyncIterator[tuple[BurstGateway, int]]:
    settings = settings_with(**overrides)
    settings.rate_limit_burst = settings.rate_limit_containers  # type: ignore[attr-defined]
    services = Services.from_settings(settings)
    gateway = BurstGateway(services)
    app = create_app(settings, gateways=[gateway], services=services)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield gateway, port
    finally:
        await runner.cleanup()


class RawClient:
    """A WebSocket client on a plain socket that parses frames strictly by slicing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None, limit: int = 1 << 16) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/burst HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        client = cls(reader, writer)
        client.send_json({"type": "auth", "token": make_token()})
        return client

    def send_json(self, message: dict[str, Any]) -> None:
        self.writer.write(masked_frame(OP_TEXT, json.dumps(message).encode()))

    async def frame(self, chunk: int = 65536, pause: float = 0.0,
                    aborted_ok: bool = False) -> tuple[int, bytes] | None:
        """The next frame (opcode, payload); None at EOF. Asserts it is well formed (an
        aborted connection may end inside a frame: `aborted_ok`)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            data = await self.reader.read(chunk)
            if not data:
                assert aborted_ok or not self.buffer, f"EOF inside a frame ({len(self.buffer)} bytes)"
                return None
            self.buffer += data
            if pause:
                await asyncio.sleep(pause)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        assert first & 0x70 == 0, "RSV bits set: not a frame boundary"
        assert first & 0x80, "FIN missing: the server never fragments"
        assert not second & 0x80, "server frames are never masked"
        opcode, n, i = first & 0x0F, second & 0x7F, 2
        assert opcode in (OP_TEXT, OP_CLOSE, OP_PONG), f"unexpected opcode {opcode}"
        if n == 126:
            if len(buf) < 4:
                return None
            n, i = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, i = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < i + n:
            return None
        self.buffer = buf[i + n:]
        payload = buf[i:i + n]
        if opcode == OP_TEXT:
            json.loads(payload)  # a whole JSON document: nothing spliced into it
        return opcode, payload

    async def until_type(self, kind: str) -> dict[str, Any]:
        while True:
            frame = await self.frame()
            assert frame is not None, f"closed before {kind}"
            if frame[0] == OP_TEXT:
                message: dict[str, Any] = json.loads(frame[1])
                if message["type"] == kind:
                    return message

    def close(self) -> None:
        self.writer.close()


async def test_a_client_that_stops_reading_gets_1013_or_an_abort_and_never_blocks_others() -> None:
    async with burst_server(send_queue_max=300, send_queue_max_bytes=400_000, send_timeout=2.0) as (gw, port):
        stuck = await RawClient.connect(port, rcvbuf=4096, limit=4096)
        await stuck.until_type("authenticated")
        readers = [await RawClient.connect(port) for _ in range(3)]
        for r in readers:
            await r.until_type("authenticated")
        await eventually(lambda: len(gw.sessions) == 4)
        trigger = await RawClient.connect(port)
        await trigger.until_type("authenticated")
        await eventually(lambda: len(gw.sessions) == 5)
        trigger.send_json({"type": "fire", "count": 3000, "size": 1000, "every": 50})

        async def read_all(r: RawClient) -> list[int]:
            seqs: list[int] = []
            while len(seqs) < 3000:
                frame = await asyncio.wait_for(r.frame(), scaled(10))
                assert frame is not None
                message = json.loads(frame[1])
                if message["type"] == "burst":
                    seqs.append(message["seq"])
            return seqs

        # The readers get everything in order while the stuck client holds nothing up.
        for seqs in await asyncio.gather(*(read_all(r) for r in readers)):
            assert seqs == list(range(3000))
        await eventually(lambda: len(gw.sessions) == 4, timeout=10)
        # What the stuck client finds when it reads at last: whole frames, ended by
        # a 1013 Close (slow consumer), or by an abort (EOF / reset).
        last: tuple[int, bytes] | None = None
        try:
            while (frame := await asyncio.wait_for(stuck.frame(aborted_ok=True), scaled(10))) is not None:
                assert last is None or last[0] != OP_CLOSE, "a frame after the Close frame"
                last = frame
        except ConnectionResetError:
            last = None
        if last is not None and last[0] == OP_CLOSE:
            assert int.from_bytes(last[1][:2], "big") == 1013
        for r in (stuck, trigger, *readers):
            r.close()


async def test_3000_frames_arrive_in_order_at_a_slow_but_reading_client() -> None:
    async with burst_server() as (gw, port):
        slow = await RawClient.connect(port, rcvbuf=4096, limit=4096)
        await slow.until_type("authenticated")
        trigger = await RawClient.connect(port)
        await trigger.until_type("authenticated")
        await eventually(lambda: len(gw.sessions) == 2)
        trigger.send_json({"type": "fire", "count": 3000, "size": 1000, "every": 10})
        seqs: list[int] = []
        reads = 0
        while len(seqs) < 3000:
            frame = await asyncio.wait_for(slow.frame(chunk=4096), scaled(10))
            assert frame is not None, f"closed after {len(seqs)} frames"
            reads += 1
            if reads % 20 == 0:
                await asyncio.sleep(SLOW_LINK)  # a slow link: the server's transport pauses
            message = json.loads(frame[1])
            if message["type"] == "burst":
                seqs.append(message["seq"])
        assert seqs == list(range(3000))
        assert len(gw.sessions) == 2  # never cut off
        slow.close()
        trigger.close()


async def test_a_close_frame_never_lands_inside_a_data_frame_under_a_burst_with_pings() -> None:
    for server_closes in (True, False):
        async with burst_server() as (gw, port):
            client = await RawClient.connect(port)
            await client.until_type("authenticated")
            # The burst runs in the gateway; another client starts it and, for the
            # server-side close, asks for it once every ping was answered.
            trigger = await RawClient.connect(port)
            await trigger.until_type("authenticated")
            await eventually(lambda: len(gw.sessions) == 2)
            trigger.send_json({"type": "fire", "count": 10_000_000, "size": 300, "every": 7})
            pings = [os.urandom(8) for _ in range(200)]
            pongs: list[bytes] = []
            seqs: list[int] = []
            close: bytes | None = None
            sent = 0
            closing = False
            while True:
                if not closing and sent < len(pings) and len(seqs) >= sent * 3:
                    client.writer.write(masked_frame(OP_PING, pings[sent]))
                    sent += 1
                if not closing and len(pongs) == len(pings):
                    closing = True  # no more pings: the close races only with the burst
                    if server_closes:
                        trigger.send_json({"type": "close_others"})
                    else:
                        client.writer.write(masked_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
                try:
                    frame = await asyncio.wait_for(client.frame(), scaled(10))
                except ConnectionResetError:
                    assert close is not None, "reset before the Close frame"
                    break
                if frame is None:
                    break
                assert close is None, f"a frame after the Close frame: {frame[0]}"
                opcode, payload = frame
                if opcode == OP_PONG:
                    pongs.append(payload)
                elif opcode == OP_CLOSE:
                    close = payload
                    if server_closes:
                        client.writer.write(masked_frame(OP_CLOSE, payload[:2]))  # the reply
                else:
                    message = json.loads(payload)
                    if message["type"] == "burst":
                        seqs.append(message["seq"])
            assert close is not None
            assert int.from_bytes(close[:2], "big") == (4000 if server_closes else 1000)
            assert seqs == list(range(len(seqs))) and len(seqs) < 10_000_000  # in order, then closed
            assert pongs == pings  # each answered once, whole, in order
            await asyncio.wait_for(gw.done.wait(), scaled(30))  # the burst went on after the close
            client.close()
            trigger.close()
