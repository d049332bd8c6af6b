"""One gateway connection of the client as plain synchronous code: no sockets, no event loop.

`ClientConnection` is one gateway connection across reconnects (welcome, auth,
heartbeat replies, close codes, backoff, token refresh, resubscribing), the mirror of
the server's `openpanel_ws.connection.Connection`; `ClientSubscription` is what it asks
of each consumer. The rules it applies (backoff, close codes, refresh timing) are in
`openpanel_ws.client.policy`, the actions it returns in `openpanel_ws.client.actions`,
the consumers (and the log cursor that makes a resumed subscription gap-free and
duplicate-free) in `openpanel_ws.client.subscriptions`. The asyncio shell
(`openpanel_ws.client.link`) only moves bytes and runs timers; docs/protocol.md
"Python client" has the rules.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, auto

import orjson

from openpanel_ws.client.actions import (
    Action,
    AuthAccepted,
    Disconnect,
    FetchToken,
    Finish,
    Retry,
    Shutdown,
    Status,
    UnhandledError,
)
from openpanel_ws.client.messages import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    ConnectionFailed,
    ServerError,
    error_from_message,
)
from openpanel_ws.client.outbox import Outbox, Outgoing
from openpanel_ws.client.policy import (
    REFRESH_MARGIN,
    BackoffPolicy,
    refresh_delay,
    should_reconnect,
    token_expiry,
)
from openpanel_ws.protocol import (
    DEFAULT_RATE_LIMITS,
    CloseCode,
    Message,
    parse_timestamp,
    pong_message,
)
from openpanel_ws.ratelimit import RateLimit

__all__ = [
    "BackoffPolicy",
    "ClientConnection",
    "ClientSubscription",
    "ConnectionConfig",
    "ConnectionState",
]


# --- one gateway connection -------------------------------------------------------------


class ClientSubscription:
    """One consumer of a gateway connection: what it (re)sends once authenticated and the
    messages it takes. The kinds live in `openpanel_ws.client.subscriptions` and
    `openpanel_ws.client.terminal`."""

    def __init__(self) -> None:
        self.ended = False

    def on_open(self, server_ns: int) -> list[Outgoing]:
        """The connection is authenticated (`server_ns`: now on the server's clock)."""
        return list(self.subscribe_messages())

    def subscribe_messages(self) -> list[Message]:
        return []

    def unsubscribe_messages(self) -> list[Message]:
        return []

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        """True when the message was this subscription's alone."""
        return False

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        return False

    def on_disconnect(self, why: str, code: int | None, now: float, out: list[Action]) -> None:
        """The connection was lost and will be re-established."""

    def next_deadline(self) -> float | None:
        return None

    def tick(self, now: float, out: list[Action]) -> None:
        """The clock reached `next_deadline`."""

    def fail(self, exc: ClientError, out: list[Action]) -> None:
        self.end(out, exc)

    def end(self, out: list[Action], error: ClientError | None = None) -> None:
        if not self.ended:
            self.ended = True
            out.append(Finish(self, error))


class ConnectionState(Enum):
    IDLE = auto()  # no socket: before the first attempt or between two
    AWAITING_WELCOME = auto()
    AUTHENTICATING = auto()
    OPEN = auto()
    CLOSED = auto()  # final: closed by the user, failed, or gave up


@dataclass(frozen=True)
class ConnectionConfig:
    url: str
    rate_limit: RateLimit = DEFAULT_RATE_LIMITS["containers"]
    backoff: BackoffPolicy = BackoffPolicy()
    reconnect: bool = True
    # Without it, a server that cannot be reached on the first attempt is an error.
    wait_for_server: bool = True
    connect_timeout: float = 15.0
    idle_timeout: float | None = None
    refresh_margin: float = REFRESH_MARGIN


class ClientConnection:
    """The client side of one gateway, across reconnects: the mirror of the server's
    `openpanel_ws.connection.Connection`.

    welcome -> `auth` -> authenticated -> subscriptions sent again; pings answered;
    closes sorted into final and transient; backoff between attempts; the outbox paced
    by the mirror of the server's bucket; token refresh before `exp`. The asyncio shell
    feeds it what the socket did (`socket_opened`, `receive_text`, `receive_close`, ...)
    and the clock (`tick`), carries out the actions returned, and sends what
    `next_message` hands out. `now` is a monotonic clock; `wall_clock` gives unix
    nanoseconds (server time is estimated from the welcome's timestamp).
    """

    def __init__(self, config: ConnectionConfig, *, wall_clock: Callable[[], int] = time.time_ns,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        self.state = ConnectionState.IDLE
        self.subscriptions: list[ClientSubscription] = []
        self.ever_connected = False
        self.user_id: str | None = None
        self.token: str | None = None
        # server clock minus ours in seconds, from the welcome's timestamp (0 until then)
        self.server_offset = 0.0
        self.backoff = config.backoff.backoff(rand)
        self._wall = wall_clock
        self._outbox: Outbox | None = None

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    def server_ns(self) -> int:
        return self._wall() + int(self.server_offset * 1e9)

    # --- subscriptions and sending ------------------------------------------------------

    def add(self, sub: ClientSubscription) -> None:
        self.subscriptions.append(sub)
        if self.is_open:
            for item in sub.on_open(self.server_ns()):
                self.send(item)

    def remove(self, sub: ClientSubscription) -> bool:
        """Forget `sub`; True when none is left (the link can be closed)."""
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        if not self.subscriptions:
            return True
        if self.is_open:
            # Keep what another consumer (same kind, same container on the same host)
            # still uses.
            still = {(m["type"], m.get("containerId"), m.get("host"))
                     for s in self.subscriptions for m in s.unsubscribe_messages()}
            for msg in sub.unsubscribe_messages():
                if (msg["type"], msg.get("containerId"), msg.get("host")) not in still:
                    self.send(msg)
        return False

    def send(self, item: Outgoing) -> None:
        """Queue a message; dropped while there is no authenticated (or authenticating) socket."""
        if self._outbox is not None:
            self._outbox.push(item)

    def pending(self) -> int:
        return len(self._outbox) if self._outbox is not None else 0

    def send_all(self, items: Iterable[Outgoing]) -> None:
        for item in items:
            self.send(item)

    def next_message(self, now: float) -> tuple[Message | None, float]:
        """(message to send now, 0) or (None, seconds to wait; inf when nothing waits)."""
        if self._outbox is None:
            return None, float("inf")
        return self._outbox.pop(now)

    # --- the socket -------------------------------------------------------------------

    def socket_opened(self) -> None:
        self.state = ConnectionState.AWAITING_WELCOME

    def receive_timeout(self) -> float | None:
        """How long to wait for the next message before giving this socket up."""
        return self.config.idle_timeout if self.is_open else self.config.connect_timeout

    def timed_out(self) -> list[Action]:
        return [Disconnect(f"no message from the server for {self.receive_timeout():g}s")]

    def receive_binary(self, now: float) -> list[Action]:
        return self.receive(None, now)

    def receive_text(self, text: str, now: float) -> list[Action]:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        return self.receive(value if isinstance(value, dict) else None, now)

    def receive(self, msg: Message | None, now: float) -> list[Action]:
        """A decoded message (None: not a JSON object, ignored where it can be)."""
        msg = msg or {}
        kind = msg.get("type")
        if self.state is ConnectionState.AWAITING_WELCOME:
            if kind != "connected":
                return [Disconnect(f"unexpected first message {kind!r}")]
            stamp = msg.get("timestamp")
            if isinstance(stamp, str | int | float):
                with contextlib.suppress(ValueError, TypeError):
                    self.server_offset = parse_timestamp(stamp) - self._wall() / 1e9
            self.state = ConnectionState.AUTHENTICATING
            return [FetchToken()]
        if self.state is ConnectionState.AUTHENTICATING:
            if kind == "authenticated":
                return self._authenticated(msg)
            if kind == "ping":
                self._pong()
            elif kind == "error":
                err = error_from_message(msg)
                if isinstance(err, AuthenticationError):
                    return self.fail(err)
                return [Disconnect(f"auth refused: {err}")]
            return []
        if self.state is not ConnectionState.OPEN:
            return []
        out: list[Action] = []
        if kind == "ping":
            self._pong()
        elif kind == "error":
            err = error_from_message(msg)
            if isinstance(err, AuthenticationError):
                return self.fail(err)
            if not any(sub.handle_error(err, out) for sub in list(self.subscriptions)):
                out.append(UnhandledError(err))
        elif kind:
            for sub in list(self.subscriptions):
                if sub.handle(msg, now, out):
                    break
        return out

    def receive_close(self, code: int | None, reason: str) -> list[Action]:
        """The server closed the socket (code None: it was lost, 1006)."""
        code = 1006 if code is None else code
        if code == CloseCode.AUTH_FAILED:
            return self.fail(AuthenticationError("AUTH_FAILED", reason or "Invalid token"))
        if not should_reconnect(code):
            return self.fail(ConnectionClosed(code, reason))
        return [Disconnect(f"connection closed (code {code}{': ' + reason if reason else ''})", code)]

    def send_auth(self, token: str, now: float) -> None:
        """The token asked for by `FetchToken`: `auth` is the first message out."""
        self.token = token
        self._outbox = Outbox(self.config.rate_limit, now)
        self._outbox.push({"type": "auth", "token": token})

    def _pong(self) -> None:
        if self._outbox is not None:
            self._outbox.push_free(pong_message())

    def _authenticated(self, msg: Message) -> list[Action]:
        self.state = ConnectionState.OPEN
        self.user_id = str(msg.get("userId", ""))
        self.backoff.reset()
        out: list[Action] = []
        if self.ever_connected:
            out.append(Status(f"{self.config.url}: reconnected"))
        self.ever_connected = True
        out.append(AuthAccepted(self.user_id))
        server_ns = self.server_ns()
        for sub in list(self.subscriptions):
            for item in sub.on_open(server_ns):
                self.send(item)
        return out

    # --- token refresh ----------------------------------------------------------------

    def refresh_delay(self) -> float | None:
        """Seconds until a fresh token should be asked for; None: the token has no `exp`."""
        exp = token_expiry(self.token) if self.token is not None else None
        if exp is None:
            return None
        return refresh_delay(exp, self.server_ns() / 1e9, self.config.refresh_margin)

    def refresh_token(self, fresh: str) -> bool:
        """A re-`auth` on the open connection; False when the source had nothing newer
        (the server then closes at `exp` and the reconnect asks the source again)."""
        if fresh == self.token:
            return False
        self.token = fresh
        self.send({"type": "auth", "token": fresh})
        return True

    # --- ends -------------------------------------------------------------------------

    def socket_closed(self) -> None:
        """The socket is being closed: nothing more is sent until the next one is
        authenticated (the terminal holds keystrokes meanwhile)."""
        if not self.closed:
            self.state = ConnectionState.IDLE
        self._outbox = None

    def connection_lost(self, why: str, code: int | None, now: float) -> list[Action]:
        """The socket is gone (after `Disconnect`, or it could not be opened): tell the
        subscriptions, then `Retry` after a backoff delay or give up."""
        if self.closed:
            return []
        self.socket_closed()
        out: list[Action] = []
        for sub in list(self.subscriptions):
            sub.on_disconnect(why, code, now, out)
        if self.subscriptions and all(sub.ended for sub in self.subscriptions):
            # nothing left to reconnect for (a terminal that cannot resume)
            self.state = ConnectionState.CLOSED
            return [*out, Shutdown()]
        if not self.config.reconnect or (not self.ever_connected and not self.config.wait_for_server):
            return out + self.fail(ConnectionFailed(f"cannot connect to {self.config.url}: {why}"))
        delay = self.backoff.next_delay()
        if delay is None:
            return out + self.fail(ConnectionFailed(
                f"{self.config.url}: gave up after {self.backoff.attempts} attempts ({why})"))
        return [*out, Status(f"{self.config.url}: {why}; reconnecting in {delay:.1f}s"), Retry(delay)]

    def fail(self, exc: ClientError) -> list[Action]:
        """Final: every subscription ends with `exc`; no reconnect."""
        self.state = ConnectionState.CLOSED
        self._outbox = None
        out: list[Action] = []
        for sub in list(self.subscriptions):
            sub.fail(exc, out)
        out.append(Shutdown())
        return out

    def close(self) -> list[Action]:
        """Closed by the user: every subscription ends quietly."""
        self.state = ConnectionState.CLOSED
        self._outbox = None
        out: list[Action] = []
        for sub in self.subscriptions:
            sub.end(out)
        return out

    # --- clock ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for sub in self.subscriptions if (d := sub.next_deadline()) is not None]
        return min(deadlines, default=None)

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for sub in list(self.subscriptions):
            sub.tick(now, out)
        return out
