"""The gateway packages import lazily (their plain parts import without aiohttp:
tests/unit/test_sans_io_imports.py), and still give their gateways."""

from __future__ import annotations


def test_the_packages_still_give_their_gateway() -> None:
    from openpanel_ws.gateways.containers import ContainersGateway
    from openpanel_ws.gateways.logs import LogsGateway
    from openpanel_ws.gateways.terminal import TerminalGateway

    assert [g.name for g in (ContainersGateway, LogsGateway, TerminalGateway)] == [
        "containers", "logs", "terminal"]
