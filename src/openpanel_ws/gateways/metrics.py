"""`/ws/metrics`: Host CPU, memory, disk and network."""

from __future__ import annotations

from openpanel_ws.gateways.base import Gateway


class MetricsGateway(Gateway):
    name = "metrics"
