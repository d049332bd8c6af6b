"""The connection lifecycle shared by the four gateways, as a sans-I/O state machine.

Feed it what arrived (`receive_text`, `receive_binary`, `receive_pong_frame`,
`receive_ping_frame`, `close`) and the clock (`tick`); it returns the actions to
perform. It never touches a socket, so every lifecycle rule of docs/protocol.md (auth,
AUTH_REQUIRED, rate limits, flooding, heartbeat, token expiry) is tested with plain
function calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from openpanel_ws import protocol
from openpanel_ws.auth import AuthError, Principal
from openpanel_ws.protocol import CloseCode, ErrorCode, Message, ProtocolError
from openpanel_ws.ratelimit import FloodDetector, RateLimit, TokenBucket

__all__ = [
    "Action",
    "Authenticated",
    "Close",
    "Connection",
    "Dispatch",
    "LifecycleConfig",
    "PingFrame",
    "Send",
    "State",
]


class State(Enum):
    AWAITING_AUTH = auto()
    OPEN = auto()
    CLOSED = auto()


# --- actions the I/O layer carries out ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    message: Message


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class PingFrame:
    """Send a protocol-level ping frame (browsers answer it by themselves)."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    first: bool  # False for a re-auth (token refresh) on an open connection


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A validated-envelope gateway message for the gateway to handle."""

    message: Message


Action = Send | Close | PingFrame | Authenticated | Dispatch


@dataclass(frozen=True)
class LifecycleConfig:
    rate_limit: RateLimit
    auth_timeout: float = 30.0
    heartbeat_interval: float = 30.0
    flood_threshold: int = 50
    flood_window: float = 10.0
    # A token's `exp` holds for the whole session, plus this leeway (docs/protocol.md
    # "Token expiry").
    jwt_leeway: float = 30.0


class Connection:
    __slots__ = ("_auth_deadline", "_awaiting_pong", "_bucket", "_config", "_expiry", "_flood",
                 "_next_ping", "_verify", "_wall", "client_id", "principal", "state")

    def __init__(
        self,
        client_id: str,
        config: LifecycleConfig,
        verify_token: Callable[[Any], Principal],
        now: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.state = State.AWAITING_AUTH
        self.principal: Principal | None = None
        self._config = config
        self._verify = verify_token
        self._bucket = TokenBucket(config.rate_limit, now)
        self._flood = FloodDetector(config.flood_threshold, config.flood_window)
        self._auth_deadline = now + config.auth_timeout
        self._wall = wall_clock
        # When the current token (plus leeway) expires, on the `now` clock; None: never.
        self._expiry: float | None = None
        self._next_ping = now + config.heartbeat_interval
        # True while a server ping is outstanding: sent, and since then neither pong
        # (JSON or frame) nor any other message came (docs/protocol.md, "Heartbeat").
        self._awaiting_pong = False

    # --- clock ----------------------------------------------------------------------

    def next_deadline(self) -> float:
        if self.state is State.AWAITING_AUTH:
            return min(self._auth_deadline, self._next_ping)
        if self._expiry is not None:
            return min(self._expiry, self._next_ping)
        return self._next_ping

    def tick(self, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        if self.state is State.AWAITING_AUTH and now >= self._auth_deadline:
            return self._close_auth(ErrorCode.AUTH_TIMEOUT, protocol.AUTH_TIMEOUT_MESSAGE)
        if self.state is State.OPEN and self._expiry is not None and now >= self._expiry:
            return self._close_auth(ErrorCode.AUTH_FAILED, protocol.EXPIRED_TOKEN_MESSAGE)
        if now >= self._next_ping:
            if self._awaiting_pong:
                self.state = State.CLOSED
                return [Close(CloseCode.HEARTBEAT_TIMEOUT, protocol.HEARTBEAT_TIMEOUT_REASON)]
            self._awaiting_pong = True
            self._next_ping = now + self._config.heartbeat_interval
            # JSON ping for clients that answer it; a ping frame for browsers, which
            # answer only those (and never the JSON one) by themselves.
            return [Send(protocol.ping_message()), PingFrame()]
        return []

    # --- input ----------------------------------------------------------------------

    def close(self) -> None:
        """The socket is gone (either side closed it): every later input and tick is a
        no-op, so nothing is sent or dispatched for this connection again."""
        self.state = State.CLOSED

    def receive_pong_frame(self) -> None:
        """A WebSocket-level pong answers the heartbeat too."""
        self._awaiting_pong = False

    def receive_ping_frame(self) -> None:
        """A client's own ping frame shows it is alive (the I/O layer answers it)."""
        self._awaiting_pong = False

    def receive_binary(self, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        self._awaiting_pong = False  # any message proves the client alive
        if not self._bucket.try_take(now):
            return self._reject_rate(now)
        return [Send(protocol.error_message(
            ErrorCode.INVALID_MESSAGE, protocol.BINARY_FRAME_MESSAGE))]

    def receive_text(self, text: str, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        self._awaiting_pong = False  # any message, even an invalid one, proves the client alive
        try:
            message = protocol.decode(text)
        except ProtocolError as exc:
            if not self._bucket.try_take(now):
                return self._reject_rate(now)
            return [Send(exc.to_message())]
        kind = message["type"]
        if kind == "pong":
            # Heartbeat replies never count against the limit.
            return []
        if not self._bucket.try_take(now):
            return self._reject_rate(now)
        if kind == "auth":
            return self._authenticate(message, now)
        if self.state is State.AWAITING_AUTH:
            return [Send(protocol.error_message(ErrorCode.AUTH_REQUIRED,
                                                 protocol.AUTH_REQUIRED_MESSAGE))]
        if kind == "ping":
            return [Send(protocol.pong_message())]
        return [Dispatch(message)]

    # --- internals ------------------------------------------------------------------

    def _authenticate(self, message: Message, now: float) -> list[Action]:
        token = message.get("token")
        if not isinstance(token, str):
            # Malformed auth is invalid input, not a failed login: nothing changes.
            return [Send(protocol.error_message(
                ErrorCode.INVALID_MESSAGE, "Field 'token' must be a string", field="token"))]
        try:
            principal = self._verify(token)
        except AuthError as exc:
            return self._close_auth(ErrorCode.AUTH_FAILED, str(exc))
        first = self.state is State.AWAITING_AUTH
        if not first and self.principal is not None and principal.user_id != self.principal.user_id:
            # A re-auth refreshes the token of the same user; it never switches users.
            return self._close_auth(ErrorCode.AUTH_FAILED, protocol.SUBJECT_MISMATCH_MESSAGE)
        self.state = State.OPEN
        self.principal = principal
        self._expiry = None
        if principal.expires_at is not None:
            left = principal.expires_at + self._config.jwt_leeway - self._wall()
            self._expiry = now + left
        return [
            Send(protocol.authenticated_message(self.client_id, principal.user_id)),
            Authenticated(principal, first),
        ]

    def _close_auth(self, code: ErrorCode, text: str) -> list[Action]:
        self.state = State.CLOSED
        return [
            Send(protocol.error_message(code, text)),
            Close(CloseCode.AUTH_FAILED, text),
        ]

    def _reject_rate(self, now: float) -> list[Action]:
        if self._flood.record_rejection(now):
            self.state = State.CLOSED
            return [Close(CloseCode.POLICY_VIOLATION, protocol.FLOODING_REASON)]
        return [Send(protocol.error_message(ErrorCode.RATE_LIMIT, protocol.RATE_LIMIT_MESSAGE))]
