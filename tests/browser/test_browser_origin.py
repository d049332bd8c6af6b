"""A page of another origin is refused (and the operator is told which setting to
change), then allowed once that origin is in OPENPANEL_WS_ALLOWED_ORIGINS."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pages import open_page

from helpers import RunningServer, make_token, scaled

CONNECT = """([url, token]) => new Promise((resolve) => {
  const ws = new WebSocket(url)
  const got = []
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }))
  ws.onmessage = (e) => {
    got.push(JSON.parse(e.data).type)
    if (got.includes('authenticated')) { ws.close(); resolve({ opened: true, got }) }
  }
  ws.onclose = (e) => resolve({ opened: got.length > 0, code: e.code, got })
})"""


async def test_a_cross_origin_page_is_refused_then_allowed_by_the_setting(
        make_server: Any, page_server: str, page: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openpanel_ws.server")
    refusing: RunningServer = await make_server(allowed_origins=[])
    await open_page(page, page_server + "/panel")
    result = await page.evaluate(CONNECT, [f"ws://127.0.0.1:{refusing.port}/ws/metrics", make_token()])
    assert result["opened"] is False and result["code"] == 1006, result
    logged = [r.getMessage() for r in caplog.records if page_server in r.getMessage()]
    assert len(logged) == 1 and "OPENPANEL_WS_ALLOWED_ORIGINS" in logged[0], logged

    # the JS client sees it as a connection that keeps failing: it retries with backoff
    await page.evaluate("""async ([base, url, token]) => {
        const op = await import(base + '/client/openpanel-ws.js')
        window.states = []
        window.c = new op.OpenPanelClient({ url, token })
        window.c.addEventListener('state', e => window.states.push(e.detail.state))
        window.c.subscribeMetrics({}, () => {})
    }""", [refusing.url, f"ws://127.0.0.1:{refusing.port}", make_token()])
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function("window.states.includes('reconnecting')", timeout=scaled(10) * 1000)
    except PlaywrightTimeout:
        raise AssertionError(await page.evaluate("window.states")) from None
    await page.evaluate("window.c.close()")
    # still one log line for that origin within the minute
    assert len([r for r in caplog.records if page_server in r.getMessage()]) == 1

    allowing: RunningServer = await make_server(allowed_origins=[page_server])
    result = await page.evaluate(CONNECT, [f"ws://127.0.0.1:{allowing.port}/ws/metrics", make_token()])
    assert result["opened"] is True and "authenticated" in result["got"], result
