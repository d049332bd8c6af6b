"""The outbound path of one client: a bounded queue drained by one writer task.

Producers never await a client. Ordered frames (logs, events, terminal output, replies)
queue up to a bound; past it the client is a slow consumer and is closed with 1013.
Latest-value frames (stats, metrics) are conflated per key: a slow client gets the
newest sample, never a growing queue. A send that stalls past a deadline aborts the
transport, so a dead client cannot hold a writer forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from aiohttp import WSMsgType

from openpanel_ws.protocol import CloseCode

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """What the writer needs from a WebSocket (aiohttp's WebSocketResponse fits)."""

    async def send_frame(self, message: bytes, opcode: WSMsgType, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ..., drain: bool = ...) -> bool: ...


class Transport(Protocol):
    def abort(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class ClientWriter:
    __slots__ = (
        "_closed_reason",
        "_closing",
        "_latest",
        "_max_bytes",
        "_max_frames",
        "_queue",
        "_queued_bytes",
        "_send_timeout",
        "_sink",
        "_task",
        "_transport",
        "_wakeup",
        "bytes_sent",
        "frames_sent",
    )

    def __init__(
        self,
        sink: FrameSink,
        transport: Transport | None,
        *,
        max_frames: int,
        max_bytes: int,
        send_timeout: float,
    ) -> None:
        self._sink = sink
        self._transport = transport
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._send_timeout = send_timeout
        # Entries are bytes (ordered frames) or str keys into `_latest` (conflated frames).
        self._queue: deque[bytes | str] = deque()
        self._latest: dict[str, bytes] = {}
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._closed_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.frames_sent = 0
        self.bytes_sent = 0

    # --- producers (synchronous, never block) ----------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def send(self, frame: bytes) -> bool:
        """Queue an ordered frame. False when the client is closing or was just cut off."""
        if self._closing is not None:
            return False
        if len(self._queue) >= self._max_frames or self._queued_bytes + len(frame) > self._max_bytes:
            self._cut_off()
            return False
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wakeup.set()
        return True

    def send_latest(self, key: str, frame: bytes) -> None:
        """Queue a latest-value frame; replaces an unsent frame of the same key in place."""
        if self._closing is not None:
            return
        if key not in self._latest:
            self._queue.append(key)
        self._latest[key] = frame
        self._wakeup.set()

    def discard_latest(self, key: str) -> None:
        """Drop an unsent latest-value frame (e.g. after unsubscribe)."""
        self._latest.pop(key, None)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with `code`."""
        if self._closing is None:
            self._closing = (code, reason)
            self._wakeup.set()

    # --- writer task -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_closed(self) -> None:
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            while True:
                while self._queue:
                    entry = self._queue.popleft()
                    if isinstance(entry, str):
                        frame = self._latest.pop(entry, None)
                        if frame is None:
                            continue
                    else:
                        frame = entry
                        self._queued_bytes -= len(frame)
                    await self._send(frame)
                if self._closing is not None:
                    code, reason = self._closing
                    await self._close(code, reason)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()
        except asyncio.CancelledError:
            self._abort()
            raise

    async def _send(self, frame: bytes) -> None:
        await asyncio.wait_for(self._sink.send_frame(frame, WSMsgType.TEXT), self._send_timeout)
        self.frames_sent += 1
        self.bytes_sent += len(frame)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self._sink.close(code=code, message=reason.encode()[:120]), self._send_timeout
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()

    def _cut_off(self) -> None:
        # Slow consumer: drop the backlog (it would only grow) and close with 1013 so a
        # reconnecting client resumes with `since` instead of silently missing frames.
        log.info("closing slow consumer: %d frames / %d bytes queued",
                 len(self._queue), self._queued_bytes)
        self._queue.clear()
        self._latest.clear()
        self._queued_bytes = 0
        self._closing = (CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflow")
        self._wakeup.set()
        # A send already stalled on this client would delay the close; the bound is hit,
        # so waiting for the kernel buffer to drain is pointless.
        if self._transport is not None and self._transport.get_write_buffer_size() > self._max_bytes:
            self._abort()

    def _abort(self) -> None:
        self._closing = self._closing or (CloseCode.GOING_AWAY, "aborted")
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.abort()
