"""Pieces shared by the browser tests (no tests here)."""

from __future__ import annotations

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
