"""One engine events stream per Docker host, shared by every listener of that host.

Opened when the first listener arrives, closed when the last leaves. The first open
asks for `since` = the moment the first listener arrived, so an event that happens
while the HTTP request is still in flight is replayed by the engine, not missed.

When the engine goes away the stream is re-opened with exponential backoff and resumed
with `since` a little before the last event's time. The engine replays what it still
holds (its in-memory buffer, 256 events in Engine 20.10, which a restarted dockerd
starts empty); events already delivered are dropped by (timeNano, Type, Action,
Actor.ID, id), so across a reconnect nothing is delivered twice.

Why a margin and no "older than the last event" rule: dockerd stamps an event's time
before taking the lock that appends it to the stream, so two concurrent events can
arrive out of time order. Dropping "older" events would lose the second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from openpanel_ws.backoff import Backoff
from openpanel_ws.engine.client import DockerEngine, EngineError
from openpanel_ws.engine.eventdata import Deduper, EngineEvent, event_key, event_nanos
from openpanel_ws.engine.streams import LineSplitter, pump, time_param

__all__ = [
    "LOST",
    "RESUME_MARGIN_NS",
    "EventListener",
    "EventsHub",
    "OpenListener",
    "StatusListener",
]

log = logging.getLogger(__name__)

EventListener = Callable[[EngineEvent], None]
# (connected, detail): called once when the stream is lost and once when it is back.
StatusListener = Callable[[bool, str], None]
# The start of the detail of a lost stream; the reason follows.
LOST = "Docker engine connection lost: "
# Called each time the stream is opened (the engine answered), lost before or not.
OpenListener = Callable[[], None]

# How far before the last delivered event a resumed stream starts (see module doc).
RESUME_MARGIN_NS = 2_000_000_000


class EventsHub:
    def __init__(
        self,
        engine: DockerEngine,
        *,
        backoff_initial: float = 0.25,
        backoff_max: float = 5.0,
    ) -> None:
        self._engine = engine
        self._listeners: list[EventListener] = []
        self._status_listeners: list[StatusListener] = []
        self._open_listeners: list[OpenListener] = []
        self._task: asyncio.Task[None] | None = None
        # Public so tests and operators can tune reconnection without a new instance.
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.last_nanos: int | None = None
        self._start_nanos = 0
        self._dedupe = Deduper()
        self.connected = False
        self.streams_opened = 0  # how many times the engine stream was opened (tests)
        self.duplicates_dropped = 0  # replayed events dropped by the dedupe (tests)
        self._ready = asyncio.Event()

    # --- listeners ------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)
        self._ensure_running()

    def remove_listener(self, listener: EventListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        self._stop_if_idle()

    def add_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners.append(listener)

    def remove_status_listener(self, listener: StatusListener) -> None:
        with contextlib.suppress(ValueError):
            self._status_listeners.remove(listener)

    def add_open_listener(self, listener: OpenListener) -> None:
        self._open_listeners.append(listener)

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until the stream is open (events after this moment will be seen)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    # --- lifecycle ------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            # A fresh stream starts now: a listener gets what happens after it arrived,
            # not the engine's backlog from when nobody was listening.
            self._start_nanos = time.time_ns()
            self.last_nanos = None
            self._dedupe.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="events-hub")

    def _stop_if_idle(self) -> None:
        if not self._listeners and self._task is not None:
            self._task.cancel()  # leaving `stream()` on cancel closes the engine response
            self._task = None
            self.connected = False
            self._ready.clear()

    async def close(self) -> None:
        self._listeners.clear()
        task, self._task = self._task, None
        self.connected = False
        self._ready.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the stream -----------------------------------------------------------------

    def resume_since(self) -> int:
        """Where the next open starts: a margin before the last event, never earlier
        than the moment this stream was first wanted."""
        if self.last_nanos is None:
            return self._start_nanos
        return max(self._start_nanos, self.last_nanos - RESUME_MARGIN_NS)

    async def _run(self) -> None:
        # Jittered: gateways that lost one engine together do not retry in step.
        backoff = Backoff(self.backoff_initial, self.backoff_max, jitter=0.5)
        lost_reported = False
        while self._listeners:
            params = {"since": time_param(self.resume_since())}

            def opened() -> None:
                nonlocal lost_reported
                self.streams_opened += 1
                self.connected = True
                self._ready.set()
                backoff.reset()
                self._notify_open()
                if lost_reported:
                    lost_reported = False
                    self._notify_status(True, "Docker engine connection restored")

            try:
                await pump(self._engine.stream_chunks("/events", params, on_open=opened),
                           LineSplitter(), self._handle_lines)
                reason = "events stream ended"
            except EngineError as exc:
                reason = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must not end the stream for good: retry
                log.exception("events stream failed")
                reason = type(exc).__name__
            self.connected = False
            self._ready.clear()
            if not lost_reported and self._listeners:
                lost_reported = True
                self._notify_status(False, LOST + reason)
            delay = backoff.next_delay()
            assert delay is not None, "an unbounded backoff always has a next delay"
            await asyncio.sleep(delay)

    def _handle_lines(self, lines: list[bytes]) -> None:
        for line in lines:
            if line.strip():
                self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        """One JSON line from the engine: dedupe, then hand to every listener."""
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed engine event line")
            return
        if not isinstance(event, dict):
            return
        if not self._dedupe.first_time(event_key(event)):
            self.duplicates_dropped += 1
            return
        nanos = event_nanos(event)
        self.last_nanos = max(nanos, self.last_nanos or 0)
        # No replay starts before the resume point: older keys are never needed again.
        self._dedupe.forget_before(self.last_nanos - RESUME_MARGIN_NS)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("events listener failed")

    def _notify_open(self) -> None:
        for listener in list(self._open_listeners):
            try:
                listener()
            except Exception:
                log.exception("events open listener failed")

    def _notify_status(self, connected: bool, detail: str) -> None:
        for listener in list(self._status_listeners):
            try:
                listener(connected, detail)
            except Exception:
                log.exception("events status listener failed")
