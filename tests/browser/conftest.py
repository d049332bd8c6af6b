"""Headless Chromium (Debian's `chromium`, driven by Playwright for Python) against a real
server. Fixtures for every browser test: `chromium_browser` (one Browser per session; every
browser test is `serial`, so the serial pass runs them all with one Browser)
and `page` (a fresh context + page per test, closed after).

Playwright's async API is bound to the event loop that started it, so every test and
fixture in this directory runs in the session's loop (set below); `server` and
`make_server` are redefined here to run in that loop as well.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pages import reload_on_network_change

from helpers import RunningServer, running_server, server_factory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
HERE = Path(__file__).parent
CHROMIUM = os.environ.get("OPENPANEL_WS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.hookimpl(tryfirst=True)  # before the `-m serial` / `-m "not serial"` selection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)
            # Browser tests run in the serial pass, one Chromium, with no other worker
            # starting containers: Chromium fails every request in flight when the host's
            # interfaces change, and each container start or stop adds or removes a veth
            # (docs/testing.md); in the parallel pass that broke a console page per run.
            item.add_marker(pytest.mark.serial)


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true): run scripts/ensure-docker.sh and `make dev`")
    pytest.skip(what)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium_browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    if not shutil.which(CHROMIUM):
        _missing(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(chromium_browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    # The client tests run their scripts on a page of the gateway's that is not the console
    # (/healthz, same origin), and every response of the gateway carries the console's
    # Content-Security-Policy (script-src 'self'): those tests stand for a panel's own page,
    # which has its own policy, so they bypass ours. The console's tests keep it: the
    # console must work under it.
    console = Path(str(request.node.fspath)).name == "test_console.py"
    context = await chromium_browser.new_context(bypass_csp=not console)
    pg = await context.new_page()
    reload_on_network_change(pg)
    try:
        yield pg
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def server(engine: None) -> AsyncIterator[RunningServer]:
    async with running_server() as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="session")
async def make_server(engine: None) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    async with server_factory() as factory:
        yield factory


@pytest_asyncio.fixture(loop_scope="session")
async def page_server() -> AsyncIterator[str]:
    """A plain web server for pages on another origin than the gateway's: every path
    answers an empty HTML page. Yields its base URL (http://127.0.0.1:PORT)."""
    async def any_page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>panel</title><body></body>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", any_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
