"""`/ws/logs`: Docker events and readable system log lines (the gateway: `gateway`).

The package imports nothing itself, so its plain synchronous parts (`fanout`,
`filters`, `event_text`, `messages`) import without aiohttp; `LogsGateway` is loaded
from `gateway` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpanel_ws.gateways.logs.gateway import LogsGateway

__all__ = ["LogsGateway"]


def __getattr__(name: str) -> Any:
    if name == "LogsGateway":
        from openpanel_ws.gateways.logs.gateway import LogsGateway

        return LogsGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
