"""The Python limit: a plain asyncio server writing pre-framed bytes with transport.write.

    .venv/bin/python bench/raw_server.py --port PORT

No web framework, no lifecycle, no JWT check (any `auth` message is answered
`authenticated`, so the same clients work unchanged): an `asyncio.Protocol` per
connection that does the WebSocket upgrade itself. `POST /bench/publish?count=N&size=200&burst=B`
builds the same 200-byte messages as the gateway's publisher (orjson, then the frame
header, once per message), B at a time, and hands each group to every client with
`transport.write` (one write of the group's bytes per client), yielding to the loop
between groups and waiting while a client's transport is paused (over its high-water
mark). This is what Python's own event loop can do for that broadcast; it is the floor
the gateway is compared with (`fanout.ratio_to_raw`). It is not tuned down.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import struct
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import bench_message
from common import server_start

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
CLIENTS: set[Conn] = set()
OP_TEXT, OP_PONG = 0x1, 0xA


# This server frames with an encoder of its own, on purpose (docs/bench.md): it is the
# floor the gateway is measured against, so it shares no code with the gateway under
# test (`openpanel_ws.outbound.frames`, the project's one encoder); a change there must
# show up in `ratio_to_raw`, not move both sides at once.
def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    return _frame(OP_TEXT, payload)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return _frame(opcode, payload[:125])


def unmask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


class Conn(asyncio.Protocol):
    __slots__ = ("buf", "paused", "resumed", "transport", "ws")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ws = False
        self.paused = False
        self.resumed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        CLIENTS.discard(self)
        if self.paused:
            self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)
        self.resumed = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.ws:
            self._http()
        if self.ws:
            self._frames()

    def _http(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        line, *headers = head.split(b"\r\n")
        _method, target, _ = line.split(b" ", 2)
        assert self.transport is not None
        if target.startswith(b"/ws/"):
            key = next(h.split(b":", 1)[1].strip() for h in headers
                       if h.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.ws = True
            self.transport.write(text_frame(orjson.dumps({"type": "connected"})))
        elif target.startswith(b"/bench/publish"):
            query = parse_qs(target.partition(b"?")[2].decode())
            count = int(query.get("count", ["1000"])[0])
            size = int(query.get("size", ["200"])[0])
            burst = int(query.get("burst", ["1"])[0])
            asyncio.get_running_loop().create_task(self._publish(count, size, burst))
        else:
            self._reply(b'{"status":"ok"}')

    def _reply(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        self.transport.close()

    async def _publish(self, count: int, size: int, burst: int) -> None:
        started = time.monotonic()
        sent = 0
        for first in range(0, count, burst):
            frames = [text_frame(orjson.dumps(bench_message(seq, size)))
                      for seq in range(first, min(count, first + burst))]
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            for conn in list(CLIENTS):
                transport = conn.transport
                if transport is not None and not transport.is_closing():
                    transport.write(data)
                    sent += len(frames)
            await asyncio.sleep(0)
            for conn in list(CLIENTS):
                if conn.paused:
                    conn.resumed = conn.resumed or asyncio.get_running_loop().create_future()
                    await conn.resumed
        self._reply(orjson.dumps({"queued": sent, "sessions": len(CLIENTS),
                                  "seconds": time.monotonic() - started}))

    def _frames(self) -> None:
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 6:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            off = pos + 2
            if n == 126:
                n, off = int.from_bytes(buf[off:off + 2], "big"), off + 2
            elif n == 127:
                n, off = int.from_bytes(buf[off:off + 8], "big"), off + 8
            if len(buf) < off + 4 + n:
                break
            payload = unmask(buf[off:off + 4], buf[off + 4:off + 4 + n])
            pos = off + 4 + n
            assert self.transport is not None
            if opcode == 0x1 and b'"auth"' in payload:
                self.transport.write(text_frame(orjson.dumps({"type": "authenticated"})))
                CLIENTS.add(self)
            elif opcode == 0x9:
                self.transport.write(control_frame(OP_PONG, payload))
            elif opcode == 0x8:
                self.transport.close()
                break
        self.buf = buf[pos:]


def main() -> None:
    port = server_start(__doc__.splitlines()[0])

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Conn, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())
    os._exit(0)


if __name__ == "__main__":
    main()
