"""A real gateway on its own event-loop thread, for the synchronous Playwright tests."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

from helpers import RunningServer, start_server

from openpanel_ws.server import CLIENTS_KEY


class ThreadedServer:
    def __init__(self, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.thread.start()
        self.server: RunningServer = asyncio.run_coroutine_threadsafe(
            start_server(**overrides), self.loop).result(30)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def drop_terminal_connections(self) -> int:
        """Close every /ws/terminal connection as a failing network would look to a client."""

        async def drop() -> int:
            sessions = [s for s in list(self.server.app[CLIENTS_KEY])
                        if type(s.gateway_state).__name__ == "Terminal"]
            for session in sessions:
                session.close(1011, "dropped by the test")
            return len(sessions)

        return asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def api_containers(base: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, _, body = http_get(f"{base}/api/containers", headers)
    return status, json.loads(body)
