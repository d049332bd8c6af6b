"""The gateways' plain parts import without aiohttp (their packages import nothing)."""

from __future__ import annotations

import subprocess
import sys

PLAIN = [
    "openpanel_ws.engine.eventdata",
    "openpanel_ws.gateways.hold",
    "openpanel_ws.gateways.containers.requests",
    "openpanel_ws.gateways.logs.fanout",
    "openpanel_ws.gateways.logs.filters",
    "openpanel_ws.gateways.logs.event_text",
    "openpanel_ws.gateways.logs.messages",
    "openpanel_ws.gateways.terminal.messages",
    "openpanel_ws.gateways.terminal.output",
    "openpanel_ws.gateways.terminal.lifecycle",
    "openpanel_ws.gateways.terminal.ring",
    "openpanel_ws.gateways.terminal.registry",
]

BLOCK_AIOHTTP = """
import importlib, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp" or name.startswith("aiohttp."):
            raise ImportError("aiohttp is blocked")
        return None

sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
"""


def test_plain_gateway_modules_import_without_aiohttp() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCK_AIOHTTP, *PLAIN],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_packages_still_give_their_gateway() -> None:
    from openpanel_ws.gateways.containers import ContainersGateway
    from openpanel_ws.gateways.logs import LogsGateway
    from openpanel_ws.gateways.terminal import TerminalGateway

    assert [g.name for g in (ContainersGateway, LogsGateway, TerminalGateway)] == [
        "containers", "logs", "terminal"]
