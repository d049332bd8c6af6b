"""Python client of the OpenPanel WebSocket API 1.3.0 (asyncio, aiohttp).

    async with OpenPanelClient("ws://127.0.0.1:3001", token) as client:
        async for line in client.logs("web", tail=100):
            print(line.data)

Reconnects with exponential backoff and full jitter, re-authenticates, restores
subscriptions and resumes logs with no gap and no duplicate; see docs/client.md.

The names below are imported when first used (PEP 562), so the sans-I/O modules
(`openpanel_ws.client.sansio` and its pure siblings) import without aiohttp; only
the asyncio client (`openpanel_ws.client.aio`, `openpanel_ws.client.link`) needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpanel_ws.backoff import (
        Backoff,
    )
    from openpanel_ws.client.aio import (
        DEFAULT_URL,
        OpenPanelClient,
        TerminalSession,
        TokenSource,
        gateway_url,
    )
    from openpanel_ws.client.messages import (
        AuthenticationError,
        ClientError,
        ConnectionClosed,
        ConnectionFailed,
        ContainerNotFound,
        DockerEvent,
        DockerUnavailable,
        Event,
        HostStatus,
        InvalidMessage,
        LogLine,
        MetricsSample,
        PermissionDenied,
        RateLimited,
        ServerError,
        StatsSample,
        SubscriptionEnded,
        SystemLog,
        TerminalError,
        TerminalOutput,
    )
    from openpanel_ws.client.outbox import (
        Outbox,
    )
    from openpanel_ws.client.policy import (
        BackoffPolicy,
    )
    from openpanel_ws.client.sansio import (
        ClientConnection,
    )
    from openpanel_ws.client.subscriptions import (
        LogCursor,
    )

__all__ = [
    "DEFAULT_URL",
    "AuthenticationError",
    "Backoff",
    "BackoffPolicy",
    "ClientConnection",
    "ClientError",
    "ConnectionClosed",
    "ConnectionFailed",
    "ContainerNotFound",
    "DockerEvent",
    "DockerUnavailable",
    "Event",
    "HostStatus",
    "InvalidMessage",
    "LogCursor",
    "LogLine",
    "MetricsSample",
    "OpenPanelClient",
    "Outbox",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "StatsSample",
    "SubscriptionEnded",
    "SystemLog",
    "TerminalError",
    "TerminalOutput",
    "TerminalSession",
    "TokenSource",
    "gateway_url",
]

# Each public name and the module that defines it.
_HOMES: dict[str, str] = {
    "AuthenticationError": "openpanel_ws.client.messages",
    "Backoff": "openpanel_ws.backoff",
    "BackoffPolicy": "openpanel_ws.client.policy",
    "ClientConnection": "openpanel_ws.client.sansio",
    "ClientError": "openpanel_ws.client.messages",
    "ConnectionClosed": "openpanel_ws.client.messages",
    "ConnectionFailed": "openpanel_ws.client.messages",
    "ContainerNotFound": "openpanel_ws.client.messages",
    "DEFAULT_URL": "openpanel_ws.client.aio",
    "DockerEvent": "openpanel_ws.client.messages",
    "DockerUnavailable": "openpanel_ws.client.messages",
    "Event": "openpanel_ws.client.messages",
    "HostStatus": "openpanel_ws.client.messages",
    "InvalidMessage": "openpanel_ws.client.messages",
    "LogCursor": "openpanel_ws.client.subscriptions",
    "LogLine": "openpanel_ws.client.messages",
    "MetricsSample": "openpanel_ws.client.messages",
    "OpenPanelClient": "openpanel_ws.client.aio",
    "Outbox": "openpanel_ws.client.outbox",
    "PermissionDenied": "openpanel_ws.client.messages",
    "RateLimited": "openpanel_ws.client.messages",
    "ServerError": "openpanel_ws.client.messages",
    "StatsSample": "openpanel_ws.client.messages",
    "SubscriptionEnded": "openpanel_ws.client.messages",
    "SystemLog": "openpanel_ws.client.messages",
    "TerminalError": "openpanel_ws.client.messages",
    "TerminalOutput": "openpanel_ws.client.messages",
    "TerminalSession": "openpanel_ws.client.aio",
    "TokenSource": "openpanel_ws.client.aio",
    "gateway_url": "openpanel_ws.client.aio",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
