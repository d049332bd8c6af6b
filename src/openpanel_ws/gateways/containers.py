"""`/ws/containers`: Container logs and live stats."""

from __future__ import annotations

from openpanel_ws.gateways.base import Gateway


class ContainersGateway(Gateway):
    name = "containers"
