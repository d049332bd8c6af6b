"""The outbound side of one WebSocket connection as a sans-I/O state machine.

`OutboundProtocol` holds the send queue (`SendQueue`: order, bound, conflation), the
closing handshake and the slow-consumer verdict. It is fed what producers send and what
happened on the socket (`close`, `peer_closed`, `reader_done`, `close_timed_out`,
`transport_lost`, `abort`), hands out the frames to write now (`data_to_send`) and says
what the shell must do next (`next_step`), as a `Step` value. It never touches a socket,
a task or a clock, so every exit is tested with plain calls (tests/unit/test_outbound.py);
the asyncio shell around it is `openpanel_ws.outbound.shell.ClientWriter`.

The closing handshake (docs/protocol.md "Outbound path"):

    OPEN --close()--> CLOSING --data_to_send(): queue + our Close--> CLOSE_SENT
    CLOSE_SENT --peer's Close / reader done--> CLOSED (Step.CLOSE_TRANSPORT)
    CLOSE_SENT --close_timed_out(buffered)--> CLOSED (CLOSE_TRANSPORT, or ABORT if unread)
    OPEN/CLOSING --peer's Close--> the answer is the next frame, queue dropped --> CLOSED
    any --abort() / transport_lost()--> CLOSED

`closing` is true from `close()` on (no more frames are accepted); `closed` once the
machine is done (the transport closed or aborted, or gone).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto

from openpanel_ws.outbound.frames import close_frame
from openpanel_ws.protocol import SLOW_CONSUMER_REASON, CloseCode
from openpanel_ws.sendqueue import QueueLimits, SendQueue

__all__ = [
    "OutboundProtocol",
    "OutboundState",
    "Step",
]


class OutboundState(Enum):
    OPEN = auto()
    CLOSING = auto()  # close() was called: the queue, then our Close frame, are to be written
    CLOSE_SENT = auto()  # our Close frame is out: nothing more is written; waiting for the peer
    CLOSED = auto()


# The per-delivery paths compare with these: a module global is cheaper to load than an
# enum member through its class (`send` runs once per frame per recipient).
_OPEN = OutboundState.OPEN


class Step(Enum):
    """What the shell does next (`OutboundProtocol.next_step`)."""

    IDLE = auto()  # nothing until a producer sends (or the peer answers)
    WRITE = auto()  # write `data_to_send()` now, then ask again
    WAIT_RESUME = auto()  # the transport is paused: wait until it drains, then ask again
    WAIT_PEER_CLOSE = auto()  # our Close is out: wait for the peer's, at most CLOSE_TIMEOUT
    CLOSE_TRANSPORT = auto()  # close the TCP connection after what is buffered
    ABORT = auto()  # drop the TCP connection now


class OutboundProtocol:
    """Queue policy, closing handshake and slow-consumer verdict of one connection.

    When frames become pending and no write is due yet, the machine tells its shell once
    (until the next `data_to_send`, so at most once per loop turn): it calls
    `on_pending(self)`, or, while `ready` is not empty, appends itself to `ready`. `ready`
    is the list of machines to write at the end of this loop turn (the server's
    `WriteScheduler.ready`); `on_pending` is what puts the first one of a turn there and
    arms the flush (`WriteScheduler.mark`)."""

    __slots__ = ("_answer", "_close", "_on_pending", "_peer_gone", "_pending_write",
                 "_queue", "_ready", "_slow", "_transport_step", "state")

    def __init__(self, limits: QueueLimits, on_pending: Callable[[OutboundProtocol], None],
                 ready: list[OutboundProtocol] | None = None) -> None:
        self._queue = SendQueue(limits)
        self._on_pending = on_pending
        self._ready: list[OutboundProtocol] = [] if ready is None else ready
        self.state = OutboundState.OPEN
        self._pending_write = False  # the shell was told (a flush or a drain is due)
        self._close: tuple[int, str] = (CloseCode.NORMAL, "")  # our Close frame, once CLOSING
        self._answer = False  # the Close to write answers the peer's (written even if paused)
        self._peer_gone = False  # the read side ended: no Close reply is coming
        self._slow = False  # cut off as a slow consumer: aborted if the transport is backed up
        self._transport_step: Step | None = None  # CLOSE_TRANSPORT or ABORT, decided, not yet taken

    # --- producers (synchronous, never block) ----------------------------------------

    @property
    def closing(self) -> bool:
        """No more frames are accepted (from `close()` on, or the connection is gone)."""
        return self.state is not OutboundState.OPEN

    @property
    def closed(self) -> bool:
        """Done: the transport is closed, aborted or gone."""
        return self.state is OutboundState.CLOSED

    @property
    def backlog(self) -> float:
        """How full the queue is: 0.0 empty, 1.0 at the slow-consumer bound."""
        return self._queue.backlog

    @property
    def limits(self) -> QueueLimits:
        return self._queue.limits

    def send(self, frame: bytes) -> bool:
        """Queue a complete frame in order. False when closing, or when this frame made
        the client a slow consumer (the backlog is dropped, a 1013 close follows)."""
        if self.state is not _OPEN:
            return False
        if self._queue.push(frame) is not None:
            self._cut_off()
            return False
        if not self._pending_write:
            self._pending_write = True
            ready = self._ready
            if ready:
                # `WriteScheduler.mark` inlined for all but the first machine of a loop turn
                # (the flush is armed while `ready` is not empty): this runs once per
                # delivery, and a call here costs ~10% of the path (docs/protocol.md
                # "Outbound path").
                ready.append(self)  # seam-exception: the scheduler's mark, inlined (per delivery)
            else:
                self._on_pending(self)
        return True

    def send_latest(self, key: str, frame: bytes) -> None:
        """Queue a latest-value frame; replaces an unsent frame of the same key in place."""
        if self.state is not _OPEN:
            return
        self._queue.push_latest(key, frame)
        if not self._pending_write:
            self._pending_write = True
            self._on_pending(self)

    def discard_latest(self, key: str) -> None:
        """Drop an unsent latest-value frame (e.g. after unsubscribe), and its place in
        the queue: a later frame of the same key must queue behind what is sent meanwhile."""
        self._queue.discard(key)

    # --- what happened -----------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then our Close frame (after a paused transport resumes)."""
        if self.state is not OutboundState.OPEN:
            return
        self.state = OutboundState.CLOSING
        self._close = (code, reason)

    def peer_closed(self, code: int = CloseCode.NORMAL) -> None:
        """The peer's Close frame arrived: it answers ours, or it is answered at once
        (its code echoed) and what is still queued is dropped."""
        self._peer_gone = True
        if self.state is OutboundState.OPEN or self.state is OutboundState.CLOSING:
            self._queue.clear()
            self.state = OutboundState.CLOSING
            self._close = (code if 1000 <= code < 5000 else CloseCode.NORMAL, "")
            self._answer = True

    def reader_done(self) -> None:
        """The read side ended (EOF, error, or the peer's Close): no Close reply is
        coming, so a Close of ours waits no longer."""
        self._peer_gone = True

    def close_timed_out(self, buffered: int) -> None:
        """CLOSE_TIMEOUT passed after our Close; `buffered`: bytes the transport still
        holds. A peer that does not read would keep a TCP close waiting forever."""
        if self.state is OutboundState.CLOSE_SENT:
            self.state = OutboundState.CLOSED
            self._transport_step = Step.ABORT if buffered else Step.CLOSE_TRANSPORT

    def transport_lost(self) -> None:
        """The transport is gone or closing without us (aiohttp closed by itself, its
        Close frame is out, or the peer left): nothing is written any more."""
        if self.state is not OutboundState.CLOSED:
            self.state = OutboundState.CLOSED
            self._transport_step = None
        self._queue.clear()

    def abort(self) -> None:
        """A write failed, a send stalled past its timeout, or the shell was cancelled."""
        if self.state is not OutboundState.CLOSED:
            self.state = OutboundState.CLOSED
            self._transport_step = Step.ABORT
        self._queue.clear()

    # --- what to do ----------------------------------------------------------------------

    def next_step(self, paused: bool, buffered: int = 0) -> Step:
        """What the shell does now; `paused`: the transport is over its high-water mark,
        `buffered`: the bytes it holds (read only for the slow-consumer verdict)."""
        if self._slow:
            self._slow = False
            if buffered > self._queue.limits.max_bytes:
                self.abort()  # a transport buffer this full will not drain in time
        state = self.state
        if state is OutboundState.CLOSED:
            finish, self._transport_step = self._transport_step, None
            return finish or Step.IDLE
        if state is OutboundState.CLOSE_SENT:
            if self._peer_gone:
                self.state = OutboundState.CLOSED
                return Step.CLOSE_TRANSPORT
            return Step.WAIT_PEER_CLOSE
        if state is OutboundState.CLOSING and self._answer:
            return Step.WRITE  # the answer to the peer's Close goes out at once
        if self._queue or state is OutboundState.CLOSING:
            return Step.WAIT_RESUME if paused else Step.WRITE
        return Step.IDLE

    def data_to_send(self) -> list[bytes]:
        """Every frame to write now, in order; once closing, our Close frame last (and
        nothing after it). Call when `next_step` said WRITE (or, while OPEN, when the
        transport is not paused)."""
        self._pending_write = False
        state = self.state
        if state is _OPEN:
            return self._queue.pop_all()
        if state is not OutboundState.CLOSING:
            return []
        frames = self._queue.pop_all()
        frames.append(close_frame(*self._close))
        self.state = OutboundState.CLOSE_SENT
        return frames

    # --- internals ---------------------------------------------------------------------

    def _cut_off(self) -> None:
        # Slow consumer: the backlog was dropped (it would only grow); close with 1013 so a
        # reconnecting client resumes with `since` instead of silently missing frames.
        self._slow = True  # before close(): a shell carries the close out at once
        self.close(CloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)
        self._pending_write = True
        self._on_pending(self)  # the verdict is the shell's next step, even mid-drain
