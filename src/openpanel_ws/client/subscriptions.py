"""What each kind of consumer asks of a gateway connection, and how it reads the answers.

Plain synchronous state machines, driven by `openpanel_ws.client.sansio.ClientConnection`:
a subscription says what to (re)send once the connection is authenticated, takes the
messages that are its own, and appends actions (`Deliver`, `Finish`, ...; see
`openpanel_ws.client.actions`) for the asyncio shell to carry out. Timers (the quiet
spell that ends `logs` without -f) are deadlines on the same injected clock. The
terminal, which is reattached rather than resubscribed, is in `openpanel_ws.client.terminal`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from openpanel_ws.client.actions import Action, Deliver, Status
from openpanel_ws.client.messages import (
    DockerEvent,
    DockerUnavailable,
    HostStatus,
    InvalidMessage,
    LogLine,
    MetricsSample,
    PermissionDenied,
    ServerError,
    StatsSample,
    SubscriptionEnded,
    SystemLog,
    host_of,
)
from openpanel_ws.client.outbox import Outgoing
from openpanel_ws.client.sansio import ClientSubscription
from openpanel_ws.protocol import Message, parse_timestamp_nanos, rfc3339_from_nanos

__all__ = [
    "EventsSubscription",
    "LogCursor",
    "LogsSubscription",
    "MetricsSubscription",
    "StatsSubscription",
    "Target",
]


class Target:
    """A container on a host: what a logs or stats subscription is keyed by, so the same
    name on two hosts is two subscriptions (docs/protocol.md "Addressing").

    `named` is the host the caller asked for (None: the gateway's default host, or the
    host of a `/hosts/{id}/ws/*` route). Without one, the host is learned from the
    server's first answer about the container and kept, so a resume asks the same host.
    """

    def __init__(self, container: str, host: str | None = None) -> None:
        self.container = container
        self.named = host
        self.host = host

    def __repr__(self) -> str:
        return f"Target({self.container!r}, {self.host!r})"

    def fields(self) -> Message:
        """`containerId` (and `host` once known) of a request about this target."""
        msg: Message = {"containerId": self.container}
        if self.host is not None:
            msg["host"] = self.host
        return msg

    def owns(self, msg: Message) -> bool:
        """The message is about this target (its host is learned from the first one)."""
        if msg.get("containerId") != self.container:
            return False
        host = host_of(msg)
        if host is None:
            return True  # a gateway of one host, which does not say which
        if self.host is None:
            self.host = host
        return host == self.host

    def named_by(self, err: ServerError) -> bool:
        """An error about this container on this host (one without `host`: any host)."""
        if err.container_id != self.container:
            return False
        return err.host is None or self.host is None or err.host == self.host

    def ended(self, msg: Message) -> SubscriptionEnded:
        return SubscriptionEnded(self.container, _ended_reason(msg), self.named)


def _unavailable(target: Target, err: ServerError, out: list[Action]) -> bool:
    """DOCKER_UNAVAILABLE about a subscription: its host is down or hangs; the
    subscription stays and the stream resumes when the host answers again."""
    if not isinstance(err, DockerUnavailable) or not target.named_by(err):
        return False
    out.append(Status(f"container '{target.container}': {err}; waiting for the host"))
    return True

class LogCursor:
    """Where a logs subscription stands, so a resumed one shows no gap and no duplicate.

    The engine's `since` is inclusive and a server may round it, so a resume asks for
    a little before the last line seen and drops, client-side, what was already shown:
    every line older than the last timestamp, and at that very timestamp the lines
    already delivered (counted, since two identical lines may share a timestamp).
    """

    RESUME_OVERLAP_NS: Final = 1_000_000_000

    def __init__(self) -> None:
        self.last_ns: int | None = None
        self._at_last: Counter[tuple[str, str]] = Counter()
        self._replay: Counter[tuple[str, str]] = Counter()
        self.dropped = 0

    def accept(self, timestamp: str, stream: str, data: str) -> bool:
        """True when the line is new and should be shown."""
        try:
            ns = parse_timestamp_nanos(timestamp)
        except ValueError:
            return True  # no usable time: cannot be a replay we asked for
        key = (stream, data)
        if self.last_ns is not None:
            if ns < self.last_ns:
                self.dropped += 1
                return False
            if ns == self.last_ns and self._replay[key] > 0:
                self._replay[key] -= 1
                self.dropped += 1
                return False
        if ns != self.last_ns:
            self.last_ns = ns
            self._at_last.clear()
            self._replay.clear()
        self._at_last[key] += 1
        return True

    def resume(self) -> dict[str, Any]:
        """Fields of `subscribe_logs` for a resumed subscription ({} before any line)."""
        if self.last_ns is None:
            return {}
        self._replay = Counter(self._at_last)
        since = max(0, self.last_ns - self.RESUME_OVERLAP_NS)
        # tail "all": everything since then, not only the last 100 lines of it.
        return {"since": rfc3339_from_nanos(since), "tail": "all"}


def _refuses(err: ServerError, confirmed: bool, fields: tuple[str, ...]) -> bool:
    """An INVALID_MESSAGE naming a field of a subscribe not yet answered is its refusal
    (the server's error carries no containerId then): end it rather than wait forever."""
    return not confirmed and isinstance(err, InvalidMessage) and err.raw.get("field") in fields


def _ended_reason(msg: Message) -> str:
    text = str(msg.get("message") or msg.get("reason") or "subscription ended")
    return text[:1].lower() + text[1:]


def _nanos(timestamp: str) -> int:
    try:
        return parse_timestamp_nanos(timestamp)
    except ValueError:
        return 0


class LogsSubscription(ClientSubscription):
    """`subscribe_logs` of one container; resumed after a reconnect from its cursor."""

    def __init__(self, container: str, tail: int | str | None, since: str | float | None,
                 follow: bool, quiet: float, host: str | None = None) -> None:
        super().__init__()
        self.container = container
        self.target = Target(container, host)
        self.tail = tail
        self.since = since
        self.follow = follow
        self.cursor = LogCursor()
        self._quiet = quiet
        # Without -f: lines newer than the request (by the server's clock) are not shown.
        self.until_ns: int | None = None
        self._idle_at: float | None = None
        self.confirmed = False  # the server answered our subscribe (ack or a line)

    def on_open(self, server_ns: int) -> list[Outgoing]:
        if not self.follow and self.until_ns is None:
            self.until_ns = server_ns
        return list(self.subscribe_messages())

    def subscribe_messages(self) -> list[Message]:
        msg: Message = {"type": "subscribe_logs", **self.target.fields()}
        if self.tail is not None:
            msg["tail"] = self.tail
        if self.since is not None:
            msg["since"] = self.since
        msg.update(self.cursor.resume())
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_logs", **self.target.fields()}]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if not self.target.owns(msg):
            return False
        if kind == "log":
            self.confirmed = True
            line = LogLine.parse(msg)
            if not self.follow and self.until_ns is not None and _nanos(line.timestamp) > self.until_ns:
                self.end(out)  # newer than the request: `logs` without -f stops at "now"
                return False
            if self.cursor.accept(line.timestamp, line.stream, line.data) and not self.ended:
                out.append(Deliver(self, line))
            self._arm_idle(now)
            return False  # another subscription of the same container may want it too
        if kind == "subscribed_logs":
            self.confirmed = True
            self._arm_idle(now)
            return True
        if kind == "subscription_ended" and msg.get("subscription", "logs") == "logs":
            # e.g. the container was removed: nothing more will come
            self.end(out, self.target.ended(msg))
            return False
        return kind == "unsubscribed_logs"

    def _arm_idle(self, now: float) -> None:
        # Without -f the protocol has no "end of backlog" marker: stop after a quiet spell.
        if self.follow or self.ended:
            return
        # A busy engine may take a while to start the backlog: wait longer for line one.
        wait = self._quiet if self.cursor.last_ns is not None else self._quiet * 3
        self._idle_at = now + wait

    def next_deadline(self) -> float | None:
        return None if self.ended else self._idle_at

    def tick(self, now: float, out: list[Action]) -> None:
        if self._idle_at is not None and now >= self._idle_at:
            self._idle_at = None
            self.end(out)

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        if self.confirmed and _unavailable(self.target, err, out):
            return True
        if self.target.named_by(err) or _refuses(err, self.confirmed, ("tail", "since", "host")):
            self.end(out, err)
            return True
        return False


class StatsSubscription(ClientSubscription):
    """`subscribe_stats` of several containers (each a name, or (host, name)); the last
    one ended ends it."""

    def __init__(self, containers: Sequence[str | tuple[str | None, str]],
                 interval: int | None, host: str | None = None) -> None:
        super().__init__()
        self.targets = [Target(c, host) if isinstance(c, str) else Target(c[1], c[0] or host)
                        for c in containers]
        self.interval = interval
        self.confirmed = False

    @property
    def containers(self) -> list[str]:
        return [t.container for t in self.targets]

    def subscribe_messages(self) -> list[Message]:
        out: list[Message] = []
        for t in self.targets:
            msg: Message = {"type": "subscribe_stats", **t.fields()}
            if self.interval is not None:
                msg["interval"] = self.interval
            out.append(msg)
        return out

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_stats", **t.fields()} for t in self.targets]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        target = next((t for t in self.targets if t.owns(msg)), None)
        if target is None:
            return False
        kind = msg.get("type")
        if kind in ("stats", "subscribed_stats"):
            self.confirmed = True
        if kind == "stats":
            out.append(Deliver(self, StatsSample.parse(msg)))
            return False
        if kind == "subscription_ended" and msg.get("subscription", "stats") == "stats":
            # the others go on; the last one gone ends the iterator
            self.targets = [t for t in self.targets if t is not target]
            if not self.targets:
                self.end(out, target.ended(msg))
            return False
        return kind in ("subscribed_stats", "unsubscribed_stats")

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        if self.confirmed and any(_unavailable(t, err, out) for t in self.targets):
            return True
        if (any(t.named_by(err) for t in self.targets)
                or _refuses(err, self.confirmed, ("interval", "host"))):
            self.end(out, err)
            return True
        return False


class EventsSubscription(ClientSubscription):
    """Docker events and system logs of `/ws/logs`, optionally narrowed by `subscribe`."""

    def __init__(self, filters: Mapping[str, list[str]] | None, host_status: bool = False) -> None:
        super().__init__()
        self.filters = {k: list(v) for k, v in (filters or {}).items()}
        self.host_status = host_status  # also deliver `host_status` (HostStatus)
        # With filters nothing is passed on before the server accepted them: until
        # then the connection still gets every event.
        self.confirmed = not self.filters

    def subscribe_messages(self) -> list[Message]:
        # Additive `subscribe` {filters} of /ws/logs (engine filter semantics).
        return [{"type": "subscribe", "filters": self.filters}] if self.filters else []

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if kind == "subscribed":
            self.confirmed = True
            return True
        if kind == "docker_event":
            if self.confirmed:
                out.append(Deliver(self, DockerEvent.parse(msg)))
            return True
        if kind == "system_log":
            if self.confirmed:
                out.append(Deliver(self, SystemLog.parse(msg)))
            return True
        if kind == "host_status" and self.host_status:
            # a host changed state (docs/protocol.md "The `host` field")
            out.append(Deliver(self, HostStatus.parse(msg)))
            return True
        return False

    def on_disconnect(self, why: str, code: int | None, now: float, out: list[Action]) -> None:
        self.confirmed = not self.filters  # asked again on the next connection

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        # A refused filter is the answer to our `subscribe`: end, don't stream unfiltered.
        if not self.confirmed and isinstance(err, InvalidMessage):
            self.end(out, err)
            return True
        return False


class MetricsSubscription(ClientSubscription):
    """Host metrics of `/ws/metrics`."""

    def __init__(self, interval: int | None, host: str | None = None) -> None:
        super().__init__()
        self.interval = interval
        self.host = host  # the machine of this host (a remote host is refused)

    def subscribe_messages(self) -> list[Message]:
        msg: Message = {"type": "subscribe"}
        if self.interval is not None:
            msg["interval"] = self.interval
        if self.host is not None:
            msg["host"] = self.host
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe"}]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if kind == "metrics":
            out.append(Deliver(self, MetricsSample.parse(msg)))
            return True
        return kind in ("subscribed", "unsubscribed")

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        # The refused host (unknown, out of scope, remote): the answer to our subscribe.
        if self.host is not None and isinstance(err, InvalidMessage | PermissionDenied) \
                and err.raw.get("field", "host") == "host":
            self.end(out, err)
            return True
        return False
