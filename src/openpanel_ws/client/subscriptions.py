"""What each kind of consumer asks of a gateway connection, and how it reads the answers.

Plain synchronous state machines, driven by `openpanel_ws.client.sansio.ClientConnection`:
a subscription says what to (re)send once the connection is authenticated, takes the
messages that are its own, and appends actions (`Deliver`, `Finish`, ...) for the asyncio
shell to carry out. Timers (the quiet spell that ends `logs` without -f, the terminal's
give-up while reattaching) are deadlines on the same injected clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from openpanel_ws.client.messages import (
    ClientError,
    ContainerNotFound,
    DockerEvent,
    InvalidMessage,
    LogLine,
    MetricsSample,
    PermissionDenied,
    ServerError,
    StatsSample,
    SubscriptionEnded,
    SystemLog,
    TerminalError,
    TerminalOutput,
)
from openpanel_ws.client.outbox import Input, Outgoing
from openpanel_ws.client.sansio import (
    Action,
    ClientSubscription,
    Deliver,
    Status,
    TerminalOpened,
    TerminalRefused,
)
from openpanel_ws.protocol import CloseCode, Message, parse_timestamp_nanos, rfc3339_from_nanos

__all__ = [
    "HELD_INPUT_LIMIT",
    "RESUME_TIMEOUT",
    "EventsSubscription",
    "LogCursor",
    "LogsSubscription",
    "MetricsSubscription",
    "StatsSubscription",
    "TerminalSubscription",
]

# How long a terminal tries to reattach after its connection was lost (the gateway's
# default grace period is 60 s; a session cannot outlive it).
RESUME_TIMEOUT: Final = 90.0
# Characters typed while a terminal is being reattached that are kept to send after it.
HELD_INPUT_LIMIT: Final = 65536


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


class TerminalSubscription(ClientSubscription):
    """One terminal: opened once, then reattached after a lost connection (docs/protocol.md
    "Terminal sessions") with the `seq` of the last output received, so nothing is lost
    or repeated; keystrokes typed meanwhile are held and sent after the resume."""

    def __init__(self, container: str, shell: str | None, cols: int | None, rows: int | None,
                 *, command: Sequence[str] | None = None, tty: bool = True,
                 stdin: bool = True, resume: bool = True) -> None:
        super().__init__()
        self.container = container
        self.shell = shell
        self.cols = cols
        self.rows = rows
        self.command = list(command) if command else None
        self.container_lost = False
        self.tty = tty
        self.stdin = stdin
        # The open was answered either way (TerminalOpened or TerminalRefused emitted).
        self.settled = False
        self.exit_code: int | None = None
        self.reason: str | None = None
        self._sent_open = False
        self.resume = resume
        self.session_id: str | None = None
        self.last_seq: int | None = None
        self.resuming = False
        self.resumes = 0
        # Typed while reattaching: sent right after the resume (bounded), and the last
        # size asked for, re-applied after a resume.
        self.held: list[Outgoing] = []
        self.held_chars = 0
        self.size: tuple[int, int] | None = None
        self.resume_timeout = RESUME_TIMEOUT
        self._give_up_at: float | None = None
        self._give_up_why = ""

    def hold(self, items: Sequence[Outgoing]) -> None:
        for item in items:
            size = len(item.data) if isinstance(item, Input) else 1
            if self.held_chars + size > HELD_INPUT_LIMIT:
                return  # beyond the bound typed input is dropped while disconnected
            self.held.append(item)
            self.held_chars += size

    def resize_message(self) -> Message:
        assert self.size is not None
        return {"type": "resize", "cols": self.size[0], "rows": self.size[1]}

    def resume_items(self) -> list[Outgoing]:
        """After the resume request: the size, then what was typed meanwhile."""
        items: list[Outgoing] = []
        if self.size is not None:
            items.append(self.resize_message())
        items.extend(self.held)
        self.held, self.held_chars = [], 0
        return items

    def on_open(self, server_ns: int) -> list[Outgoing]:
        items: list[Outgoing] = list(self.subscribe_messages())
        if self.resuming:
            items.extend(self.resume_items())
        return items

    def subscribe_messages(self) -> list[Message]:
        if self._sent_open:
            if self.resuming and self.session_id is not None and not self.ended:
                msg: Message = {"type": "open_terminal", "containerId": self.container,
                                "sessionId": self.session_id}
                if self.last_seq is not None:
                    msg["lastSeq"] = self.last_seq
                return [msg]
            return []
        self._sent_open = True
        msg = {"type": "open_terminal", "containerId": self.container}
        if self.shell:
            msg["shell"] = self.shell
        if self.cols and self.rows:
            msg["cols"], msg["rows"] = self.cols, self.rows
        # Terminal extensions (docs/protocol.md): sent only when not the default.
        if self.command:
            msg["command"] = self.command
        if not self.tty:
            msg["tty"] = False
        if not self.stdin:
            msg["stdin"] = False
        return [msg]

    def fail(self, exc: ClientError, out: list[Action]) -> None:
        if not self.settled:
            self.settled = True
            out.append(TerminalRefused(self, exc))
        self.end(out, exc)

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if kind == "terminal_opened":
            if not self.settled:
                self.settled = True
                self.session_id = str(msg.get("sessionId", ""))
                out.append(TerminalOpened(self, self.session_id))
            elif self.resuming and msg.get("resumed") is True:
                self.resuming = False
                self.resumes += 1
                self._give_up_at = None
                start = msg.get("seq")
                lost = (start - self.last_seq if isinstance(start, int)
                        and self.last_seq is not None and start > self.last_seq else 0)
                out.append(Status("terminal session resumed" +
                                  (f" ({lost} bytes of output were lost)" if lost else "")))
        elif kind == "terminal_output":
            seq = msg.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            stream = msg.get("stream")
            out.append(Deliver(self, TerminalOutput(str(msg.get("data", "")),
                                                    stream if isinstance(stream, str) else None)))
        elif kind == "terminal_closed":
            code = msg.get("exitCode")
            self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            self.reason = str(msg.get("reason", ""))
            self.container_lost = msg.get("containerLost") is True
            if not self.settled:
                self.settled = True
                out.append(TerminalRefused(self, TerminalError(f"terminal closed: {self.reason}")))
            self.end(out)
        elif kind == "terminal_error":
            text = str(msg.get("message", "terminal error"))
            if self.resuming:
                self.fail(TerminalError(
                    f"the terminal session did not survive the reconnect ({text})"), out)
                return True
            if text.lower().startswith("container not found"):
                text = f"container '{self.container}' not found" + text[len("container not found"):]
            self.fail(TerminalError(text), out)
        else:
            return False
        return True

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        # Before the terminal opened any error is its answer; afterwards only a refusal
        # ends it (a rejected resize must not kill the session: it is just reported).
        if not self.settled or self.resuming or isinstance(err, PermissionDenied | ContainerNotFound):
            self.fail(TerminalError(f"the terminal session did not survive the reconnect ({err})")
                      if self.resuming else err, out)
            return True
        return False

    def on_disconnect(self, why: str, code: int | None, now: float, out: list[Action]) -> None:
        if code == CloseCode.GOING_AWAY and self.resume and self.settled:
            # A gateway that shuts down (not a reload, 1012) ends its terminals.
            self.fail(TerminalError(
                f"the terminal session did not survive: the gateway shut down ({why})"), out)
            return
        if self.resume and self.settled and self.session_id and not self.ended:
            if not self.resuming:
                out.append(Status(f"connection to the gateway lost ({why}); reattaching the terminal"))
                self._give_up_at = now + self.resume_timeout
                self._give_up_why = why
            self.resuming = True
            return
        self.fail(TerminalError(f"connection to the gateway lost ({why})"), out)

    def next_deadline(self) -> float | None:
        return None if self.ended else self._give_up_at

    def tick(self, now: float, out: list[Action]) -> None:
        if self._give_up_at is not None and now >= self._give_up_at:
            self._give_up_at = None
            self.fail(TerminalError(
                "the terminal session did not survive the reconnect (gateway "
                f"unreachable for {self.resume_timeout:g}s: {self._give_up_why})"), out)

    def end(self, out: list[Action], error: ClientError | None = None) -> None:
        self._give_up_at = None
        super().end(out, error)
