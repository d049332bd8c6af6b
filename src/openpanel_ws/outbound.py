"""The outbound path: frames built once, written through to each socket once per loop turn.

See docs/protocol.md, "Outbound path". In short:

- A server-to-client frame is unmasked, so header + payload is the same for every
  recipient: `text_frame` builds it once and the same `bytes` go to every client.
- While a client's transport is not paused, a frame costs no task and no await: it is
  appended to the client's `SendQueue`, and one `WriteScheduler.flush` per event-loop
  iteration (one `loop.call_soon` for all clients) writes each client's queue with one
  `transport.write`.
- Only while the transport is paused (over its high-water mark) does the queue grow; a
  drain task is created on demand, waits for the transport to resume, writes the backlog
  and ends. The `SendQueue` bound applies: past it the client is a slow consumer (1013).
- A drain that waits past `send_timeout` is a stalled send: the server's scheduler
  checks the few draining writers twice a second and aborts their transports.
- Every frame goes through this path as whole frames, synchronously, in order: data,
  pong (`control_frame`) and Close (`close_frame`). The Close frame is written after the
  last queued frame; nothing is written after it. The closing handshake is completed
  here too: after our Close the transport is closed when the peer's Close arrives
  (`peer_closed`, from the read loop) or after `CLOSE_TIMEOUT`; a Close from the peer
  is answered at once. aiohttp writes a frame of its own only when it closes by itself
  (a protocol error from the peer, such as a message over the size limit); it marks the
  response closed first, and `ws.closed` is checked before each write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable
from typing import Protocol

from openpanel_ws.protocol import CloseCode
from openpanel_ws.sendqueue import QueueLimits, SendQueue

__all__ = [
    "CLOSE_TIMEOUT",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ClientWriter",
    "FlowLike",
    "StreamLike",
    "TransportLike",
    "WebSocketLike",
    "WriteScheduler",
    "close_frame",
    "control_frame",
    "text_frame",
    "text_frame_once",
]

log = logging.getLogger(__name__)

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# How long a Close frame of ours waits for the peer's Close before the TCP close.
CLOSE_TIMEOUT = 5.0

_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def _frame(opcode: int, payload: bytes) -> bytes:
    first = 0x80 | opcode  # FIN, no RSV bits (no compression), unmasked (server side)
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _LEN2(first, 126, n) + payload
    return _LEN3(first, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked TEXT frame (FIN set) around an encoded JSON payload."""
    return _frame(OP_TEXT, payload)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping/pong frame (control frames carry at most 125 bytes)."""
    return _frame(opcode, payload[:125])


def close_frame(code: int, reason: str = "") -> bytes:
    """A Close frame: the code, then at most 123 bytes of UTF-8 reason."""
    return _frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


_last_payload: bytes = b""
_last_frame: bytes = text_frame(b"")


def text_frame_once(payload: bytes) -> bytes:
    """`text_frame`, built once for a payload handed to many clients in a row: a fan-out
    loop passes the same `bytes` object to every subscriber, so the last one is kept (the
    reference keeps the object alive, so identity means the same content)."""
    global _last_payload, _last_frame
    if payload is not _last_payload:
        _last_frame = text_frame(payload)
        _last_payload = payload
    return _last_frame


# --- what the writer needs from aiohttp ----------------------------------------------


class WebSocketLike(Protocol):
    """aiohttp's WebSocketResponse: closed once aiohttp has closed it by itself."""

    @property
    def closed(self) -> bool: ...


class TransportLike(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def writelines(self, data: list[bytes]) -> None: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class FlowLike(Protocol):
    """aiohttp's protocol: `writing_paused` between pause_writing and resume_writing."""

    @property
    def writing_paused(self) -> bool: ...


class StreamLike(Protocol):
    """aiohttp's StreamWriter (what `ws.prepare()` returns): transport, protocol, drain."""

    @property
    def transport(self) -> TransportLike | None: ...

    @property
    def protocol(self) -> FlowLike: ...

    def drain(self) -> Awaitable[None]: ...


# --- one scheduler per server --------------------------------------------------------


class WriteScheduler:
    """Flushes every writer with queued frames once per loop iteration, and aborts the
    transports of writers whose drain stalled past their `send_timeout`."""

    __slots__ = ("_armed", "_dirty", "_draining", "_watch_handle", "limits", "send_timeout",
                 "watch_period")

    def __init__(self, limits: QueueLimits, send_timeout: float, watch_period: float = 0.5) -> None:
        self.limits = limits
        self.send_timeout = send_timeout
        self.watch_period = watch_period
        self._dirty: list[ClientWriter] = []
        self._armed = False
        self._draining: set[ClientWriter] = set()
        self._watch_handle: asyncio.TimerHandle | None = None

    def mark(self, writer: ClientWriter) -> None:
        self._dirty.append(writer)
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._armed = False
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer._flush()

    # stall watchdog: only writers waiting for a paused transport are watched
    def watch(self, writer: ClientWriter) -> None:
        self._draining.add(writer)
        if self._watch_handle is None:
            loop = asyncio.get_running_loop()
            self._watch_handle = loop.call_later(self.watch_period, self._check, loop)

    def unwatch(self, writer: ClientWriter) -> None:
        self._draining.discard(writer)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watch_handle = None
        now = loop.time()
        for writer in list(self._draining):
            if writer.check_stalled(now):
                self._draining.discard(writer)
        if self._draining:
            self._watch_handle = loop.call_later(self.watch_period, self._check, loop)

    def stop(self) -> None:
        if self._watch_handle is not None:
            self._watch_handle.cancel()
            self._watch_handle = None


class ClientWriter:
    """The outbound side of one WebSocket connection (no task while it keeps up)."""

    __slots__ = (
        "__weakref__",
        "_close_sent",
        "_close_wait",
        "_closing",
        "_dirty",
        "_drain_waiter",
        "_flow",
        "_queue",
        "_scheduler",
        "_stalled_since",
        "_stream",
        "_task",
        "_transport",
        "_ws",
    )

    def __init__(
        self,
        ws: WebSocketLike,
        stream: StreamLike,
        scheduler: WriteScheduler,
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._transport = stream.transport
        self._flow = stream.protocol
        self._scheduler = scheduler
        self._queue = SendQueue(scheduler.limits)
        self._dirty = False
        self._closing: tuple[int, str] | None = None
        self._close_sent = False  # our Close frame is out: nothing more is written
        self._close_wait: asyncio.Future[None] | None = None  # for the peer's Close
        self._task: asyncio.Task[None] | None = None  # drain and/or close, only on demand
        self._stalled_since: float | None = None
        # (fraction, future) of a producer waiting for the backlog to shrink
        self._drain_waiter: tuple[float, asyncio.Future[None]] | None = None

    # --- producers (synchronous, never block) ----------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def send(self, frame: bytes) -> bool:
        """Queue a complete frame (`text_frame`) in order. False when the client is
        closing or was just cut off as a slow consumer."""
        if self._closing is not None:
            return False
        if self._queue.push(frame) is not None:
            self._cut_off()
            return False
        if not self._dirty and self._task is None:
            self._dirty = True
            scheduler = self._scheduler  # WriteScheduler.mark, inlined: once per delivery
            scheduler._dirty.append(self)
            if not scheduler._armed:
                scheduler._armed = True
                asyncio.get_running_loop().call_soon(scheduler.flush)
        return True

    def send_latest(self, key: str, frame: bytes) -> None:
        """Queue a latest-value frame; replaces an unsent frame of the same key in place."""
        if self._closing is not None:
            return
        self._queue.push_latest(key, frame)
        if not self._dirty and self._task is None:
            self._dirty = True
            self._scheduler.mark(self)

    def discard_latest(self, key: str) -> None:
        """Drop an unsent latest-value frame (e.g. after unsubscribe), and its place in
        the queue: a later frame of the same key must queue behind what is sent meanwhile."""
        self._queue.discard(key)

    @property
    def backlog(self) -> float:
        """How full the queue is: 0.0 empty, 1.0 at the slow-consumer bound."""
        return self._queue.backlog

    async def wait_backlog_below(self, fraction: float) -> None:
        """Backpressure for a producer that can pause its source (terminal output): wait
        until the backlog is below `fraction` of the bound, or the client is closing."""
        if self._queue.backlog < fraction or self._closing is not None:
            return
        future = asyncio.get_running_loop().create_future()
        self._drain_waiter = (fraction, future)
        try:
            await future
        finally:
            self._drain_waiter = None

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with `code` (after a paused transport resumes)."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._wake_drain_waiter()
        if self._task is not None:
            return  # the drain task closes when the backlog is written
        self._flush()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._close_after_drain())

    async def wait_closed(self) -> None:
        # asyncio.wait: returns when the task ends without re-raising its cancellation
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # --- socket side ---------------------------------------------------------------------

    def _writable(self) -> bool:
        transport = self._transport
        return (not self._close_sent and not self._ws.closed and transport is not None
                and not transport.is_closing())

    def _flush(self) -> None:
        """Once per loop iteration for a writer with queued frames (and from close)."""
        self._dirty = False
        queue = self._queue
        if self._task is not None or not queue.entries:
            return
        transport = self._transport
        # `_writable()`, inlined: this runs once per client per loop turn.
        if self._close_sent or self._ws.closed or transport is None or transport.is_closing():
            queue.clear()  # aiohttp closed (its Close frame is out) or the peer left
            return
        if self._flow.writing_paused:
            self._task = asyncio.get_running_loop().create_task(self._close_after_drain())
            return
        self._write(queue.pop_all())

    def _write(self, frames: list[bytes]) -> None:
        transport = self._transport
        assert transport is not None
        try:
            if len(frames) == 1:
                transport.write(frames[0])
            else:
                transport.writelines(frames)
        except (ConnectionError, RuntimeError):
            self._abort()
            return
        if self._drain_waiter is not None:
            self._wake_drain_waiter()

    async def _close_after_drain(self) -> None:
        """The on-demand task: wait while the transport is paused and write the backlog
        in one write; then, when closing, the close handshake; then end."""
        scheduler = self._scheduler
        try:
            while self._queue:
                if not self._writable():
                    self._queue.clear()
                    break
                if self._flow.writing_paused:
                    self._stalled_since = asyncio.get_running_loop().time()
                    scheduler.watch(self)
                    try:
                        await self._stream.drain()
                    finally:
                        self._stalled_since = None
                        scheduler.unwatch(self)
                    continue
                self._write(self._queue.pop_all())
            if self._closing is not None:
                await self._close(*self._closing)
        except (ConnectionError, RuntimeError):
            self._abort()
        except asyncio.CancelledError:
            self._abort()
            raise
        finally:
            self._task = None
            if self._queue and self._closing is None:
                self._dirty = True  # frames queued at the very end: next loop turn
                scheduler.mark(self)

    async def _close(self, code: int, reason: str) -> None:
        """Our Close frame after the last queued frame; the TCP close when the peer's
        Close arrives (or after CLOSE_TIMEOUT)."""
        transport = self._transport
        if not self._writable() or transport is None:
            return  # aiohttp closed (its Close frame is out) or the peer is gone
        self._write([close_frame(code, reason)])
        self._close_sent = True
        if self._close_wait is None:
            self._close_wait = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._close_wait), CLOSE_TIMEOUT)
        self._finish(answered=self._close_wait.done())

    def peer_closed(self, code: int = CloseCode.NORMAL) -> None:
        """The peer's Close frame arrived (from the read loop): the answer to ours ends
        the handshake; otherwise it is answered at once, and what is queued is dropped."""
        self.reader_done()
        if self._close_sent or self._ws.closed:
            return
        self._queue.clear()
        if self._closing is None:
            self._closing = (CloseCode.NORMAL, "")
            self._wake_drain_waiter()
        if self._writable():
            self._write([close_frame(code if 1000 <= code < 5000 else CloseCode.NORMAL)])
            self._close_sent = True
            self._finish(answered=True)

    def reader_done(self) -> None:
        """The read side ended (EOF, error, or the peer's Close): no Close reply is
        coming, so a Close of ours waits no longer."""
        waiter = self._close_wait
        if waiter is None:
            self._close_wait = waiter = asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)

    def _finish(self, answered: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not answered and transport.get_write_buffer_size():
            transport.abort()  # the peer does not read: the TCP close would wait forever
        else:
            transport.close()  # after what is buffered

    def check_stalled(self, now: float) -> bool:
        """Abort the transport when the drain has waited past the send timeout."""
        since = self._stalled_since
        if since is not None and now - since > self._scheduler.send_timeout:
            log.info("aborting a client whose send stalled for %.1f s", now - since)
            self._abort()
            if self._task is not None:
                self._task.cancel()
            return True
        return False

    def _wake_drain_waiter(self) -> None:
        waiter = self._drain_waiter
        if (waiter is not None and not waiter[1].done()
                and (self._queue.backlog < waiter[0] or self._closing is not None)):
            waiter[1].set_result(None)

    def _cut_off(self) -> None:
        # Slow consumer: the backlog was dropped (it would only grow); close with 1013 so a
        # reconnecting client resumes with `since` instead of silently missing frames.
        log.info("closing slow consumer: send queue overflow")
        self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflow")
        # A transport buffer this full will not drain in time for a clean close.
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() > self._queue.limits.max_bytes:
            self._abort()

    def _abort(self) -> None:
        self._closing = self._closing or (CloseCode.GOING_AWAY, "aborted")
        self._queue.clear()
        self._wake_drain_waiter()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.abort()
