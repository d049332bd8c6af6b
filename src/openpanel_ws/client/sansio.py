"""The client's protocol logic as plain synchronous code: no sockets, no event loop.

`ClientConnection` is one gateway connection across reconnects (welcome, auth,
heartbeat replies, close codes, backoff, token refresh, resubscribing); with it the
backoff schedule, the close-code policy and the log cursor that makes a resumed
subscription gap-free and duplicate-free. The asyncio shell (`openpanel_ws.client.aio`)
only moves bytes and runs timers; docs/protocol.md "Python client" has the rules.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Final

import orjson

from openpanel_ws.client.messages import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    ConnectionFailed,
    ServerError,
    error_from_message,
)
from openpanel_ws.client.outbox import Outbox, Outgoing, split_input
from openpanel_ws.protocol import (
    DEFAULT_RATE_LIMITS,
    TERMINAL_MAX_SIZE,
    TERMINAL_MIN_SIZE,
    CloseCode,
    Message,
    parse_timestamp,
    pong_message,
)
from openpanel_ws.ratelimit import RateLimit

if TYPE_CHECKING:
    from openpanel_ws.client.subscriptions import TerminalSubscription

__all__ = [
    "FINAL_CLOSE_CODES",
    "REFRESH_MARGIN",
    "Action",
    "AuthAccepted",
    "Backoff",
    "BackoffPolicy",
    "ClientConnection",
    "ClientSubscription",
    "Deliver",
    "Disconnect",
    "FetchToken",
    "Finish",
    "LinkConfig",
    "LinkState",
    "Retry",
    "Shutdown",
    "Status",
    "TerminalOpened",
    "TerminalRefused",
    "UnhandledError",
    "refresh_delay",
    "should_reconnect",
    "token_expiry",
]

# --- token refresh --------------------------------------------------------------------

# Re-authenticate this long before the token's `exp`: the server ends a connection whose
# token expired (docs/protocol.md "Hostile clients"); the JS client uses the same margin.
REFRESH_MARGIN: Final[float] = 30.0


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (unix seconds), read without verifying it: the client only
    schedules its refresh from it; the server verifies. None when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


def refresh_delay(exp: float, now: float, margin: float = REFRESH_MARGIN) -> float:
    """Seconds to wait before asking for a fresh token; at least 1 s, so a source that
    keeps returning a token about to expire is not polled in a loop."""
    return max(exp - margin - now, 1.0)


# --- reconnect ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).

    `max_attempts` None means retry forever (the default, as the specification's
    "Reconexão" section recommends reconnecting; its example's limit of 5 is a choice).
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int | None = None


class Backoff:
    def __init__(self, policy: BackoffPolicy | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy or BackoffPolicy()
        self._rand = rand
        self.attempts = 0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None once attempts are exhausted."""
        p = self.policy
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return None
        ceiling = min(p.cap, p.base * float(1 << min(self.attempts, 62)))
        self.attempts += 1
        return float(self._rand()) * ceiling

    def reset(self) -> None:
        """After a successful (authenticated) connection, start over from `base`."""
        self.attempts = 0


# Closes after which reconnecting cannot help: a bad token, a policy refusal, or a
# message of ours the server cannot take. Everything else (1001 shutdown, 1006 lost,
# 1013 slow consumer, 4002 heartbeat, 1011 ...) is transient.
FINAL_CLOSE_CODES: Final = frozenset({
    CloseCode.AUTH_FAILED, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG,
})


def should_reconnect(close_code: int | None) -> bool:
    return close_code not in FINAL_CLOSE_CODES


# --- one gateway connection -------------------------------------------------------------


class ClientSubscription:
    """One consumer of a gateway connection: what it (re)sends once authenticated and the
    messages it takes. The kinds live in `openpanel_ws.client.subscriptions`."""

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


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand `item` to the subscription's consumer."""

    subscription: ClientSubscription
    item: object


@dataclass(frozen=True, slots=True)
class Finish:
    """The subscription is over: its iterator ends, raising `error` if there is one."""

    subscription: ClientSubscription
    error: ClientError | None


@dataclass(frozen=True, slots=True)
class TerminalOpened:
    subscription: ClientSubscription
    session_id: str


@dataclass(frozen=True, slots=True)
class TerminalRefused:
    """The terminal's `open_terminal` will never succeed."""

    subscription: ClientSubscription
    error: ClientError


@dataclass(frozen=True, slots=True)
class Status:
    """A line for the user (reconnecting, reattached, ...)."""

    text: str


@dataclass(frozen=True, slots=True)
class UnhandledError:
    """A server `error` no subscription claimed: reported, nothing ends."""

    error: ServerError


@dataclass(frozen=True, slots=True)
class FetchToken:
    """Obtain a token from the source, then call `send_auth`."""


@dataclass(frozen=True, slots=True)
class AuthAccepted:
    user_id: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """This socket is done; call `connection_lost` once it is closed."""

    why: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Final: close the socket and never reconnect."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Connect again after `delay` seconds."""

    delay: float


Action = (Deliver | Finish | TerminalOpened | TerminalRefused | Status | UnhandledError
          | FetchToken | AuthAccepted | Disconnect | Shutdown | Retry)


class LinkState(Enum):
    IDLE = auto()  # no socket: before the first attempt or between two
    AWAITING_WELCOME = auto()
    AUTHENTICATING = auto()
    OPEN = auto()
    CLOSED = auto()  # final: closed by the user, failed, or gave up


@dataclass(frozen=True)
class LinkConfig:
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
    `next_frame` hands out. `now` is a monotonic clock; `wall_clock` gives unix
    nanoseconds (server time is estimated from the welcome's timestamp).
    """

    def __init__(self, config: LinkConfig, *, wall_clock: Callable[[], int] = time.time_ns,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        self.state = LinkState.IDLE
        self.subscriptions: list[ClientSubscription] = []
        self.ever_connected = False
        self.user_id: str | None = None
        self.token: str | None = None
        # server clock minus ours in seconds, from the welcome's timestamp (0 until then)
        self.server_offset = 0.0
        self.backoff = Backoff(config.backoff, rand)
        self._wall = wall_clock
        self._outbox: Outbox | None = None

    @property
    def is_open(self) -> bool:
        return self.state is LinkState.OPEN

    @property
    def closed(self) -> bool:
        return self.state is LinkState.CLOSED

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
            # Keep what another consumer (same container, same kind) still uses.
            still = {(m["type"], m.get("containerId"))
                     for s in self.subscriptions for m in s.unsubscribe_messages()}
            for msg in sub.unsubscribe_messages():
                if (msg["type"], msg.get("containerId")) not in still:
                    self.send(msg)
        return False

    def send(self, item: Outgoing) -> None:
        """Queue a message; dropped while there is no authenticated (or authenticating) socket."""
        if self._outbox is not None:
            self._outbox.push(item)

    def pending(self) -> int:
        return len(self._outbox) if self._outbox is not None else 0

    def next_frame(self, now: float) -> tuple[Message | None, float]:
        """(message to send now, 0) or (None, seconds to wait; inf when nothing waits)."""
        if self._outbox is None:
            return None, float("inf")
        return self._outbox.pop(now)

    def terminal_write(self, sub: TerminalSubscription, data: str) -> None:
        """Keystrokes; held (bounded) while the terminal is being reattached."""
        if self._terminal_held(sub):
            sub.hold(split_input(data))
            return
        for item in split_input(data):
            self.send(item)

    def terminal_resize(self, sub: TerminalSubscription, cols: int, rows: int) -> None:
        def clamp(n: int) -> int:
            return max(TERMINAL_MIN_SIZE, min(TERMINAL_MAX_SIZE, n))  # the gateway's accepted range

        sub.size = (clamp(cols), clamp(rows))
        if self._terminal_held(sub):
            return  # applied after the resume
        self.send(sub.resize_message())

    def _terminal_held(self, sub: TerminalSubscription) -> bool:
        """Input and size wait while the terminal is reattached or the link is down."""
        return sub.resuming or not self.is_open

    # --- the socket -------------------------------------------------------------------

    def socket_opened(self) -> None:
        self.state = LinkState.AWAITING_WELCOME

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
        if self.state is LinkState.AWAITING_WELCOME:
            if kind != "connected":
                return [Disconnect(f"unexpected first message {kind!r}")]
            stamp = msg.get("timestamp")
            if isinstance(stamp, str | int | float):
                with contextlib.suppress(ValueError, TypeError):
                    self.server_offset = parse_timestamp(stamp) - self._wall() / 1e9
            self.state = LinkState.AUTHENTICATING
            return [FetchToken()]
        if self.state is LinkState.AUTHENTICATING:
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
        if self.state is not LinkState.OPEN:
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
        """The token asked for by `FetchToken`: `auth` is the first frame out."""
        self.token = token
        self._outbox = Outbox(self.config.rate_limit, now)
        self._outbox.push({"type": "auth", "token": token})

    def _pong(self) -> None:
        if self._outbox is not None:
            self._outbox.push_free(pong_message())

    def _authenticated(self, msg: Message) -> list[Action]:
        self.state = LinkState.OPEN
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
            self.state = LinkState.IDLE
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
            self.state = LinkState.CLOSED
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
        self.state = LinkState.CLOSED
        self._outbox = None
        out: list[Action] = []
        for sub in list(self.subscriptions):
            sub.fail(exc, out)
        out.append(Shutdown())
        return out

    def close(self) -> list[Action]:
        """Closed by the user: every subscription ends quietly."""
        self.state = LinkState.CLOSED
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
