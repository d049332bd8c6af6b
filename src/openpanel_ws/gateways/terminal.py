"""`/ws/terminal`: An interactive shell in a container through Docker exec."""

from __future__ import annotations

from openpanel_ws.gateways.base import Gateway


class TerminalGateway(Gateway):
    name = "terminal"
