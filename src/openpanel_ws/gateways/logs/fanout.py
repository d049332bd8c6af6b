"""Fan-out to /ws/logs clients (sans-I/O): each live message encoded and framed once,
filtered per client, and a `since` replay joined to the live stream with nothing twice
(docs/logs.md "Resuming with `since`").

A client's filter, scopes and replay state live in its `Session.state` (`LogsState`),
made when it authenticates on /ws/logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from openpanel_ws import protocol
from openpanel_ws.auth import scopes_match
from openpanel_ws.engine.eventdata import EngineEvent, event_attributes, event_key, event_nanos
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.hold import Hold, cut_off
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.gateways.logs.messages import event_payloads
from openpanel_ws.outbound import text_frame
from openpanel_ws.protocol import Message
from openpanel_ws.sendqueue import QueueLimits

__all__ = ["MAX_EARLY_KEYS", "Fanout", "LogsState", "scope_allows"]


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
    """One /ws/logs client: its scopes, filter and replay bookkeeping."""

    __slots__ = ("early_keys", "filter", "held", "joined_nanos", "scopes")

    def __init__(self, joined_nanos: int, scopes: tuple[str, ...] | None = None) -> None:
        self.scopes = scopes  # the principal's `containers` globs; None: everything
        self.filter: EventFilter | None = None  # None: everything
        # Live events with a time before `joined_nanos` were in flight when the client
        # joined; a replay up to `joined_nanos` must not send them again.
        self.joined_nanos = joined_nanos
        self.early_keys: set[tuple[Any, ...]] = set()
        self.held: Hold[bytes] | None = None  # live frames held during a replay


class Fanout:
    """Authenticated logs clients and their filters; each live message encoded once.

    Each client's `LogsState` is its `Session.state`; this holds the sessions in order.
    `limits` bound the live frames held for a client during its replay (`Hold`): the
    server's send-queue bound."""

    __slots__ = ("_sessions", "limits")

    def __init__(self, limits: QueueLimits) -> None:
        self._sessions: dict[Session[LogsState], None] = {}  # insertion-ordered set
        self.limits = limits

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    def _state(self, session: Session[LogsState]) -> LogsState | None:
        return session.state if session in self._sessions else None

    def _clients(self) -> list[tuple[Session[LogsState], LogsState]]:
        return [(session, session.state) for session in self._sessions
                if session.state is not None]

    def add(self, session: Session[LogsState], now_nanos: int | None = None) -> None:
        if session not in self._sessions:
            principal = session.principal
            scopes = principal.container_scopes if principal is not None else None
            session.state = LogsState(time.time_ns() if now_nanos is None else now_nanos, scopes)
            self._sessions[session] = None

    def set_scopes(self, session: Session[LogsState], scopes: tuple[str, ...] | None) -> None:
        state = self._state(session)
        if state is not None:
            state.scopes = scopes

    def discard(self, session: Session[LogsState]) -> None:
        if session in self._sessions:
            del self._sessions[session]
            session.state = None

    def clear(self) -> None:
        for session in self._sessions:
            session.state = None
        self._sessions.clear()

    def set_filter(self, session: Session[LogsState], flt: EventFilter) -> None:
        state = self._state(session)
        if state is not None:
            state.filter = None if flt.empty else flt

    def publish_event(self, event: EngineEvent) -> None:
        """`docker_event` (+ its `docker` line) to every client whose filter matches; each
        frame is built once (docs/protocol.md, "Outbound path")."""
        frame, readable = framed(*event_payloads(event))
        nanos = event_nanos(event)
        for session, state in self._clients():
            if not scope_allows(state.scopes, event):
                continue
            if state.filter is not None and not state.filter.matches(event):
                continue
            if nanos < state.joined_nanos and len(state.early_keys) < MAX_EARLY_KEYS:
                state.early_keys.add(event_key(event))
            self._deliver(session, state, frame)
            if readable is not None:
                self._deliver(session, state, readable)

    def broadcast(self, message: Message, *, scoped: bool = True) -> None:
        """To every client; `scoped=False`: not to principals with a `containers` scope."""
        frame = text_frame(protocol.encode(message))
        for session, state in self._clients():
            if not scoped and state.scopes is not None:
                continue
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

    def finish_replay(self, session: Session[LogsState], events: Iterable[EngineEvent],
                      ack: Message | None = None) -> int:
        """Send `ack` (with `replayed`: the count), then the replayed events (filtered,
        without those already sent live), then the live frames held meanwhile."""
        state = self._state(session)
        if state is None:
            return 0
        held, state.held = state.held.release() if state.held is not None else [], None
        frames: list[bytes] = []
        count = 0
        for event in events:
            if not scope_allows(state.scopes, event):
                continue
            if state.filter is not None and not state.filter.matches(event):
                continue
            if event_key(event) in state.early_keys:
                continue
            frame, readable = framed(*event_payloads(event))
            frames.append(frame)
            if readable is not None:
                frames.append(readable)
            count += 1
        if ack is not None:
            session.send({**ack, "replayed": count})
        for frame in frames + held:
            session.send_frame(frame)
        return count


