"""`/ws/logs`: every Docker event as `docker_event`, readable `system_log` lines.

One engine events stream for the whole server (the shared `EventsHub`), attached when
the first logs client authenticates and detached when the last one leaves. Each event
is encoded once and the same bytes go to every client whose filter matches (`fanout`).

`system_log` sources: `docker` (a readable line for notable events, `event_text`),
`gateway` (engine connection lost / restored) and each configured host log file.

Additive: `subscribe` {filters, since}. `filters` narrows one client's `docker_event`s
(and the `docker` lines derived from them) with the engine's own filter semantics;
`since` replays what the engine still holds from that time up to when the client
joined, before its live events, with nothing twice (a client cut off as a slow
consumer resumes this way). See docs/logs.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from openpanel_ws import protocol
from openpanel_ws.engine.client import EngineError
from openpanel_ws.engine.eventdata import EngineEvent
from openpanel_ws.engine.streams import JsonLines, pump, time_param
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.logs.fanout import Fanout, LogsState
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.gateways.logs.messages import SOURCE_GATEWAY, system_log
from openpanel_ws.machine.logfiles import MachineLogTailer, guess_level
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError
from openpanel_ws.sendqueue import QueueLimits

__all__ = ["MAX_REPLAY_EVENTS", "REPLAY_TIMEOUT", "LogsGateway"]

log = logging.getLogger(__name__)

# The engine holds at most 256 events; a replay never needs more than this.
MAX_REPLAY_EVENTS: Final = 4096
REPLAY_TIMEOUT: Final = 15.0


class LogsGateway(Gateway[LogsState]):
    name = "logs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients = Fanout(QueueLimits(self.settings.send_queue_max,
                                          self.settings.send_queue_max_bytes))
        self._attached = False
        self._engine_down: str | None = None  # detail while the engine is unreachable
        self._host_logs: MachineLogTailer | None = None

    def handlers(self) -> dict[str, Handler[LogsState]]:
        return {"subscribe": self._subscribe}

    # --- lifecycle ------------------------------------------------------------------

    async def on_authenticated(self, session: Session[LogsState]) -> None:
        # No await before the client is registered: the `authenticated` frame is queued
        # but not yet sent, so every event after the client sees it is delivered.
        self.clients.add(session)
        if not self._attached:
            self._attach()
        if self._engine_down is not None:
            session.send(system_log(protocol.rfc3339(), "error", self._engine_down, SOURCE_GATEWAY))

    async def on_principal_changed(self, session: Session[LogsState]) -> None:
        self.clients.set_scopes(session, session.user.container_scopes)

    async def on_disconnect(self, session: Session[LogsState]) -> None:
        self.clients.discard(session)
        if not len(self.clients):
            await self._detach()

    async def stop(self) -> None:
        self.clients.clear()
        await self._detach()

    def _attach(self) -> None:
        self._attached = True
        events = self.services.events
        events.add_status_listener(self._on_status)
        events.add_listener(self.clients.publish_event)
        if self.settings.host_log_files:
            self._host_logs = MachineLogTailer(self.settings.host_log_files, self._on_host_line)
            # Synchronous first poll: each file's end is pinned before the client acts.
            self._host_logs.start_now()

    async def _detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        self._engine_down = None
        events = self.services.events
        events.remove_status_listener(self._on_status)
        # Closes the engine stream unless another gateway still listens.
        events.remove_listener(self.clients.publish_event)
        tailer, self._host_logs = self._host_logs, None
        if tailer is not None:
            await tailer.stop()

    # --- messages -------------------------------------------------------------------

    async def _subscribe(self, session: Session[LogsState], message: Message) -> None:
        # Validate everything before changing anything.
        flt = EventFilter.parse(message.get("filters"))
        since = protocol.optional_since(message)
        ack: Message = {"type": "subscribed", "filters": flt.to_json()}
        if since is None:
            self.clients.set_filter(session, flt)
            session.send(ack)
            return
        # The last check that can refuse: the filter is set only after it passed.
        until = self.clients.begin_replay(session)
        if until is None:
            raise protocol.invalid("A replay is already in progress", "since")
        self.clients.set_filter(session, flt)
        ack["since"] = message["since"]
        events: list[EngineEvent] = []
        try:
            if since < until:
                events = await self._fetch_events(since, until - 1)
        except (TimeoutError, EngineError) as exc:
            self.clients.finish_replay(session, [])
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE,
                                f"Cannot replay events: Docker engine unavailable ({exc})") from None
        except BaseException:
            self.clients.finish_replay(session, [])
            raise
        self.clients.finish_replay(session, events, ack)

    async def _fetch_events(self, since: int, until: int) -> list[EngineEvent]:
        """The engine's buffered events in [since, until]; `until` is past, so it ends."""
        params = {"since": time_param(since), "until": time_param(until)}
        out: list[EngineEvent] = []

        def keep(events: list[EngineEvent]) -> bool:
            out.extend(events[:MAX_REPLAY_EVENTS - len(out)])
            return len(out) >= MAX_REPLAY_EVENTS  # the cap is reached: stop reading

        async with asyncio.timeout(REPLAY_TIMEOUT):
            await pump(self.services.engine.stream_chunks("/events", params), JsonLines(), keep)
        return out

    # --- upstream callbacks (run on the loop; never await) ------------------------

    def _on_status(self, connected: bool, detail: str) -> None:
        self._engine_down = None if connected else detail
        level = "info" if connected else "error"
        self.clients.broadcast(system_log(protocol.rfc3339(), level, detail, SOURCE_GATEWAY))

    def _on_host_line(self, source: str, line: str) -> None:
        # Host log files are about the whole host: never for a scoped principal.
        self.clients.broadcast(system_log(protocol.rfc3339(), guess_level(line), line, source),
                               scoped=False)
