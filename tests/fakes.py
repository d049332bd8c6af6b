"""A fake socket for unit tests of the outbound path: what aiohttp's WebSocketResponse and
StreamWriter give `ClientWriter` (transport writes, pause/resume, close handshake).

`frames` are the payloads of the TEXT frames written, in order; a frame object written to
several clients yields the same payload object each time, so tests can check that a
frame was built once. `gate` cleared = the transport is paused (over its high-water mark).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# id(frame) -> (frame, payload): the frame is kept alive, so an id is never reused.
_PAYLOADS: dict[int, tuple[bytes, bytes]] = {}


def unframe(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked frame in `data`."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append((opcode, data[i:i + n]))
        i += n
    assert i == len(data), "a partial frame was written"
    return out


class FakeWebSocket:
    """aiohttp never closes by itself here."""

    closed = False


class _Flow:
    def __init__(self, gate: asyncio.Event) -> None:
        self._gate = gate

    @property
    def writing_paused(self) -> bool:
        return not self._gate.is_set()


class Sink:
    """Transport + StreamWriter + protocol in one; `ws` is the WebSocketResponse side."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.opcodes: list[int] = []
        self.closed: tuple[int, bytes] | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.ws = FakeWebSocket()
        self.aborted = False
        self.tcp_closed = False
        # the writer, told of the peer's Close reply to its Close frame
        self.peer: Any = None
        self.on_abort: Callable[[], None] | None = None
        self.protocol = _Flow(self.gate)

    # StreamWriter
    @property
    def transport(self) -> Sink:
        return self

    async def drain(self) -> None:
        await self.gate.wait()

    # Transport
    def write(self, data: bytes) -> None:
        assert self.gate.is_set(), "written while paused"
        assert self.closed is None, "a frame after the Close frame"
        cached = _PAYLOADS.get(id(data))
        if cached is not None and cached[0] is data:
            self.frames.append(cached[1])
            self.opcodes.append(1)
            return
        parsed = unframe(data)
        if len(parsed) == 1 and parsed[0][0] == 1:
            _PAYLOADS[id(data)] = (data, parsed[0][1])
        for opcode, payload in parsed:
            if opcode == 8:
                self.closed = (int.from_bytes(payload[:2], "big"), payload[2:])
                if self.peer is not None:
                    asyncio.get_running_loop().call_soon(self.peer.peer_closed, self.closed[0])
                continue
            self.opcodes.append(opcode)
            self.frames.append(payload)

    def writelines(self, data: list[bytes]) -> None:
        for frame in data:
            self.write(frame)

    def is_closing(self) -> bool:
        return self.aborted or self.tcp_closed

    def close(self) -> None:
        self.tcp_closed = True

    def abort(self) -> None:
        self.aborted = True
        if self.on_abort is not None:
            self.on_abort()

    def get_write_buffer_size(self) -> int:
        return 0
