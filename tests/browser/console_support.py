"""Helpers of the console browser tests (no tests here)."""

from __future__ import annotations

from typing import Any

import aiohttp
from multidict import CIMultiDict

from helpers import RunningServer
from openpanel_ws.server import CLIENTS_KEY


def drop_connections(server: RunningServer) -> int:
    """Close every WebSocket of the server the way a failing network looks to a client."""
    sessions = list(server.app[CLIENTS_KEY])
    for session in sessions:
        session.close(1011, "dropped by the test")
    return len(sessions)


async def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def api_containers(base: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{base}/api/containers", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()
