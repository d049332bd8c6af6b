"""`/ws/logs`: Docker events and host logs."""

from __future__ import annotations

from openpanel_ws.gateways.base import Gateway


class LogsGateway(Gateway):
    name = "logs"
