"""Pieces shared by the browser tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# Records every WebSocket a page creates and how it closed, without touching the
# code under test (installed before any page script runs).
WS_RECORDER = """
(() => {
  const Native = window.WebSocket
  window.__sockets = []
  window.WebSocket = class extends Native {
    constructor (...args) {
      super(...args)
      const rec = { url: String(args[0]), opened: false, close: null }
      window.__sockets.push(rec)
      this.addEventListener('open', () => { rec.opened = true })
      this.addEventListener('close', (e) => {
        rec.close = { code: e.code, reason: e.reason, at: Date.now() }
      })
    }
  }
})()
"""


async def open_page(page: Any, url: str, record_sockets: bool = True) -> None:
    """Load a real page at `url` (the gateway's /healthz for a same-origin page, or
    `page_server` for another origin): Chromium's local-network-access checks treat a
    page the browser made up itself as public and refuse its loopback connections."""
    if record_sockets:
        await page.add_init_script(WS_RECORDER)
    await page.goto(url)


async def sockets(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.__sockets")
    return result


NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
MAX_RELOADS = 3


def reload_on_network_change(pg: Any) -> list[str]:
    """Chromium fails every request in flight when the host's network interfaces change,
    loopback included, and Docker adds and removes a veth pair for every container that
    starts or stops: in a parallel run, other workers' tests do that all the time. A page
    whose own scripts failed that way never boots, so it is loaded again, as a person
    would press reload (at most MAX_RELOADS times a test). Only that error, only for the
    page's document, scripts, styles and fetches (the container list); every assertion stays
    as it is. Every failed request is printed with a failing test's output. Returns the list
    of what was reloaded (printed with a failing test's output)."""
    reloads: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        with contextlib.suppress(Exception):  # the page may be closing; the test then says why
            await pg.reload()

    def on_failed(request: Any) -> None:
        print(f"request failed: {request.resource_type} {request.url}: {request.failure}")
        if (request.failure == NETWORK_CHANGED and len(reloads) < MAX_RELOADS
                and request.resource_type in {"document", "script", "stylesheet", "fetch", "xhr"}):
            reloads.append(request.url)
            print(f"{NETWORK_CHANGED} on {request.url}: reloading the page")
            task = asyncio.ensure_future(reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    pg.on("requestfailed", on_failed)
    return reloads
