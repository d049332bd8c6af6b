"""`/ws/logs`: every Docker event as `docker_event`, readable `system_log` lines, and
`host_status` when a host changes state.

Each host has one engine events stream (its `Host.events` hub), shared by every client
that hears from that host: the gateway listens to a host's hub while at least one client
hears from it, so the hub is open only then, and each hub resumes on its own after its
engine comes back. Each event is encoded once and the same bytes go to every client that
hears from its host and whose scopes and filter match (`fanout`). `/ws/logs` hears from
every host the principal may see, `/hosts/{id}/ws/logs` from that host only (`audience`).

`system_log` sources: `docker` (a readable line for notable events, `event_text`),
`gateway` (a host's engine connection lost / restored, naming the host) and each
configured log file of the machine.

Additive: `subscribe` {filters, since}. `filters` narrows one client's `docker_event`s
(and the `docker` lines derived from them) with the engine's own filter semantics;
`since` replays what each host's engine still holds from that time up to when the
client joined, merged by time, before its live events, with nothing twice (a client cut
off as a slow consumer resumes this way). See docs/logs.md.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Any, Final

from openpanel_ws import protocol
from openpanel_ws.engine.client import EngineError
from openpanel_ws.engine.eventdata import EngineEvent, event_nanos
from openpanel_ws.engine.events import EventListener, StatusListener
from openpanel_ws.engine.streams import JsonLines, pump, time_param
from openpanel_ws.gateways.access import resolve_host
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.logs.audience import Audience, audience_of
from openpanel_ws.gateways.logs.fanout import Fanout, HostEvent, LogsState
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.gateways.logs.messages import SOURCE_GATEWAY, system_log
from openpanel_ws.hosts.registry import Host
from openpanel_ws.hosts.status import HostState, HostStatus
from openpanel_ws.machine.logfiles import MachineLogTailer, guess_level
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError
from openpanel_ws.sendqueue import QueueLimits

__all__ = ["MAX_REPLAY_EVENTS", "REPLAY_TIMEOUT", "LogsGateway"]

log = logging.getLogger(__name__)

# The engine holds at most 256 events; a replay never needs more than this (per host).
MAX_REPLAY_EVENTS: Final = 4096
REPLAY_TIMEOUT: Final = 15.0


class LogsGateway(Gateway[LogsState]):
    name = "logs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients = Fanout(QueueLimits(self.settings.send_queue_max,
                                          self.settings.send_queue_max_bytes))
        # The hosts whose hub this gateway listens to, with the listeners it gave them.
        self._listening: dict[str, tuple[EventListener, StatusListener]] = {}
        self._engine_down: dict[str, str] = {}  # host id -> detail while its engine is away
        self._host_logs: MachineLogTailer | None = None
        self._watching = False

    def handlers(self) -> dict[str, Handler[LogsState]]:
        return {"subscribe": self._subscribe}

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._watch_hosts()

    def _watch_hosts(self) -> None:
        if not self._watching:
            self._watching = True
            self.services.hosts.add_status_listener(self._on_host_status)

    def _audience(self, session: Session[LogsState]) -> Audience:
        return audience_of(self.services.hosts, session.user, session.host)

    async def on_authenticated(self, session: Session[LogsState]) -> None:
        # No await before the client is registered and the hubs it needs are listened
        # to: the `authenticated` frame is queued but not yet sent, so every event after
        # the client sees it is delivered.
        self._watch_hosts()  # a gateway used without start() (unit tests)
        audience = self._audience(session)
        self.clients.add(session, audience)
        self._follow()
        self._tell_state(session, audience.hosts)
        await self._stop_machine_logs_if_unheard()

    def _tell_state(self, session: Session[LogsState], host_ids: frozenset[str]) -> None:
        """`host_status` of each of these hosts that is not up, and the `lost` line of
        each whose engine stream is away (docs/protocol.md "The `host` field")."""
        for host in self.services.hosts:
            if host.id not in host_ids:
                continue
            if not host.up:
                session.send(host.status.message())
            detail = self._engine_down.get(host.id)
            if detail is not None:
                session.send(system_log(protocol.rfc3339(), "error", detail, SOURCE_GATEWAY,
                                        host.id))

    async def on_principal_changed(self, session: Session[LogsState]) -> None:
        state = session.state
        if state is None:
            return
        before = state.audience.hosts
        audience = self._audience(session)
        # A host the new claims no longer allow: its events stop here for this client.
        self.clients.set_scopes(session, session.user.container_scopes, audience)
        self._follow()
        self._tell_state(session, audience.hosts - before)
        await self._stop_machine_logs_if_unheard()

    async def on_disconnect(self, session: Session[LogsState]) -> None:
        self.clients.discard(session)
        self._follow()
        await self._stop_machine_logs_if_unheard()

    async def stop(self) -> None:
        if self._watching:
            self._watching = False
            self.services.hosts.remove_status_listener(self._on_host_status)
        self.clients.clear()
        self._follow()
        await self._stop_machine_logs_if_unheard()

    def _follow(self) -> None:
        """Listen to the hub of every enabled host some client hears from, and to no
        other; tail the machine's log files while some client gets them."""
        heard = self.clients.hosts_heard()
        for host in self.services.hosts:
            wanted = host.id in heard and not host.monitor.disabled
            if wanted and host.id not in self._listening:
                self._listen(host)
            elif not wanted and host.id in self._listening:
                self._unlisten(host)
        if self._host_logs is None and self.settings.host_log_files and self.clients.machine_heard():
            self._host_logs = MachineLogTailer(self.settings.host_log_files, self._on_machine_line)
            # Synchronous first poll: each file's end is pinned before the client acts.
            self._host_logs.start_now()

    async def _stop_machine_logs_if_unheard(self) -> None:
        if self._host_logs is not None and not self.clients.machine_heard():
            tailer, self._host_logs = self._host_logs, None
            await tailer.stop()

    def _listen(self, host: Host) -> None:
        host_id = host.id

        def on_event(event: EngineEvent) -> None:
            self.clients.publish_event(host_id, event)

        def on_status(connected: bool, detail: str) -> None:
            self._on_stream_status(host_id, connected, detail)

        self._listening[host_id] = (on_event, on_status)
        host.events.add_status_listener(on_status)
        host.events.add_listener(on_event)

    def _unlisten(self, host: Host) -> None:
        on_event, on_status = self._listening.pop(host.id)
        self._engine_down.pop(host.id, None)
        host.events.remove_status_listener(on_status)
        # Closes the host's engine stream unless another gateway still listens.
        host.events.remove_listener(on_event)

    # --- messages -------------------------------------------------------------------

    async def _subscribe(self, session: Session[LogsState], message: Message) -> None:
        if session.host is not None:
            # The route's host: unknown or out of scope refuses every request.
            resolve_host(self.services.hosts, session, message)
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
        try:
            events = await self._replay(session, since, until)
        except BaseException:
            self.clients.finish_replay(session, [])
            raise
        self.clients.finish_replay(session, events, ack)

    async def _replay(self, session: Session[LogsState], since: int,
                      until: int) -> list[HostEvent]:
        """Every heard host's buffered events in [since, until), merged by time. A host
        that cannot answer gets its own DOCKER_UNAVAILABLE naming it; when none of them
        can, that error is raised (and no acknowledgement follows)."""
        state = session.state
        heard = state.audience.hosts if state is not None else frozenset()
        hosts = [h for h in self.services.hosts if h.id in heard and not h.monitor.disabled]
        if since >= until or not hosts:
            return []
        answers = await asyncio.gather(*(self._host_replay(h, since, until - 1) for h in hosts))
        failed = [error for _, error in answers if error is not None]
        if len(failed) == len(answers):
            raise failed[0] if len(failed) == 1 else ProtocolError(
                ErrorCode.DOCKER_UNAVAILABLE, "Cannot replay events: Docker engine unavailable")
        for error in failed:
            session.send(error.to_message())
        # Each engine's own order is kept; the hosts' lists are merged by event time.
        return list(heapq.merge(*(events for events, _ in answers),
                                key=lambda item: event_nanos(item[1])))

    async def _host_replay(self, host: Host, since: int,
                           until: int) -> tuple[list[HostEvent], ProtocolError | None]:
        status = host.status
        if status.state is HostState.DOWN:
            detail = status.error or "down"  # known down: no engine timeout to wait out
        else:
            try:
                return [(host.id, e) for e in await self._fetch_events(host, since, until)], None
            except (TimeoutError, EngineError) as exc:
                detail = str(exc) or type(exc).__name__
        return [], ProtocolError(
            ErrorCode.DOCKER_UNAVAILABLE,
            f"Cannot replay events: Docker engine unavailable ({detail})", context={"host": host.id})

    async def _fetch_events(self, host: Host, since: int, until: int) -> list[EngineEvent]:
        """The engine's buffered events in [since, until]; `until` is past, so it ends."""
        params = {"since": time_param(since), "until": time_param(until)}
        out: list[EngineEvent] = []

        def keep(events: list[EngineEvent]) -> bool:
            out.extend(events[:MAX_REPLAY_EVENTS - len(out)])
            return len(out) >= MAX_REPLAY_EVENTS  # the cap is reached: stop reading

        async with asyncio.timeout(REPLAY_TIMEOUT):
            await pump(host.engine.stream_chunks("/events", params), JsonLines(), keep)
        return out

    # --- upstream callbacks (run on the loop; never await) ------------------------

    def _on_stream_status(self, host_id: str, connected: bool, detail: str) -> None:
        if connected:
            self._engine_down.pop(host_id, None)
        else:
            self._engine_down[host_id] = detail
        level = "info" if connected else "error"
        self.clients.broadcast(system_log(protocol.rfc3339(), level, detail, SOURCE_GATEWAY,
                                          host_id), host=host_id)

    def _on_host_status(self, status: HostStatus) -> None:
        self.clients.broadcast(status.message(), host=status.host)

    def _on_machine_line(self, source: str, line: str) -> None:
        # Machine log files are about the whole machine: never for a scoped principal.
        self.clients.broadcast_machine(
            system_log(protocol.rfc3339(), guess_level(line), line, source))
