"""A late subscriber's own history, sent as it is read (docs/containers.md "History").

The history is a separate non-follow `logs` request shaped by the subscriber's `tail`
and `since`. Its lines go to the subscriber as the engine sends them, put back in time
order by a bounded `Reorder`, under the send-queue bounds of live lines: a subscriber
that does not read overflows its queue and is cut off (1013) while the history is still
being read, and the gateway never holds more than a bounded window of it.

Bounds (docs/protocol.md "Defaults and bounds"):
- `tail` is capped at `log_history_max_lines` lines and `log_history_max_bytes` bytes of
  `log` messages; past a cap the subscriber gets what fits, then one `info` message
  `HISTORY_TRUNCATED`, then the live lines.
- At most `log_history_fetches_per_user` fetches run at once per token `sub`, and
  `log_history_fetches` per gateway; the others wait their turn, in order (`Turns`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from openpanel_ws import protocol
from openpanel_ws.engine.logs import ContainerLogLine, HandoverFilter, LogParser, Reorder
from openpanel_ws.gateways.base import Session
from openpanel_ws.outbound import text_frame
from openpanel_ws.protocol import Message

__all__ = [
    "HANDOVER_WINDOW",
    "HISTORY_TRUNCATED",
    "HistoryLimits",
    "HistoryPlan",
    "HistorySender",
    "Turns",
    "log_frame",
    "truncated_message",
]

# A late subscriber's history is fetched with at least this many lines, so the handover
# can recognise the shared stream's older lines even when the client asked for few.
HANDOVER_WINDOW: Final = 100
# History is paused while the subscriber's send queue is this full, until it drains to
# RESUME_BELOW; a queue that stays full this long is not read: the history goes on and
# the queue's bound decides (1013).
PAUSE_AT: Final = 0.5
RESUME_BELOW: Final = 0.25
PAUSE_MAX_SECONDS: Final = 2.0
HISTORY_TRUNCATED: Final = "HISTORY_TRUNCATED"


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """The history bounds of the settings (docs/containers.md "History")."""

    max_lines: int
    max_bytes: int
    fetches_per_user: int
    fetches: int


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """What to ask the engine for one subscriber's `tail`, and what to show of it."""

    fetch: int | str  # the engine's `tail`
    show: int | None  # show only the last `show` lines (None: all, as they come)
    capped: bool  # the request was over the line cap

    @classmethod
    def of(cls, tail: int | str, max_lines: int) -> HistoryPlan:
        capped = tail == "all" or int(tail) > max_lines
        want = max_lines if capped else int(tail)
        if want >= HANDOVER_WINDOW:
            return cls(want, None, capped)
        # Few lines: fetch the handover window (at most HANDOVER_WINDOW lines are held)
        # and show the last `want`.
        return cls(HANDOVER_WINDOW, want, capped)


def log_frame(container_ref: str, line: ContainerLogLine, host: str | None = None) -> bytes:
    """The `log` message for one line, framed (built once per distinct `containerId`);
    `host` names the container's host (docs/protocol.md "The `host` field")."""
    message: dict[str, Any] = {
        "type": "log",
        "containerId": container_ref,
        "timestamp": line.timestamp,
        "stream": line.stream,
        "data": line.data,
    }
    if host is not None:
        message["host"] = host
    return text_frame(orjson.dumps(message))


def truncated_message(ref: str, host: str | None, reason: str, limit: int, sent: int) -> Message:
    """The marker that ends a history cut by a cap (docs/containers.md "History")."""
    what = ("the older lines are not sent" if reason == "lines"
            else "the rest of the history is not sent")
    message: Message = {
        "type": "info",
        "code": HISTORY_TRUNCATED,
        "containerId": ref,
        "reason": reason,
        "limit": limit,
        "sent": sent,
        "message": f"History capped at {limit} {reason}: {what}",
        "timestamp": protocol.rfc3339(),
    }
    if host is not None:
        message["host"] = host
    return message


class Turns:
    """At most `per_user` holders per key and `total` in all; the others wait in order
    (the first waiter that fits goes first). Plain bookkeeping: the caller waits."""

    __slots__ = ("_active", "_held", "_waiting", "per_user", "total")

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._active: Counter[str] = Counter()
        self._held = 0
        self._waiting: deque[tuple[str, asyncio.Future[None]]] = deque()

    def _fits(self, key: str) -> bool:
        return self._held < self.total and self._active[key] < self.per_user

    def _grant(self, key: str) -> None:
        self._active[key] += 1
        self._held += 1

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        if self._fits(key) and not any(k == key for k, _ in self._waiting):
            self._grant(key)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (key, future)
            self._waiting.append(entry)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    self._release(key)  # granted, then cancelled before it ran
                else:
                    self._waiting.remove(entry)
                raise
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]
        self._held -= 1
        blocked: set[str] = set()
        for entry in list(self._waiting):
            waiter_key, future = entry
            if waiter_key in blocked:
                continue
            if not self._fits(waiter_key):
                blocked.add(waiter_key)  # its later waiters keep their order behind it
                continue
            self._waiting.remove(entry)
            self._grant(waiter_key)
            future.set_result(None)


class HistorySender:
    """Sends one subscriber's history as it is read, and builds its handover filter."""

    def __init__(self, session: Session[Any], ref: str, host: str | None, plan: HistoryPlan,
                 limits: HistoryLimits, *, floor: int | None, max_keys: int,
                 subscribed: Callable[[], bool]) -> None:
        self.session = session
        self.ref = ref
        self.host = host
        self.plan = plan
        self.limits = limits
        self.subscribed = subscribed
        self.handover = HandoverFilter((), floor, max_keys=max_keys)
        self.reorder = Reorder()
        # Few lines asked: the last `show` of the handover window, sent at the end.
        self.shown: deque[ContainerLogLine] | None = (
            None if plan.show is None else deque(maxlen=plan.show))
        self.lines = 0  # lines sent
        self.bytes = 0  # bytes of the `log` frames sent
        self.cut = False  # past the byte cap: the rest is not sent
        self.pacing = True

    @property
    def gone(self) -> bool:
        return self.session.closed or not self.subscribed()

    async def run(self, chunks: AsyncGenerator[bytes, None], parser: LogParser) -> None:
        """Read the history request to its end (or the byte cap), sending as it goes."""
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if not await self.take(self.reorder.push(parser.feed(chunk))):
                        return
                    await asyncio.sleep(0)  # one chunk at a time: the writer runs between
        finally:
            # Also when the stream broke off: what was read still counts.
            if not self.cut and not self.gone:
                await self.take(self.reorder.push(parser.flush()) + self.reorder.flush())

    async def take(self, lines: list[ContainerLogLine]) -> bool:
        """Send (or keep, for a short tail) lines in order; False when the rest of the
        history is not wanted (the byte cap, or the subscriber left)."""
        for line in lines:
            if self.shown is not None:
                self.handover.note(line)
                self.shown.append(line)
                continue
            if not self.send(line):
                return False
            self.handover.note(line)
            if self.pacing and self.session.backlog >= PAUSE_AT:
                await self.pace()
            if self.gone:
                return False
        return not self.gone

    def finish(self) -> None:
        """The end of the history: the last lines of a short tail, and the marker of a
        cap that cut it."""
        if self.shown is not None:
            for line in self.shown:
                self.send(line)
        if self.cut:
            self.session.send(truncated_message(self.ref, self.host, "bytes",
                                                self.limits.max_bytes, self.lines))
        elif self.plan.capped and self.lines >= self.limits.max_lines:
            self.session.send(truncated_message(self.ref, self.host, "lines",
                                                self.limits.max_lines, self.lines))

    def send(self, line: ContainerLogLine) -> bool:
        if self.cut:
            return False
        frame = log_frame(self.ref, line, self.host)
        if self.bytes + len(frame) > self.limits.max_bytes:
            self.cut = True
            return False
        self.bytes += len(frame)
        self.lines += 1
        self.session.send_frame(frame)
        return True

    async def pace(self) -> None:
        """Backpressure for a subscriber that reads: wait while its queue is half full;
        one that reads nothing for PAUSE_MAX_SECONDS is left to the queue's bound."""
        try:
            await asyncio.wait_for(self.session.wait_backlog_below(RESUME_BELOW),
                                   PAUSE_MAX_SECONDS)
        except TimeoutError:
            self.pacing = False
