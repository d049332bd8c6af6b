"""Python client of the OpenPanel WebSocket API 1.3.0 (asyncio, aiohttp).

    async with OpenPanelClient("ws://127.0.0.1:3001", token) as client:
        async for line in client.logs("web", tail=100):
            print(line.data)

Reconnects with exponential backoff and full jitter, re-authenticates, restores
subscriptions and resumes logs with no gap and no duplicate; see docs/client.md.
"""

from openpanel_ws.client.aio import DEFAULT_URL, OpenPanelClient, TerminalSession, TokenSource, gateway_url
from openpanel_ws.client.messages import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    ConnectionFailed,
    ContainerNotFound,
    DockerEvent,
    DockerUnavailable,
    Event,
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
from openpanel_ws.client.outbox import Outbox
from openpanel_ws.client.sansio import Backoff, BackoffPolicy, ClientConnection
from openpanel_ws.client.subscriptions import LogCursor

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
