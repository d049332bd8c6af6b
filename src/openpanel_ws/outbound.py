"""The outbound path of one client: a bounded queue drained by one writer task.

Producers never await a client. Ordered frames (logs, events, terminal output, replies)
queue up to a bound; past it the client is a slow consumer and is closed with 1013.
Latest-value frames (stats, metrics) are conflated per key: a slow client gets the
newest sample, never a growing queue. A send that stalls past a deadline aborts the
transport, so a dead client cannot hold a writer forever: one `StallWatchdog` per server
checks every writer once a second, so the hot path arms no timer per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from typing import ClassVar, Protocol

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
        "__weakref__",
        "_closed_reason",
        "_closing",
        "_drain_waiter",
        "_latest",
        "_max_bytes",
        "_max_frames",
        "_queue",
        "_queued_bytes",
        "_send_timeout",
        "_sink",
        "_stalled_since",
        "_task",
        "_transport",
        "_wakeup",
        "_watchdog",
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
        watchdog: StallWatchdog | None = None,
    ) -> None:
        self._sink = sink
        self._watchdog = watchdog
        self._stalled_since: float | None = None
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
        # (fraction, future) of a producer waiting for the ordered backlog to shrink
        self._drain_waiter: tuple[float, asyncio.Future[None]] | None = None
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

    @property
    def backlog(self) -> float:
        """How full the ordered queue is: 0.0 empty, 1.0 at the slow-consumer bound."""
        return max(len(self._queue) / self._max_frames, self._queued_bytes / self._max_bytes)

    async def wait_backlog_below(self, fraction: float) -> None:
        """Backpressure for a producer that can pause its source (terminal output): wait
        until the backlog is below `fraction` of the bound, or the client is closing."""
        if self.backlog < fraction or self._closing is not None:
            return
        future = asyncio.get_running_loop().create_future()
        self._drain_waiter = (fraction, future)
        try:
            await future
        finally:
            self._drain_waiter = None

    def _wake_drain_waiter(self) -> None:
        waiter = self._drain_waiter
        if (waiter is not None and not waiter[1].done()
                and (self.backlog < waiter[0] or self._closing is not None)):
            waiter[1].set_result(None)

    def send_latest(self, key: str, frame: bytes) -> None:
        """Queue a latest-value frame; replaces an unsent frame of the same key in place."""
        if self._closing is not None:
            return
        if key not in self._latest:
            self._queue.append(key)
        self._latest[key] = frame
        self._wakeup.set()

    def discard_latest(self, key: str) -> None:
        """Drop an unsent latest-value frame (e.g. after unsubscribe), and its place in
        the queue: a later frame of the same key must queue behind what is sent meanwhile."""
        if self._latest.pop(key, None) is not None:
            with contextlib.suppress(ValueError):
                self._queue.remove(key)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with `code`."""
        if self._closing is None:
            self._closing = (code, reason)
            self._wakeup.set()
            self._wake_drain_waiter()

    # --- writer task -------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        if self._watchdog is None:
            self._watchdog = StallWatchdog.for_loop(loop)
        self._watchdog.watch(self)

    def check_stalled(self, now: float) -> bool:
        """Abort the transport when one send has been pending past the deadline."""
        since = self._stalled_since
        if since is not None and now - since > self._send_timeout:
            log.info("aborting a client whose send stalled for %.1f s", now - since)
            self._abort()
            if self._task is not None:
                self._task.cancel()
            return True
        return False

    async def wait_closed(self) -> None:
        # asyncio.wait: returns when the task ends without re-raising its cancellation
        if self._task is not None:
            await asyncio.wait([self._task])

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
                    if self._drain_waiter is not None:
                        self._wake_drain_waiter()
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
        # send_frame suspends only when the transport buffer is full; the watchdog
        # reads `_stalled_since` to cut off a client that stops reading.
        self._stalled_since = asyncio.get_running_loop().time()
        await self._sink.send_frame(frame, WSMsgType.TEXT)
        self._stalled_since = None
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
        self._wake_drain_waiter()
        # A send already stalled on this client would delay the close; the bound is hit,
        # so waiting for the kernel buffer to drain is pointless.
        if self._transport is not None and self._transport.get_write_buffer_size() > self._max_bytes:
            self._abort()

    def _abort(self) -> None:
        self._closing = self._closing or (CloseCode.GOING_AWAY, "aborted")
        self._wake_drain_waiter()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.abort()


class StallWatchdog:
    """Checks every live writer once per `period` for a send stalled past its deadline."""

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StallWatchdog]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, period: float = 0.5) -> None:
        self._period = period
        self._writers: weakref.WeakSet[ClientWriter] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> StallWatchdog:
        watchdog = cls._per_loop.get(loop)
        if watchdog is None:
            watchdog = cls._per_loop[loop] = cls()
        return watchdog

    def watch(self, writer: ClientWriter) -> None:
        self._writers.add(writer)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stall-watchdog")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._writers:
            await asyncio.sleep(self._period)
            now = loop.time()
            for writer in list(self._writers):
                if writer.check_stalled(now):
                    self._writers.discard(writer)
