"""What the client's sans-I/O core asks its shell to do: frozen values, no behaviour.

`ClientConnection` (`openpanel_ws.client.sansio`) and the subscriptions
(`openpanel_ws.client.subscriptions`) return these; the asyncio shell carries every one
of them out in one place (`Link.apply` in `openpanel_ws.client.link`). This module is a
leaf of the client: it imports only the client's value types (`client.messages`), so
the core and the subscriptions both import it and neither imports the other's users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from openpanel_ws.client.messages import ClientError, ServerError

__all__ = [
    "Action",
    "AuthAccepted",
    "Deliver",
    "Disconnect",
    "FetchToken",
    "Finish",
    "Retry",
    "Shutdown",
    "Status",
    "Subscription",
    "TerminalOpened",
    "TerminalRefused",
    "UnhandledError",
]


class Subscription(Protocol):
    """The subscription an action is about (every `ClientSubscription` is one): the shell
    finds the subscription's consumer by it."""

    ended: bool


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand `item` to the subscription's consumer."""

    subscription: Subscription
    item: object


@dataclass(frozen=True, slots=True)
class Finish:
    """The subscription is over: its iterator ends, raising `error` if there is one."""

    subscription: Subscription
    error: ClientError | None


@dataclass(frozen=True, slots=True)
class TerminalOpened:
    """The terminal's `open_terminal` was answered with this session."""

    subscription: Subscription
    session_id: str


@dataclass(frozen=True, slots=True)
class TerminalRefused:
    """The terminal's `open_terminal` will never succeed."""

    subscription: Subscription
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
    """The socket is authenticated (the shell may start refreshing the token)."""

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
