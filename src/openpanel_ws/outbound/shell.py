"""The outbound shell: the asyncio side of `OutboundProtocol` (docs/protocol.md "Outbound path").

In short:

- While a client's transport is not paused, a frame costs no task and no await: it is
  appended to the client's queue (`OutboundProtocol.send`), and one `WriteScheduler.flush`
  per event-loop iteration (one `loop.call_soon` for all clients) writes each client's
  queue with one `transport.write`.
- Only while the transport is paused (over its high-water mark) does the queue grow; a
  drain task is created on demand, waits for the transport to resume, writes the backlog
  and ends. Past the queue's bound the client is a slow consumer (1013).
- A drain that waits past `send_timeout` is a stalled send: the server's scheduler
  checks the few draining writers twice a second and aborts their transports.
- Every frame goes through this path as whole frames, synchronously, in order: data,
  pong and Close. The closing handshake's decisions are the protocol's; this shell waits
  for the peer's Close at most `CLOSE_TIMEOUT`. aiohttp writes a frame of its own only
  when it closes by itself (a protocol error from the peer, such as a message over the
  size limit); it marks the response closed first, and `ws.closed` is checked before
  each write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Protocol

from openpanel_ws.outbound.sansio import OutboundProtocol, OutboundState, Step
from openpanel_ws.sendqueue import QueueLimits

__all__ = [
    "CLOSE_TIMEOUT",
    "ClientWriter",
    "FlowLike",
    "StreamLike",
    "TransportLike",
    "WebSocketLike",
    "WriteScheduler",
]

log = logging.getLogger(__name__)

_OPEN = OutboundState.OPEN  # cheaper to load than the member through its class (per flush)

# How long a Close frame of ours waits for the peer's Close before the TCP close.
CLOSE_TIMEOUT = 5.0


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

    __slots__ = ("_draining", "_watch_handle", "limits", "mark", "ready", "send_timeout",
                 "watch_period")

    def __init__(self, limits: QueueLimits, send_timeout: float, watch_period: float = 0.5) -> None:
        self.limits = limits
        self.send_timeout = send_timeout
        self.watch_period = watch_period
        # The writers to flush at the end of this loop turn; not empty exactly while the
        # flush is armed (a writer joins it directly then: `OutboundProtocol.send`).
        self.ready: list[OutboundProtocol] = []
        self._draining: set[ClientWriter] = set()
        self._watch_handle: asyncio.TimerHandle | None = None
        # One bound method for every writer (each holds a reference, not a copy).
        self.mark = self._mark

    def _mark(self, writer: OutboundProtocol) -> None:
        """`writer` has frames to write: flush it at the end of this loop iteration."""
        ready = self.ready
        if not ready:
            asyncio.get_running_loop().call_soon(self.flush)
        ready.append(writer)

    def flush(self) -> None:
        ready = self.ready
        writers = ready.copy()
        ready.clear()  # the same list: the writers hold it
        for writer in writers:
            writer.write_pending()  # type: ignore[attr-defined]  # only ClientWriters join it

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


class ClientWriter(OutboundProtocol):
    """The outbound side of one WebSocket connection: the protocol's decisions carried
    out on the transport (no task while it keeps up). Producers call the protocol's
    `send`, `send_latest`, `discard_latest` directly."""

    __slots__ = (
        "__weakref__",
        "_close_timer",
        "_done",
        "_drain_waiter",
        "_flow",
        "_scheduler",
        "_stalled_since",
        "_stream",
        "_task",
        "_transport",
        "_ws",
    )

    def __init__(self, ws: WebSocketLike, stream: StreamLike, scheduler: WriteScheduler) -> None:
        super().__init__(scheduler.limits, scheduler.mark, scheduler.ready)
        self._ws = ws
        self._stream = stream
        self._transport = stream.transport
        self._flow = stream.protocol
        self._scheduler = scheduler
        self._task: asyncio.Task[None] | None = None  # the drain, only while paused
        self._close_timer: asyncio.TimerHandle | None = None  # CLOSE_TIMEOUT after our Close
        self._done: asyncio.Future[None] | None = None  # for wait_closed, made on demand
        self._stalled_since: float | None = None
        # (fraction, future) of a producer waiting for the backlog to shrink
        self._drain_waiter: tuple[float, asyncio.Future[None]] | None = None

    # --- producers and the connection ------------------------------------------------

    async def wait_backlog_below(self, fraction: float) -> None:
        """Backpressure for a producer that can pause its source (terminal output): wait
        until the backlog is below `fraction` of the bound, or the client is closing."""
        if self.backlog < fraction or self.closing:
            return
        future = asyncio.get_running_loop().create_future()
        self._drain_waiter = (fraction, future)
        try:
            await future
        finally:
            self._drain_waiter = None

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with `code` (after a paused transport resumes)."""
        if self.state is not OutboundState.OPEN:
            return
        super().close(code, reason)
        self._wake_drain_waiter()
        self._pump()

    def peer_closed(self, code: int = 1000) -> None:
        """The peer's Close frame arrived (from the read loop)."""
        super().peer_closed(code)
        self._wake_drain_waiter()
        self._pump()

    def reader_done(self) -> None:
        """The read side ended: a Close of ours waits no longer."""
        super().reader_done()
        self._pump()

    async def wait_closed(self) -> None:
        """Until the closing handshake is over; while open, until a running drain ends."""
        while self.state is OutboundState.OPEN:
            task = self._task
            if task is None:
                return
            await asyncio.wait([task])  # returns when it ends, without its cancellation
        if self.state is not OutboundState.CLOSED:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._done)

    def cancel(self) -> None:
        """Give up on the handshake: the transport is aborted."""
        self.abort()
        self._pump()

    # --- socket side ---------------------------------------------------------------------

    def write_pending(self) -> None:
        """Once per loop iteration for a writer with queued frames (the scheduler's flush)."""
        transport = self._transport
        if self._ws.closed or transport is None or transport.is_closing():
            self.transport_lost()  # aiohttp closed (its Close frame is out) or the peer left
        elif self.state is _OPEN and not self._flow.writing_paused:
            # `_pump()`'s common case with `data_to_send()` inlined (OPEN: the queue, in
            # order): this runs once per client per loop turn.
            self._pending_write = False
            queue = self._queue
            if queue.entries:
                self._write(queue.pop_all())
            return
        self._pump()

    def _pump(self) -> None:
        """Carry out the protocol's steps until it waits for something."""
        transport = self._transport
        while True:
            if self.state is not OutboundState.CLOSED and (
                    self._ws.closed or transport is None or transport.is_closing()):
                self.transport_lost()
            buffered = 0
            if self._slow:
                log.info("closing slow consumer: send queue overflow")
                buffered = transport.get_write_buffer_size() if transport is not None else 0
            step = self.next_step(self._flow.writing_paused, buffered)
            if step is Step.WRITE:
                self._write(self.data_to_send())
                continue
            if step is Step.WAIT_RESUME:
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._drain())
            elif step is Step.WAIT_PEER_CLOSE:
                if self._close_timer is None:
                    loop = asyncio.get_running_loop()
                    self._close_timer = loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)
            elif step is Step.CLOSE_TRANSPORT or step is Step.ABORT:
                self._end_transport(step)
            if self.state is OutboundState.CLOSED:
                self._ended()
            return

    def _write(self, frames: list[bytes]) -> None:
        transport = self._transport
        assert transport is not None
        try:
            if len(frames) == 1:
                transport.write(frames[0])
            else:
                transport.writelines(frames)
        except (ConnectionError, RuntimeError):
            self.abort()
            return
        if self._drain_waiter is not None:
            self._wake_drain_waiter()

    async def _drain(self) -> None:
        """The on-demand task: wait while the transport is paused, then hand back to
        `_pump` (which writes the backlog in one write)."""
        scheduler = self._scheduler
        try:
            while self._flow.writing_paused and self.state is not OutboundState.CLOSED:
                self._stalled_since = asyncio.get_running_loop().time()
                scheduler.watch(self)
                try:
                    await self._stream.drain()
                finally:
                    self._stalled_since = None
                    scheduler.unwatch(self)
        except (ConnectionError, RuntimeError):
            self.abort()
        except asyncio.CancelledError:
            self.abort()
            self._task = None
            self._pump()
            raise
        self._task = None
        self._pump()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        transport = self._transport
        self.close_timed_out(transport.get_write_buffer_size() if transport is not None else 0)
        self._pump()

    def _end_transport(self, step: Step) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if step is Step.ABORT:
            with contextlib.suppress(Exception):
                transport.abort()
        else:
            transport.close()  # after what is buffered

    def _ended(self) -> None:
        """The machine is CLOSED: release the timer, the task and every waiter."""
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._wake_drain_waiter()
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def check_stalled(self, now: float) -> bool:
        """Abort the transport when the drain has waited past the send timeout."""
        since = self._stalled_since
        if since is not None and now - since > self._scheduler.send_timeout:
            log.info("aborting a client whose send stalled for %.1f s", now - since)
            self.abort()
            self._pump()
            return True
        return False

    def _wake_drain_waiter(self) -> None:
        waiter = self._drain_waiter
        if (waiter is not None and not waiter[1].done()
                and (self.backlog < waiter[0] or self.closing)):
            waiter[1].set_result(None)
