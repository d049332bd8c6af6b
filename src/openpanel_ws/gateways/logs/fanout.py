"""Fan-out to /ws/logs clients (sans-I/O): each live message encoded and framed once,
filtered per client, and a `since` replay joined to the live stream with nothing twice
(docs/logs.md "Resuming with `since`").

Every event comes from one host and its frames name that host, so the same bytes serve
every client that hears from it (its `Audience`), on the plain endpoint and on the host's
own route alike. A client's audience, filter, scopes and replay state live in its
`Session.state` (`LogsState`), made when it authenticates on /ws/logs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from openpanel_ws import protocol
from openpanel_ws.auth import scopes_match
from openpanel_ws.engine.eventdata import EngineEvent, event_attributes, event_key, event_nanos
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.hold import Hold, cut_off
from openpanel_ws.gateways.logs.audience import Audience
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.gateways.logs.messages import event_payloads
from openpanel_ws.outbound import text_frame
from openpanel_ws.protocol import Message
from openpanel_ws.sendqueue import QueueLimits

__all__ = ["MAX_EARLY_KEYS", "Fanout", "HostEvent", "LogsState", "scope_allows"]

# An engine event and the id of the host it came from.
HostEvent = tuple[str, EngineEvent]


def framed(payload: bytes, readable: bytes | None) -> tuple[bytes, bytes | None]:
    """An event's two payloads (`event_payloads`) as frames."""
    return text_frame(payload), None if readable is None else text_frame(readable)


# Keys of live events stamped before a client joined, kept to dedupe its replay.
MAX_EARLY_KEYS: Final = 1024


def scope_allows(scopes: tuple[str, ...] | None, event: Mapping[str, Any]) -> bool:
    """A principal's `containers` scope over engine events (docs/protocol.md "Container
    scopes"): unscoped sees everything; scoped sees only container events of containers its globs match by
    name (the rule of /ws/containers), and no image/network/volume/daemon events."""
    if scopes is None:
        return True
    if event.get("Type") != "container":
        return False
    name = event_attributes(event).get("name")
    if not isinstance(name, str) or not name:
        return False
    return scopes_match(scopes, (name,))


class LogsState:
    """One /ws/logs client: its audience, scopes, filter and replay bookkeeping."""

    __slots__ = ("audience", "early_keys", "filter", "held", "joined_nanos", "scopes")

    def __init__(self, joined_nanos: int, audience: Audience,
                 scopes: tuple[str, ...] | None = None) -> None:
        self.scopes = scopes  # the principal's `containers` globs; None: everything
        self.audience = audience  # the hosts it hears from; whether machine lines reach it
        self.filter: EventFilter | None = None  # None: everything
        # Live events with a time before `joined_nanos` were in flight when the client
        # joined; a replay up to `joined_nanos` must not send them again. Keyed by
        # (host id, *event_key): one engine behind two host ids sends each event twice.
        self.joined_nanos = joined_nanos
        self.early_keys: set[tuple[Any, ...]] = set()
        self.held: Hold[bytes] | None = None  # live frames held during a replay


class Fanout:
    """Authenticated logs clients and their filters; each live message encoded once.

    Each client's `LogsState` is its `Session.state`; this holds the sessions in order.
    `limits` bound the live frames held for a client during its replay (`Hold`): the
    server's send-queue bound."""

    __slots__ = ("_heard", "_machine", "_sessions", "limits")

    def __init__(self, limits: QueueLimits) -> None:
        self._sessions: dict[Session[LogsState], None] = {}  # insertion-ordered set
        self.limits = limits
        # How many clients hear from each host / get the machine's lines: kept as
        # clients come and go, so a connect storm costs no pass over every client.
        self._heard: Counter[str] = Counter()
        self._machine = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    def _state(self, session: Session[LogsState]) -> LogsState | None:
        return session.state if session in self._sessions else None

    def _clients(self) -> list[tuple[Session[LogsState], LogsState]]:
        return [(session, session.state) for session in self._sessions
                if session.state is not None]

    def add(self, session: Session[LogsState], audience: Audience,
            now_nanos: int | None = None) -> None:
        if session not in self._sessions:
            principal = session.principal
            scopes = principal.container_scopes if principal is not None else None
            session.state = LogsState(time.time_ns() if now_nanos is None else now_nanos,
                                      audience, scopes)
            self._sessions[session] = None
            self._count(audience, 1)

    def _count(self, audience: Audience, step: int) -> None:
        for host in audience.hosts:
            self._heard[host] += step
            if not self._heard[host]:
                del self._heard[host]
        self._machine += step if audience.machine else 0

    def set_scopes(self, session: Session[LogsState], scopes: tuple[str, ...] | None,
                   audience: Audience | None = None) -> None:
        """A re-auth's claims; from here on only they decide what reaches the client."""
        state = self._state(session)
        if state is not None:
            state.scopes = scopes
            if audience is not None:
                self._count(state.audience, -1)
                state.audience = audience
                self._count(audience, 1)

    def hosts_heard(self) -> set[str]:
        """The ids of the hosts some client hears from (their streams are wanted)."""
        return set(self._heard)

    def machine_heard(self) -> bool:
        """Whether some client gets the machine's log file lines."""
        return self._machine > 0

    def discard(self, session: Session[LogsState]) -> None:
        if session in self._sessions:
            del self._sessions[session]
            if session.state is not None:
                self._count(session.state.audience, -1)
            session.state = None

    def clear(self) -> None:
        for session in self._sessions:
            session.state = None
        self._sessions.clear()
        self._heard.clear()
        self._machine = 0

    def set_filter(self, session: Session[LogsState], flt: EventFilter) -> None:
        state = self._state(session)
        if state is not None:
            state.filter = None if flt.empty else flt

    def publish_event(self, host: str, event: EngineEvent) -> None:
        """`docker_event` (+ its `docker` line) of `host` to every client that hears from
        it and whose scopes and filter match; each frame is built once (docs/protocol.md,
        "Outbound path")."""
        frame, readable = framed(*event_payloads(event, host))
        nanos = event_nanos(event)
        key: tuple[Any, ...] | None = None
        for session, state in self._clients():
            if host not in state.audience.hosts:
                continue
            if not scope_allows(state.scopes, event):
                continue
            if state.filter is not None and not state.filter.matches(event):
                continue
            if nanos < state.joined_nanos and len(state.early_keys) < MAX_EARLY_KEYS:
                key = key or (host, *event_key(event))
                state.early_keys.add(key)
            self._deliver(session, state, frame)
            if readable is not None:
                self._deliver(session, state, readable)

    def broadcast(self, message: Message, *, host: str | None = None) -> None:
        """To every client that hears from `host` (None: to every client)."""
        frame = text_frame(protocol.encode(message))
        for session, state in self._clients():
            if host is not None and host not in state.audience.hosts:
                continue
            self._deliver(session, state, frame)

    def broadcast_machine(self, message: Message) -> None:
        """A machine log file line: to the clients whose audience has the machine."""
        frame = text_frame(protocol.encode(message))
        for session, state in self._clients():
            if state.audience.machine:
                self._deliver(session, state, frame)

    def _deliver(self, session: Session[LogsState], state: LogsState, frame: bytes) -> None:
        if state.held is None:
            session.send_frame(frame)
        elif state.held.push(frame, len(frame)) is not None:  # past the bound: dropped
            cut_off(session)

    # --- `since` replay: events from before the client joined ------------------------

    def begin_replay(self, session: Session[LogsState]) -> int | None:
        """Hold the client's live frames; returns the replay's `until` (its join time),
        or None when the client is unknown or a replay is already running."""
        state = self._state(session)
        if state is None or state.held is not None:
            return None
        state.held = Hold(self.limits)
        return state.joined_nanos

    def finish_replay(self, session: Session[LogsState], events: Iterable[HostEvent],
                      ack: Message | None = None) -> int:
        """Send `ack` (with `replayed`: the count), then the replayed events (in the order
        given, filtered, without those already sent live), then the live frames held
        meanwhile."""
        state = self._state(session)
        if state is None:
            return 0
        held, state.held = state.held.release() if state.held is not None else [], None
        frames: list[bytes] = []
        count = 0
        for host, event in events:
            if not scope_allows(state.scopes, event):
                continue
            if state.filter is not None and not state.filter.matches(event):
                continue
            if (host, *event_key(event)) in state.early_keys:
                continue
            frame, readable = framed(*event_payloads(event, host))
            frames.append(frame)
            if readable is not None:
                frames.append(readable)
            count += 1
        if ack is not None:
            session.send({**ack, "replayed": count})
        for frame in frames + held:
            session.send_frame(frame)
        return count


