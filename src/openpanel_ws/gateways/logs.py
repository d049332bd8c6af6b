"""`/ws/logs`: every Docker event as `docker_event`, readable `system_log` lines.

One engine events stream for the whole server (the shared `EventsHub`), attached when
the first logs client authenticates and detached when the last one leaves. Each event
is encoded once and the same bytes go to every client whose filter matches.

`system_log` sources: `docker` (a readable line for notable events, see event_text),
`gateway` (engine connection lost / restored) and each configured host log file.

Additive: `subscribe` {filters, since}. `filters` narrows one client's `docker_event`s
(and the `docker` lines derived from them) with the engine's own filter semantics;
`since` replays what the engine still holds from that time up to when the client
joined, before its live events, with nothing twice (a client cut off as a slow
consumer resumes this way). See docs/logs.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aiohttp
import orjson

from openpanel_ws import protocol
from openpanel_ws.auth import Principal
from openpanel_ws.engine.client import EngineError, EngineUnavailable
from openpanel_ws.engine.events import EngineEvent, LineSplitter, event_key, event_nanos, since_param
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.event_text import describe
from openpanel_ws.host.logfiles import HostLogTailer, guess_level
from openpanel_ws.outbound import text_frame
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError
from openpanel_ws.sendqueue import QueueLimits, SendQueue

log = logging.getLogger(__name__)

SOURCE_DOCKER: Final = "docker"
SOURCE_GATEWAY: Final = "gateway"


def system_log(timestamp: str, level: str, message: str, source: str) -> Message:
    return {"type": "system_log", "timestamp": timestamp, "level": level,
            "message": message, "source": source}


def docker_event(event: EngineEvent) -> Message:
    nanos = event_nanos(event)
    stamp = protocol.rfc3339_from_nanos(nanos) if nanos > 0 else protocol.rfc3339()
    return {"type": "docker_event", "timestamp": stamp, "event": event}


# --- filters (sans-I/O) -------------------------------------------------------------

FILTER_KEYS: Final = ("type", "event", "container", "image", "label", "network", "volume", "scope")
MAX_FILTER_VALUES: Final = 64
MAX_FILTER_VALUE_LEN: Final = 256
# The engine matches these `event` values by prefix (`health_status` matches
# `health_status: unhealthy`) as soon as one of them is in the filter.
_FUZZY_EVENTS: Final = frozenset({"health_status", "exec_create", "exec_start"})


def _strip_tag(image: str) -> str:
    """`repo:tag` / `repo@digest` -> `repo` (the engine's FamiliarName, for matching)."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


class EventFilter:
    """Engine-style event filters: OR within a key, AND across keys; `label` values
    all must match (`key` or `key=value`). Semantics of dockerd's daemon/events/filter.go."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, frozenset[str]]) -> None:
        self._fields = {k: v for k, v in fields.items() if v}

    @classmethod
    def parse(cls, raw: Any) -> EventFilter:
        """From a client's `filters`; raises INVALID_MESSAGE naming the bad field."""
        if raw is None:
            return cls({})
        if not isinstance(raw, dict):
            raise protocol.invalid("Field 'filters' must be an object", "filters")
        fields: dict[str, frozenset[str]] = {}
        for key, value in raw.items():
            where = f"filters.{key}"
            if key not in FILTER_KEYS:
                raise protocol.invalid(
                    f"Unknown filter '{key}' (allowed: {', '.join(FILTER_KEYS)})", where)
            fields[key] = frozenset(_filter_values(value, where))
        return cls(fields)

    @property
    def empty(self) -> bool:
        return not self._fields

    def to_json(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self._fields.items()}

    def matches(self, event: Mapping[str, Any]) -> bool:
        f = self._fields
        if not f:
            return True
        actor = event.get("Actor")
        actor_id = ""
        attrs: Mapping[str, Any] = {}
        if isinstance(actor, Mapping):
            ident = actor.get("ID")
            actor_id = ident if isinstance(ident, str) else ""
            if isinstance(actor.get("Attributes"), Mapping):
                attrs = actor["Attributes"]
        action = event.get("Action") or event.get("status") or ""
        if "event" in f:
            wanted = f["event"]
            if wanted & _FUZZY_EVENTS:
                if not _fuzzy(wanted, str(action)):
                    return False
            elif action not in wanted:
                return False
        if "type" in f and event.get("Type") not in f["type"]:
            return False
        if "scope" in f and event.get("scope") not in f["scope"]:
            return False
        name = attrs.get("name")
        name = name if isinstance(name, str) else ""
        for key in ("container", "network", "volume"):
            if key in f and not (_fuzzy(f[key], actor_id) or _fuzzy(f[key], name)):
                return False
        if "image" in f:
            image = attrs.get("name" if event.get("Type") == "image" else "image")
            image = image if isinstance(image, str) else ""
            candidates = {actor_id, image, _strip_tag(actor_id), _strip_tag(image)} - {""}
            if not candidates & f["image"]:
                return False
        if "label" in f:
            if not attrs:
                return False
            for item in f["label"]:
                label, sep, value = item.partition("=")
                if label not in attrs or (sep and attrs[label] != value):
                    return False
        return True


def _fuzzy(wanted: Iterable[str], source: str) -> bool:
    return bool(source) and any(source == w or source.startswith(w) for w in wanted)


def _filter_values(value: Any, where: str) -> list[str]:
    # Engine shapes: ["a", "b"] (and the legacy {"a": true}); a bare string is one value.
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        items = [k for k, v in value.items() if v is True]
    else:
        raise protocol.invalid(f"Filter '{where}' must be a list of strings", where)
    if len(items) > MAX_FILTER_VALUES:
        raise protocol.invalid(f"Filter '{where}' has more than {MAX_FILTER_VALUES} values", where)
    for item in items:
        if not isinstance(item, str) or not item:
            raise protocol.invalid(f"Filter '{where}' must be a list of non-empty strings", where)
        if len(item) > MAX_FILTER_VALUE_LEN:
            raise protocol.invalid(
                f"Filter '{where}' values are limited to {MAX_FILTER_VALUE_LEN} characters", where)
    return items


# --- fan-out (sans-I/O) -------------------------------------------------------------


def event_frames(event: EngineEvent) -> tuple[bytes, bytes | None]:
    """The encoded `docker_event` and, for a notable event, its `docker` system_log."""
    message = docker_event(event)
    line = describe(event)
    readable = None
    if line is not None:
        readable = protocol.encode(
            system_log(message["timestamp"], line.level, line.message, SOURCE_DOCKER))
    return protocol.encode(message), readable


def framed(frame: bytes, readable: bytes | None) -> tuple[bytes, bytes | None]:
    return text_frame(frame), None if readable is None else text_frame(readable)


# Live frames held for one client while its `since` replay is fetched; past this the
# client is a slow consumer (the same rule as the outbound queue).
MAX_HELD_FRAMES: Final = 10_000
HELD_LIMITS: Final = QueueLimits(MAX_HELD_FRAMES, 16 * 1024 * 1024)
# The engine holds at most 256 events; a replay never needs more than this.
MAX_REPLAY_EVENTS: Final = 4096
REPLAY_TIMEOUT: Final = 15.0
# Keys of live events stamped before a client joined, kept to dedupe its replay.
MAX_EARLY_KEYS: Final = 1024


def scope_allows(scopes: tuple[str, ...] | None, event: Mapping[str, Any]) -> bool:
    """A principal's `containers` scope over engine events (docs/protocol.md): unscoped
    sees everything; scoped sees only container events of containers its globs match by
    name (the rule of /ws/containers), and no image/network/volume/daemon events."""
    if scopes is None:
        return True
    if event.get("Type") != "container":
        return False
    actor = event.get("Actor")
    attrs = actor.get("Attributes") if isinstance(actor, Mapping) else None
    name = attrs.get("name") if isinstance(attrs, Mapping) else None
    if not isinstance(name, str) or not name:
        return False
    return Principal("scope", container_scopes=scopes).may_access_container([name])


class ClientState:
    __slots__ = ("early_keys", "filter", "held", "joined_nanos", "scopes")

    def __init__(self, joined_nanos: int, scopes: tuple[str, ...] | None = None) -> None:
        self.scopes = scopes  # the principal's `containers` globs; None: everything
        self.filter: EventFilter | None = None  # None: everything
        # Live events with a time before `joined_nanos` were in flight when the client
        # joined; a replay up to `joined_nanos` must not send them again.
        self.joined_nanos = joined_nanos
        self.early_keys: set[tuple[Any, ...]] = set()
        self.held: SendQueue | None = None  # live frames held during a replay


class Fanout:
    """Authenticated logs clients and their filters; each live message encoded once."""

    __slots__ = ("_clients",)

    def __init__(self) -> None:
        self._clients: dict[Session[Any], ClientState] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, session: object) -> bool:
        return session in self._clients

    def add(self, session: Session[Any], now_nanos: int | None = None) -> None:
        if session not in self._clients:
            principal = session.principal
            scopes = principal.container_scopes if principal is not None else None
            self._clients[session] = ClientState(
                time.time_ns() if now_nanos is None else now_nanos, scopes)

    def set_scopes(self, session: Session[Any], scopes: tuple[str, ...] | None) -> None:
        state = self._clients.get(session)
        if state is not None:
            state.scopes = scopes

    def discard(self, session: Session[Any]) -> None:
        self._clients.pop(session, None)

    def clear(self) -> None:
        self._clients.clear()

    def set_filter(self, session: Session[Any], flt: EventFilter) -> None:
        state = self._clients.get(session)
        if state is not None:
            state.filter = None if flt.empty else flt

    def publish_event(self, event: EngineEvent) -> None:
        """`docker_event` (+ its `docker` line) to every client whose filter matches; each
        frame is built once (docs/protocol.md, "Outbound path")."""
        frame, readable = framed(*event_frames(event))
        nanos = event_nanos(event)
        for session, state in list(self._clients.items()):
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
        for session, state in list(self._clients.items()):
            if not scoped and state.scopes is not None:
                continue
            self._deliver(session, state, frame)

    def _deliver(self, session: Session[Any], state: ClientState, frame: bytes) -> None:
        if state.held is None:
            session.send_frame(frame)
        elif state.held.push(frame) is not None:  # the send-queue bound (it drops the backlog)
            session.close(protocol.CloseCode.TRY_AGAIN_LATER, "slow consumer: replay backlog overflow")

    # --- `since` replay: events from before the client joined ------------------------

    def begin_replay(self, session: Session[Any]) -> int | None:
        """Hold the client's live frames; returns the replay's `until` (its join time),
        or None when the client is unknown or a replay is already running."""
        state = self._clients.get(session)
        if state is None or state.held is not None:
            return None
        state.held = SendQueue(HELD_LIMITS)
        return state.joined_nanos

    def finish_replay(self, session: Session[Any], events: Iterable[EngineEvent],
                      ack: Message | None = None) -> int:
        """Send `ack` (with `replayed`: the count), then the replayed events (filtered,
        without those already sent live), then the live frames held meanwhile."""
        state = self._clients.get(session)
        if state is None:
            return 0
        held, state.held = state.held.pop_all() if state.held is not None else [], None
        frames: list[bytes] = []
        count = 0
        for event in events:
            if not scope_allows(state.scopes, event):
                continue
            if state.filter is not None and not state.filter.matches(event):
                continue
            if event_key(event) in state.early_keys:
                continue
            frame, readable = framed(*event_frames(event))
            frames.append(frame)
            if readable is not None:
                frames.append(readable)
            count += 1
        if ack is not None:
            session.send({**ack, "replayed": count})
        for frame in frames + held:
            session.send_frame(frame)
        return count


def since_nanos(value: Any) -> int:
    """`since` -> epoch nanos: the protocol's one rule (`protocol.parse_since`)."""
    return protocol.parse_since(value)


# --- the gateway --------------------------------------------------------------------


class LogsGateway(Gateway[Any]):
    name = "logs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients = Fanout()
        self._attached = False
        self._engine_down: str | None = None  # detail while the engine is unreachable
        self._host_logs: HostLogTailer | None = None

    def handlers(self) -> dict[str, Handler[Any]]:
        return {"subscribe": self._subscribe}

    # --- lifecycle ------------------------------------------------------------------

    async def on_authenticated(self, session: Session[Any]) -> None:
        # No await before the client is registered: the `authenticated` frame is queued
        # but not yet sent, so every event after the client sees it is delivered.
        self.clients.add(session)
        if not self._attached:
            self._attach()
        if self._engine_down is not None:
            session.send(system_log(protocol.rfc3339(), "error", self._engine_down, SOURCE_GATEWAY))

    async def on_principal_changed(self, session: Session[Any]) -> None:
        self.clients.set_scopes(session, session.user.container_scopes)

    async def on_disconnect(self, session: Session[Any]) -> None:
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
            self._host_logs = HostLogTailer(self.settings.host_log_files, self._on_host_line)
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

    async def _subscribe(self, session: Session[Any], message: Message) -> None:
        # Validate everything before changing anything.
        flt = EventFilter.parse(message.get("filters"))
        since = None if message.get("since") is None else since_nanos(message["since"])
        self.clients.set_filter(session, flt)
        ack: Message = {"type": "subscribed", "filters": flt.to_json()}
        if since is None:
            session.send(ack)
            return
        ack["since"] = message["since"]
        until = self.clients.begin_replay(session)
        if until is None:
            raise protocol.invalid("A replay is already in progress", "since")
        events: list[EngineEvent] = []
        try:
            if since < until:
                events = await self._fetch_events(since, until - 1)
        except (TimeoutError, EngineUnavailable, EngineError, aiohttp.ClientError) as exc:
            self.clients.finish_replay(session, [])
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE,
                                f"Cannot replay events: Docker engine unavailable ({exc})") from None
        except BaseException:
            self.clients.finish_replay(session, [])
            raise
        self.clients.finish_replay(session, events, ack)

    async def _fetch_events(self, since: int, until: int) -> list[EngineEvent]:
        """The engine's buffered events in [since, until]; `until` is past, so it ends."""
        params = {"since": since_param(since), "until": since_param(until)}
        splitter = LineSplitter()
        out: list[EngineEvent] = []
        async with asyncio.timeout(REPLAY_TIMEOUT), \
                self.services.engine.stream("/events", params) as resp:
            async for chunk in resp.content.iter_any():
                for line in splitter.feed(chunk):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        event = orjson.loads(line)
                        if isinstance(event, dict) and len(out) < MAX_REPLAY_EVENTS:
                            out.append(event)
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
