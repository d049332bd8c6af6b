"""One engine events stream for the whole server, shared by every listener.

Opened when the first listener arrives, closed when the last leaves. When the engine
goes away the stream is re-opened with exponential backoff and resumed with `since`
at the last event's time; events already delivered are dropped by (timeNano, id,
Type, Action), so across a restart nothing is lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from openpanel_ws.engine.client import DockerEngine, EngineError, EngineUnavailable

log = logging.getLogger(__name__)

EngineEvent = dict[str, Any]
EventListener = Callable[[EngineEvent], None]
# (connected, detail): called once when the stream is lost and once when it is back.
StatusListener = Callable[[bool, str], None]

_SEEN_KEYS = 4096


def event_nanos(event: EngineEvent) -> int:
    nanos = event.get("timeNano")
    if isinstance(nanos, int):
        return nanos
    seconds = event.get("time")
    return int(seconds) * 1_000_000_000 if isinstance(seconds, int) else 0


def event_key(event: EngineEvent) -> tuple[Any, ...]:
    actor = event.get("Actor") or {}
    return (
        event_nanos(event),
        event.get("Type"),
        event.get("Action") or event.get("status"),
        actor.get("ID") if isinstance(actor, dict) else None,
        event.get("id"),
    )


class EventsHub:
    def __init__(
        self,
        engine: DockerEngine,
        *,
        backoff_initial: float = 0.25,
        backoff_max: float = 8.0,
    ) -> None:
        self._engine = engine
        self._listeners: list[EventListener] = []
        self._status_listeners: list[StatusListener] = []
        self._task: asyncio.Task[None] | None = None
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.last_nanos: int | None = None
        self._seen: deque[tuple[Any, ...]] = deque(maxlen=_SEEN_KEYS)
        self._seen_set: set[tuple[Any, ...]] = set()
        self.connected = False
        self.streams_opened = 0  # how many times the engine stream was opened (tests)
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

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until the stream is open (events after this moment will be seen)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    # --- lifecycle ------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="events-hub")

    def _stop_if_idle(self) -> None:
        if not self._listeners and self._task is not None:
            self._task.cancel()
            self._task = None
            self.connected = False
            self._ready.clear()

    async def close(self) -> None:
        self._listeners.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the stream -----------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._backoff_initial
        lost_reported = False
        while self._listeners:
            params: dict[str, Any] = {}
            if self.last_nanos is not None:
                seconds, nanos = divmod(self.last_nanos, 1_000_000_000)
                params["since"] = f"{seconds}.{nanos:09d}"
            try:
                async with self._engine.stream("/events", params) as resp:
                    self.streams_opened += 1
                    self.connected = True
                    self._ready.set()
                    delay = self._backoff_initial
                    if lost_reported:
                        lost_reported = False
                        self._notify_status(True, "Docker engine connection restored")
                    async for line in resp.content:
                        if line.strip():
                            self._handle_line(line)
                reason = "events stream ended"
            except (TimeoutError, EngineUnavailable, EngineError, aiohttp.ClientError,
                    ConnectionError) as exc:
                reason = str(exc) or type(exc).__name__
            self.connected = False
            self._ready.clear()
            if not lost_reported and self._listeners:
                lost_reported = True
                self._notify_status(False, f"Docker engine connection lost: {reason}")
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max)

    def _handle_line(self, line: bytes) -> None:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed engine event line")
            return
        if not isinstance(event, dict):
            return
        nanos = event_nanos(event)
        key = event_key(event)
        if self.last_nanos is not None and nanos < self.last_nanos:
            return  # replayed by `since` and already delivered
        if key in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(key)
        self._seen_set.add(key)
        self.last_nanos = max(nanos, self.last_nanos or 0)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("events listener failed")

    def _notify_status(self, connected: bool, detail: str) -> None:
        for listener in list(self._status_listeners):
            try:
                listener(connected, detail)
            except Exception:
                log.exception("events status listener failed")
