"""What every gateway is: a name, its messages, and hooks into the shared lifecycle.

The lifecycle (welcome, auth, rate limit, heartbeat, errors) lives in
`openpanel_ws.connection` (the rules) and `openpanel_ws.endpoint` (the connection object
that carries them out); a gateway only sees authenticated sessions and the messages that
belong to it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from openpanel_ws import protocol
from openpanel_ws.auth import Principal
from openpanel_ws.outbound import ClientWriter, text_frame, text_frame_once
from openpanel_ws.protocol import ErrorCode, Message

if TYPE_CHECKING:
    from openpanel_ws.services import Services

__all__ = [
    "Gateway",
    "Handler",
    "Session",
    "StateT",
]

log = logging.getLogger(__name__)

# What a gateway keeps per connection (its subscriptions, its terminal binding, ...).
StateT = TypeVar("StateT")


class Session(Generic[StateT]):
    """One authenticated client as a gateway sees it."""

    __slots__ = ("__weakref__", "client_id", "host", "principal", "remote", "state", "writer")

    def __init__(self, client_id: str, writer: ClientWriter, remote: str = "",
                 host: str | None = None) -> None:
        self.client_id = client_id
        self.writer = writer
        self.remote = remote
        # The host of a /hosts/{id}/ws/* route, as the path named it (None: a plain /ws/*
        # route, where requests may name any host; docs/protocol.md "Addressing").
        self.host = host
        self.principal: Principal | None = None
        # Per-connection state owned by the gateway; made on first use, so an idle
        # connection costs nothing here.
        self.state: StateT | None = None

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "gateway code runs only after auth"
        return self.principal

    @property
    def closed(self) -> bool:
        """No more frames will be sent (the connection is closing or closed)."""
        return self.writer.closing

    def send(self, message: Mapping[str, Any]) -> bool:
        return self.writer.send(text_frame(protocol.encode(message)))

    def send_frame(self, frame: bytes) -> bool:
        """Send a complete frame built by `outbound.text_frame` (once for all recipients)."""
        return self.writer.send(frame)

    def send_latest(self, key: str, payload: bytes) -> None:
        """Latest-value (conflated by `key`) JSON payload: stats, metrics."""
        self.writer.send_latest(key, text_frame_once(payload))

    def discard_latest(self, key: str) -> None:
        """Drop an unsent latest-value frame of `key` and its place (after unsubscribe)."""
        self.writer.discard_latest(key)

    @property
    def backlog(self) -> float:
        """How full the send queue is: 0.0 empty, 1.0 at the slow-consumer bound."""
        return self.writer.backlog

    async def wait_backlog_below(self, fraction: float) -> None:
        """Backpressure for a producer that can pause its source (terminal output)."""
        await self.writer.wait_backlog_below(fraction)

    def error(self, code: ErrorCode, message: str, **context: Any) -> None:
        self.send(protocol.error_message(code, message, **context))

    def close(self, code: int, reason: str) -> None:
        self.writer.close(code, reason)


Handler = Callable[[Session[StateT], Message], Awaitable[None]]


class Gateway(Generic[StateT]):
    """Base class: subclasses set `name` and register handlers in `handlers()`.

    `StateT` is the type of `Session.state` on this gateway's connections."""

    name: ClassVar[str]

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self._handlers: dict[str, Handler[StateT]] = self.handlers()

    @property
    def path(self) -> str:
        return f"/ws/{self.name}"

    @property
    def host_path(self) -> str:
        """The route of this gateway scoped to one host (docs/protocol.md "Addressing")."""
        return f"/hosts/{{host}}/ws/{self.name}"

    def handlers(self) -> dict[str, Handler[StateT]]:
        """Message type -> coroutine handling it."""
        return {}

    async def start(self) -> None:
        """Server start-up (before any client)."""

    async def stop(self) -> None:
        """Server shutdown: release every upstream."""

    async def on_authenticated(self, session: Session[StateT]) -> None:
        """First successful auth of a connection."""

    async def on_disconnect(self, session: Session[StateT]) -> None:
        """The connection is gone: release everything the session held."""

    async def on_principal_changed(self, session: Session[StateT]) -> None:
        """A re-auth (same user) replaced the session's claims: end what they no longer
        allow (`subscription_ended` / `terminal_closed` with reason `permission`)."""

    def lane(self, message: Message) -> str:
        """Messages of one lane are handled in order, lanes concurrently. Default: one
        lane per connection (strictly serial)."""
        return ""

    async def dispatch(self, session: Session[StateT], message: Message) -> None:
        kind = message["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            raise protocol.invalid(f"Unknown message type '{kind}' on {self.path}", "type")
        await handler(session, message)
