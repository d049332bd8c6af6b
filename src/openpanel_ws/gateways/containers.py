"""`/ws/containers`: container logs and live stats, one shared engine stream each.

Logs: one engine `logs?follow=1` stream per container (fixed stream options), fanned
out to every subscriber. The stream belongs to no subscriber: it starts at "now" and
never uses a client's `tail`/`since` (docs/protocol.md). Every subscriber is attached to
the live stream at once (its lines held back), its own history is fetched by a separate
non-follow request, and `HandoverFilter` joins the two with no gap and no duplicate.
When the stream ends (container stopped, engine restarted) the upstream waits for the
container's next `start` and re-opens with `since` = its `LogCursor`, dropping what was
already delivered; a failing stream backs off (capped exponential). When the container is removed every
subscriber gets `subscription_ended` and the subscription is gone.

Stats: one engine `stats?stream=1` stream per container (~1 sample/s), turned into the
Docker CLI's numbers once per sample, encoded once per distinct `containerId` text, and
paced per subscriber (`Pacer`) as latest-value frames. The stream is closed when the
container stops (the engine would keep sending zeroed samples) and re-opened on start.

Every upstream closes when its last subscriber leaves or disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
import orjson

from openpanel_ws import protocol
from openpanel_ws.engine.client import DockerEngine, EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.events import EngineEvent
from openpanel_ws.engine.logs import HandoverFilter, LogCursor, LogLine, LogParser, nanos_param
from openpanel_ws.engine.stats import ContainerStats, Pacer, compute, is_running_sample
from openpanel_ws.gateways.access import container_names, resolve_container
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.outbound import text_frame
from openpanel_ws.protocol import CloseCode, ErrorCode, Message, ProtocolError, invalid
from openpanel_ws.sendqueue import QueueLimits

if TYPE_CHECKING:
    from openpanel_ws.services import Services

log = logging.getLogger(__name__)

DEFAULT_TAIL: Final = 100
MAX_TAIL: Final = 1_000_000
# A late subscriber's history is fetched with at least this many lines, so the handover
# can recognise the shared stream's older lines even when the client asked for few.
HANDOVER_WINDOW: Final = 100
# While stopped, the container's state is re-checked this often even without an event
# (the events stream may itself be reconnecting).
RECHECK_SECONDS: Final = 5.0
BACKOFF_INITIAL: Final = 0.25
BACKOFF_MAX: Final = 5.0
# A logs stream that keeps failing is retried at most this often.
STREAM_BACKOFF_MAX: Final = 30.0
# A logs stream that lived at least this long was healthy: the backoff starts over.
HEALTHY_STREAM_SECONDS: Final = 5.0
# The shared logs stream starts this long before it was created (see LogUpstream).
START_MARGIN_NANOS: Final = 1_000_000_000
# A stats sample this recent is sent at once to a new subscriber.
FRESH_SAMPLE_SECONDS: Final = 2.0

LOGS_PARAMS: Final = {"stdout": True, "stderr": True, "timestamps": True}
REMOVED_REASON: Final = "container_removed"
PERMISSION_REASON: Final = "permission"


def ended_message(kind: str, container_ref: str, reason: str = REMOVED_REASON) -> Message:
    """The end of a subscription the client did not ask for (documented in docs/containers.md)."""
    return {
        "type": "subscription_ended",
        "subscription": kind,
        "containerId": container_ref,
        "reason": reason,
        "message": "Container removed" if reason == REMOVED_REASON else "Permission denied",
        "timestamp": protocol.rfc3339(),
    }


# --- request validation (before any engine call) ------------------------------------


def parse_tail(msg: Message) -> int | str:
    value = msg.get("tail")
    if value is None:
        return DEFAULT_TAIL
    if value == "all":
        return "all"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TAIL:
        raise invalid(f"Field 'tail' must be an integer from 0 to {MAX_TAIL} or \"all\"", "tail")
    return value


def parse_since(msg: Message) -> int | None:
    """`since` as nanoseconds since the epoch: the protocol's one rule (`protocol.parse_since`)."""
    value = msg.get("since")
    return None if value is None else protocol.parse_since(value)


# --- subscriptions --------------------------------------------------------------------


@dataclass(eq=False)
class LogSub:
    session: Session[SessionState]
    ref: str
    upstream: LogUpstream
    # Lines held while this subscriber's history is being fetched (None: live).
    pending: list[LogLine] | None = None
    handover: HandoverFilter | None = None
    history_task: asyncio.Task[None] | None = None
    joined_nanos: int = 0
    names: tuple[str, ...] = ()  # the container's names when subscribed (scope re-checks)


@dataclass(eq=False)
class StatsSub:
    session: Session[SessionState]
    ref: str
    upstream: StatsUpstream
    pacer: Pacer
    names: tuple[str, ...] = ()  # the container's names when subscribed (scope re-checks)

    @property
    def key(self) -> str:
        return f"stats:{self.ref}"


@dataclass
class SessionState:
    logs: dict[str, LogSub] = field(default_factory=dict)
    stats: dict[str, StatsSub] = field(default_factory=dict)


class Backoff:
    """Capped exponential delays (sans-I/O): 0.25, 0.5, 1, ... up to `maximum`."""

    __slots__ = ("_delay", "initial", "maximum")

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def next_delay(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._delay = self.initial


# --- shared upstream machinery ----------------------------------------------------------


class Upstream:
    """What logs and stats upstreams share: the task, the start/removal signals, and
    waiting for the container to run again."""

    kind: str

    def __init__(self, gateway: ContainersGateway, container_id: str) -> None:
        self.gateway = gateway
        self.engine: DockerEngine = gateway.services.engine
        self.container_id = container_id
        self.path = f"/containers/{quote(container_id, safe='')}"
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()  # a `start` event (or removal) since last cleared
        self.removed = False
        self.finished_at: int | None = None  # end of the last run (engine clock), nanos

    def on_event(self, action: str) -> None:
        if action == "start":
            self.started.set()
        elif action == "destroy":
            self.removed = True
            self.started.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._main(), name=f"{self.kind}-{self.container_id[:12]}"
        )

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _main(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s upstream of %s failed", self.kind, self.container_id[:12])
        finally:
            self.gateway._forget(self)

    async def run(self) -> None:
        raise NotImplementedError

    async def wait_running(self, *, after_stream: bool, quick_delay: float = BACKOFF_INITIAL) -> bool:
        """Until the container runs: True; removed: False. Engine outages are waited out.

        `after_stream`: a stream just ended; if the container still runs, wait
        `quick_delay` first so that a failing stream cannot spin."""
        delay = BACKOFF_INITIAL
        quick_end = after_stream
        while True:
            self.started.clear()
            if self.removed:
                return False
            try:
                info = await self.engine.inspect_container(self.container_id)
            except EngineNotFound:
                return False
            except (EngineUnavailable, EngineError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            state = info.get("State") or {}
            finished = state.get("FinishedAt")
            if isinstance(finished, str) and not finished.startswith("0001-"):
                with contextlib.suppress(ValueError):
                    self.finished_at = protocol.parse_timestamp_nanos(finished)
            if state.get("Running"):
                if quick_end:
                    # The stream ended while the container still runs (engine hiccup):
                    # back off so a failing stream cannot spin.
                    await asyncio.sleep(quick_delay)
                    quick_end = False
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.started.wait(), RECHECK_SECONDS)


class LogUpstream(Upstream):
    kind = "logs"

    def __init__(self, gateway: ContainersGateway, container_id: str, tty: bool) -> None:
        super().__init__(gateway, container_id)
        self.tty = tty
        self.subs: dict[LogSub, None] = {}  # insertion-ordered set
        self.cursor = LogCursor()
        # The shared stream belongs to no subscriber: it starts at "now" (a little before,
        # so nothing falls between it and a subscriber's history request) and resumes by
        # its own cursor. A subscriber's `tail`/`since` shape only its own history.
        self.start_nanos = time.time_ns() - START_MARGIN_NANOS
        self.backoff = Backoff(BACKOFF_INITIAL, STREAM_BACKOFF_MAX)
        self.max_line = gateway.settings.log_line_max_bytes
        # Lines held for a late subscriber while its history is fetched count against
        # the one send-queue bound (`QueueLimits`): past it, 1013 as for queued frames.
        self.held_limits = QueueLimits(gateway.settings.send_queue_max, 1 << 62)

    async def run(self) -> None:
        params: dict[str, Any] = {**LOGS_PARAMS, "follow": True, "tail": "all",
                                  "since": nanos_param(self.start_nanos)}
        while self.subs:
            failed = False
            opened_at = time.monotonic()
            try:
                async with self.engine.stream(self.path + "/logs", params) as resp:
                    parser = LogParser(tty=self.tty, max_line_bytes=self.max_line)
                    try:
                        async for chunk in resp.content.iter_any():
                            self.deliver(parser.feed(chunk))
                    finally:
                        self.deliver(parser.flush())
            except EngineNotFound:
                pass  # removed, or about to be: wait_running decides
            except (EngineUnavailable, EngineError, aiohttp.ClientError, ConnectionError,
                    TimeoutError) as exc:
                failed = True
                log.info("logs stream of %s interrupted: %s", self.container_id[:12], exc)
            # A failing upstream (engine error, or a stream that ends at once while the
            # container runs) backs off exponentially, capped, instead of spinning.
            if time.monotonic() - opened_at >= HEALTHY_STREAM_SECONDS and not failed:
                self.backoff.reset()
            if failed:
                await asyncio.sleep(self.backoff.next_delay())
            quick = 0.0 if failed else self.backoff.next_delay()
            if not await self.wait_running(after_stream=not failed, quick_delay=quick):
                self.gateway._end_removed(self)
                return
            # Resume right after the last delivered line; never-seen output of a new run
            # starts after the previous run finished.
            self.cursor.begin_replay()
            params = {**LOGS_PARAMS, "follow": True, "tail": "all"}
            since = self.cursor.since_param()
            if since is None:
                # Nothing delivered yet: the new run, but not before the stream began.
                floors = [n for n in (self.finished_at, self.start_nanos) if n is not None]
                since = nanos_param(max(floors))
            params["since"] = since

    def deliver(self, lines: list[LogLine]) -> None:
        # stdout and stderr are logged in arrival order, each line stamped when read:
        # put what arrived together back in time order (stable: split lines stay put).
        lines.sort(key=_by_time)
        for line in lines:
            if not self.cursor.admit(line):
                continue
            frames: dict[str, bytes] = {}
            for sub in list(self.subs):
                if sub.pending is not None:
                    if self.held_limits.exceeded(len(sub.pending) + 1, 0):
                        sub.session.close(CloseCode.TRY_AGAIN_LATER, "slow consumer: log backlog")
                        sub.pending = []
                    sub.pending.append(line)
                    continue
                if sub.handover is not None:
                    if not sub.handover.admit(line):
                        continue
                    if sub.handover.done:
                        sub.handover = None
                send_line(sub, line, frames)

    def add(self, sub: LogSub, tail: int | str, since: int | None) -> None:
        """Attach a subscriber to the live stream at once (its lines held) and fetch its
        own history by a separate request."""
        sub.pending = []
        sub.joined_nanos = time.time_ns()
        self.subs[sub] = None
        sub.history_task = asyncio.get_running_loop().create_task(
            self._history(sub, tail, since), name=f"logs-history-{self.container_id[:12]}"
        )

    async def _history(self, sub: LogSub, tail: int | str, since: int | None) -> None:
        """A late subscriber's backlog by a separate non-follow request; then live."""
        fetch: int | str = "all" if tail == "all" else max(int(tail), HANDOVER_WINDOW)
        params: dict[str, Any] = {**LOGS_PARAMS, "tail": fetch}
        if since is not None:
            params["since"] = nanos_param(since)
        history: list[LogLine] = []
        try:
            async with self.engine.stream(self.path + "/logs", params) as resp:
                parser = LogParser(tty=self.tty, max_line_bytes=self.max_line)
                async for chunk in resp.content.iter_any():
                    history.extend(parser.feed(chunk))
                history.extend(parser.flush())
            history.sort(key=_by_time)
        except (EngineError, EngineUnavailable, aiohttp.ClientError, ConnectionError,
                TimeoutError) as exc:
            # No history (engine trouble): the subscriber still gets the live lines.
            log.info("logs history of %s failed: %s", self.container_id[:12], exc)
        if sub not in self.subs:
            return
        shown = history if tail == "all" else history[len(history) - int(tail):] if tail else []
        frames: dict[str, bytes] = {}
        for i, line in enumerate(shown):
            send_line(sub, line, frames)
            frames.clear()
            if i % 256 == 255:
                await asyncio.sleep(0)  # let the writer drain a big backlog
                if sub not in self.subs:
                    return
        # A `since` in the future gives an empty history, then the live lines: the
        # handover floor is never later than the moment the subscriber joined.
        floor = None if since is None else min(since, sub.joined_nanos)
        handover = HandoverFilter(history, floor)
        held, sub.pending = sub.pending or [], None
        for line in held:
            if handover.admit(line):
                send_line(sub, line, frames)
                frames.clear()
        sub.handover = None if handover.done else handover
        sub.history_task = None

    def remove(self, sub: LogSub) -> None:
        self.subs.pop(sub, None)
        if sub.history_task is not None:
            sub.history_task.cancel()
            sub.history_task = None


def _by_time(line: LogLine) -> int:
    return line.nanos


def send_line(sub: LogSub, line: LogLine, frames: dict[str, bytes]) -> None:
    """Encode and frame once per distinct `containerId` text, send the same bytes to each."""
    frame = frames.get(sub.ref)
    if frame is None:
        frame = text_frame(orjson.dumps({
            "type": "log",
            "containerId": sub.ref,
            "timestamp": line.timestamp,
            "stream": line.stream,
            "data": line.data,
        }))
        frames[sub.ref] = frame
    sub.session.send_frame(frame)


class StatsUpstream(Upstream):
    kind = "stats"

    def __init__(self, gateway: ContainersGateway, container_id: str) -> None:
        super().__init__(gateway, container_id)
        self.subs: dict[StatsSub, None] = {}
        self.latest: ContainerStats | None = None
        self.latest_at = 0.0
        self.samples = 0  # samples read from the engine (tests, bench)

    async def run(self) -> None:
        after_stream = False
        while self.subs:
            if not await self.wait_running(after_stream=after_stream):
                self.gateway._end_removed(self)
                return
            after_stream = True
            for sub in self.subs:
                sub.pacer.reset()  # a new run's first sample goes out at once
            try:
                async with self.engine.stream(self.path + "/stats", {"stream": True}) as resp:
                    async for raw in resp.content:
                        if not raw.strip():
                            continue
                        try:
                            sample = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            continue
                        if not isinstance(sample, dict):
                            continue
                        self.samples += 1
                        if not is_running_sample(sample):
                            break  # stopped: the engine would go on sending zeroes
                        stats = compute(sample)
                        if stats is not None:
                            self.publish(stats)
            except EngineNotFound:
                pass
            except (EngineUnavailable, EngineError, aiohttp.ClientError, ConnectionError,
                    TimeoutError, ValueError) as exc:
                log.info("stats stream of %s interrupted: %s", self.container_id[:12], exc)
            self.latest = None

    def publish(self, stats: ContainerStats) -> None:
        now = time.monotonic()
        self.latest, self.latest_at = stats, now
        frames: dict[str, bytes] = {}
        for sub in self.subs:
            if sub.pacer.due(now):
                send_stats(sub, stats, frames)

    def add(self, sub: StatsSub) -> None:
        self.subs[sub] = None
        now = time.monotonic()
        if self.latest is not None and now - self.latest_at <= FRESH_SAMPLE_SECONDS:
            sub.pacer.due(now)
            send_stats(sub, self.latest, {})

    def remove(self, sub: StatsSub) -> None:
        self.subs.pop(sub, None)
        sub.session.writer.discard_latest(sub.key)


def send_stats(sub: StatsSub, stats: ContainerStats, frames: dict[str, bytes]) -> None:
    frame = frames.get(sub.ref)
    if frame is None:
        frame = frames[sub.ref] = orjson.dumps(stats.message(sub.ref))
    sub.session.send_latest(sub.key, frame)


# --- the gateway ------------------------------------------------------------------------


class ContainersGateway(Gateway[SessionState]):
    name = "containers"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.log_upstreams: dict[str, LogUpstream] = {}
        self.stats_upstreams: dict[str, StatsUpstream] = {}
        self._listening = False

    def handlers(self) -> dict[str, Handler[SessionState]]:
        return {
            "subscribe_logs": self.subscribe_logs,
            "unsubscribe_logs": self.unsubscribe_logs,
            "subscribe_stats": self.subscribe_stats,
            "unsubscribe_stats": self.unsubscribe_stats,
        }

    def lane(self, message: Message) -> str:
        # One lane per subscription (kind + container): a hung request for one container
        # never holds up the others, nor the other kind of the same container; replies
        # for one subscription stay in order (docs/protocol.md "Hostile clients").
        ref = message.get("containerId")
        if not isinstance(ref, str):
            return ""
        kind = str(message.get("type", "")).rpartition("_")[2]
        return f"{kind}\0{ref}"

    @staticmethod
    def state(session: Session[SessionState]) -> SessionState:
        if not isinstance(session.state, SessionState):
            session.state = SessionState()
        return session.state

    # --- logs ---------------------------------------------------------------------------

    async def subscribe_logs(self, session: Session[SessionState], msg: Message) -> None:
        ref = protocol.require_str(msg, "containerId")
        tail = parse_tail(msg)
        since = parse_since(msg)
        state = self.state(session)
        if ref in state.logs:
            session.send({"type": "subscribed_logs", "containerId": ref})
            return
        info = await resolve_container(self.services.engine, session.user, ref)
        if session.closed or ref in state.logs:
            return
        names = tuple(container_names(info))
        if not session.user.may_access_container(names):
            # The claims changed (re-auth) while the engine answered.
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied",
                                context={"containerId": ref})
        container_id = str(info["Id"])
        tty = bool((info.get("Config") or {}).get("Tty"))
        session.send({"type": "subscribed_logs", "containerId": ref})
        upstream = self.log_upstreams.get(container_id)
        created = upstream is None
        if upstream is None:
            upstream = LogUpstream(self, container_id, tty)
        sub = LogSub(session, ref, upstream, names=names)
        upstream.add(sub, tail, since)
        if created:
            self._register(self.log_upstreams, upstream)
        state.logs[ref] = sub

    async def unsubscribe_logs(self, session: Session[SessionState], msg: Message) -> None:
        ref = protocol.require_str(msg, "containerId")
        sub = self.state(session).logs.pop(ref, None)
        if sub is not None:
            await self._drop_log_sub(sub)
        session.send({"type": "unsubscribed_logs", "containerId": ref})

    async def _drop_log_sub(self, sub: LogSub) -> None:
        upstream = sub.upstream
        upstream.remove(sub)
        if not upstream.subs:
            await self._close_upstream(self.log_upstreams, upstream)

    # --- stats --------------------------------------------------------------------------

    async def subscribe_stats(self, session: Session[SessionState], msg: Message) -> None:
        ref = protocol.require_str(msg, "containerId")
        interval = protocol.interval_ms(msg)
        state = self.state(session)
        existing = state.stats.get(ref)
        if existing is not None:
            # Same subscription, possibly a new interval.
            existing.pacer.set_interval(interval / 1000)
            session.send({"type": "subscribed_stats", "containerId": ref, "interval": interval})
            return
        info = await resolve_container(self.services.engine, session.user, ref)
        if session.closed or ref in state.stats:
            return
        names = tuple(container_names(info))
        if not session.user.may_access_container(names):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied",
                                context={"containerId": ref})
        container_id = str(info["Id"])
        session.send({"type": "subscribed_stats", "containerId": ref, "interval": interval})
        upstream = self.stats_upstreams.get(container_id)
        created = upstream is None
        if upstream is None:
            upstream = StatsUpstream(self, container_id)
        sub = StatsSub(session, ref, upstream, Pacer(interval / 1000), names=names)
        upstream.add(sub)
        if created:
            self._register(self.stats_upstreams, upstream)
        state.stats[ref] = sub

    async def unsubscribe_stats(self, session: Session[SessionState], msg: Message) -> None:
        ref = protocol.require_str(msg, "containerId")
        sub = self.state(session).stats.pop(ref, None)
        if sub is not None:
            await self._drop_stats_sub(sub)
        session.send({"type": "unsubscribed_stats", "containerId": ref})

    async def _drop_stats_sub(self, sub: StatsSub) -> None:
        upstream = sub.upstream
        upstream.remove(sub)
        if not upstream.subs:
            await self._close_upstream(self.stats_upstreams, upstream)

    # --- upstream registry --------------------------------------------------------------

    def _register(self, registry: dict[str, Any], upstream: Upstream) -> None:
        registry[upstream.container_id] = upstream
        self._update_listener()
        upstream.start()

    async def _close_upstream(self, registry: dict[str, Any], upstream: Upstream) -> None:
        if registry.get(upstream.container_id) is upstream:
            del registry[upstream.container_id]
        self._update_listener()
        await upstream.close()

    def _forget(self, upstream: Upstream) -> None:
        """An upstream task ended on its own (removed container, failure)."""
        registry: dict[str, Any] = (
            self.log_upstreams if isinstance(upstream, LogUpstream) else self.stats_upstreams
        )
        if registry.get(upstream.container_id) is upstream:
            del registry[upstream.container_id]
        self._update_listener()

    def _end_removed(self, upstream: Upstream) -> None:
        """The container is gone: tell each subscriber and drop the subscriptions."""
        subs: list[LogSub | StatsSub] = []
        if isinstance(upstream, LogUpstream | StatsUpstream):
            subs.extend(upstream.subs)
        for sub in subs:
            state = self.state(sub.session)
            if isinstance(sub, LogSub):
                if state.logs.get(sub.ref) is sub:
                    del state.logs[sub.ref]
                sub.upstream.remove(sub)
            else:
                if state.stats.get(sub.ref) is sub:
                    del state.stats[sub.ref]
                sub.upstream.remove(sub)
            sub.session.send(ended_message(upstream.kind, sub.ref))

    def _update_listener(self) -> None:
        wanted = bool(self.log_upstreams or self.stats_upstreams)
        if wanted and not self._listening:
            self.services.events.add_listener(self._on_event)
            self._listening = True
        elif not wanted and self._listening:
            self.services.events.remove_listener(self._on_event)
            self._listening = False

    def _on_event(self, event: EngineEvent) -> None:
        if event.get("Type") != "container":
            return
        actor = event.get("Actor")
        container_id = actor.get("ID") if isinstance(actor, dict) else None
        container_id = container_id or event.get("id")
        action = event.get("Action") or event.get("status")
        if not isinstance(container_id, str) or not isinstance(action, str):
            return
        for registry in (self.log_upstreams, self.stats_upstreams):
            upstream: Upstream | None = registry.get(container_id)
            if upstream is not None:
                upstream.on_event(action)

    # --- lifecycle ----------------------------------------------------------------------

    async def on_disconnect(self, session: Session[SessionState]) -> None:
        state = session.state
        if not isinstance(state, SessionState):
            return
        logs, state.logs = list(state.logs.values()), {}
        stats, state.stats = list(state.stats.values()), {}
        for log_sub in logs:
            await self._drop_log_sub(log_sub)
        for stats_sub in stats:
            await self._drop_stats_sub(stats_sub)

    async def on_principal_changed(self, session: Session[SessionState]) -> None:
        """Re-auth: every live subscription is checked against the new claims."""
        state = session.state
        if not isinstance(state, SessionState):
            return
        user = session.user
        for ref, log_sub in list(state.logs.items()):
            if not user.may_access_container(log_sub.names):
                del state.logs[ref]
                await self._drop_log_sub(log_sub)
                session.send(ended_message("logs", ref, PERMISSION_REASON))
        for ref, stats_sub in list(state.stats.items()):
            if not user.may_access_container(stats_sub.names):
                del state.stats[ref]
                await self._drop_stats_sub(stats_sub)
                session.send(ended_message("stats", ref, PERMISSION_REASON))

    async def stop(self) -> None:
        upstreams: list[Upstream] = [*self.log_upstreams.values(), *self.stats_upstreams.values()]
        self.log_upstreams.clear()
        self.stats_upstreams.clear()
        self._update_listener()
        for upstream in upstreams:
            await upstream.close()

    # For tests and the bench: engine streams held by this gateway's upstreams.
    def upstream_counts(self) -> dict[str, int]:
        return {"logs": len(self.log_upstreams), "stats": len(self.stats_upstreams)}

