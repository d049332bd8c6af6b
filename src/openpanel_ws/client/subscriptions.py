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
from collections.abc import Mapping
from typing import Any, Final

from openpanel_ws.client.actions import Action, Deliver
from openpanel_ws.client.messages import (
    DockerEvent,
    InvalidMessage,
    LogLine,
    MetricsSample,
    ServerError,
    StatsSample,
    SubscriptionEnded,
    SystemLog,
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
]

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
                 follow: bool, quiet: float) -> None:
        super().__init__()
        self.container = container
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
        msg: Message = {"type": "subscribe_logs", "containerId": self.container}
        if self.tail is not None:
            msg["tail"] = self.tail
        if self.since is not None:
            msg["since"] = self.since
        msg.update(self.cursor.resume())
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_logs", "containerId": self.container}]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if msg.get("containerId") != self.container:
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
            self.end(out, SubscriptionEnded(self.container, _ended_reason(msg)))
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
        if err.container_id == self.container or _refuses(err, self.confirmed, ("tail", "since")):
            self.end(out, err)
            return True
        return False


class StatsSubscription(ClientSubscription):
    """`subscribe_stats` of several containers; the last one ended ends it."""

    def __init__(self, containers: list[str], interval: int | None) -> None:
        super().__init__()
        self.containers = containers
        self.interval = interval
        self.confirmed = False

    def subscribe_messages(self) -> list[Message]:
        out: list[Message] = []
        for c in self.containers:
            msg: Message = {"type": "subscribe_stats", "containerId": c}
            if self.interval is not None:
                msg["interval"] = self.interval
            out.append(msg)
        return out

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_stats", "containerId": c} for c in self.containers]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        if msg.get("containerId") not in self.containers:
            return False
        kind = msg.get("type")
        if kind in ("stats", "subscribed_stats"):
            self.confirmed = True
        if kind == "stats":
            out.append(Deliver(self, StatsSample.parse(msg)))
            return False
        if kind == "subscription_ended" and msg.get("subscription", "stats") == "stats":
            # the others go on; the last one gone ends the iterator
            container = str(msg.get("containerId"))
            self.containers = [c for c in self.containers if c != container]
            if not self.containers:
                self.end(out, SubscriptionEnded(container, _ended_reason(msg)))
            return False
        return kind in ("subscribed_stats", "unsubscribed_stats")

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        if err.container_id in self.containers or _refuses(err, self.confirmed, ("interval",)):
            self.end(out, err)
            return True
        return False


class EventsSubscription(ClientSubscription):
    """Docker events and system logs of `/ws/logs`, optionally narrowed by `subscribe`."""

    def __init__(self, filters: Mapping[str, list[str]] | None) -> None:
        super().__init__()
        self.filters = {k: list(v) for k, v in (filters or {}).items()}
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

    def __init__(self, interval: int | None) -> None:
        super().__init__()
        self.interval = interval

    def subscribe_messages(self) -> list[Message]:
        msg: Message = {"type": "subscribe"}
        if self.interval is not None:
            msg["interval"] = self.interval
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe"}]

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if kind == "metrics":
            out.append(Deliver(self, MetricsSample.parse(msg)))
            return True
        return kind in ("subscribed", "unsubscribed")
