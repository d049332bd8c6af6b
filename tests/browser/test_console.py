"""The web console in headless Chromium against a real gateway and a real engine.

Every test signs in the way a person does (the `/#token=` link `make run` prints) and
saves a screenshot of what it saw under tests/browser/artifacts/ (git-ignored).
OPENPANEL_WS_DOCS_SCREENSHOT=1 also refreshes docs/console.png from the logs view.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import api_containers, drop_connections, http_get

from client_support import EngineProxy
from helpers import SECOND, Containers, RunningServer, docker, eventually, make_token
from openpanel_ws.config import Settings
from openpanel_ws.hosts.config import hosts_from_env

pytest.importorskip("playwright")
from playwright.async_api import Page, expect

pytestmark = pytest.mark.timeout(180)
ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
Seen = dict[str, list[str]]

DOCS_SHOT = Path(__file__).parents[2] / "docs" / "console.png"
WAIT = 20_000  # ms: generous, the machine is shared


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def watched(page: Page) -> Iterator[Seen]:
    """Dialogs (must never fire), page errors and CSP violations seen by the page."""
    seen: dict[str, list[str]] = {"dialogs": [], "errors": [], "csp": []}

    async def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        await dialog.dismiss()

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            seen["csp"].append(msg.text)

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("console", on_console)
    yield seen
    assert seen["dialogs"] == [], f"a dialog fired: {seen['dialogs']}"
    assert seen["errors"] == [], f"uncaught page errors: {seen['errors']}"
    assert seen["csp"] == [], f"CSP violations: {seen['csp']}"


async def open_console(page: Page, server: RunningServer, path: str = "/", token: str | None = None) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.goto(f"{server.url}{path}#token={token or make_token()}")
    await expect(page.locator("#app")).to_be_visible(timeout=WAIT)


async def shot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def crow(page: Page, name: str) -> Any:
    return page.locator(f'.crow[data-name="{name}"]')


# --- token hand-off, list, logs ------------------------------------------------------------


async def test_fragment_login_lists_containers_and_follows_new_lines(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    name = await containers.run(
        "echo ready; while true; do if [ -f /tmp/go ]; then echo \"after-subscribe $(cat /tmp/go)\"; "
        "rm /tmp/go; fi; sleep 0.2; done")
    token = make_token()
    await page.goto(f"{server.url}/#token={token}")
    await expect(crow(page, name)).to_be_visible(timeout=WAIT)
    # The token left the address bar (and history) and lives in sessionStorage only.
    assert "token" not in page.url and "#" not in page.url
    assert await page.evaluate("sessionStorage.getItem('openpanel-ws.token')") == token
    await expect(crow(page, name)).to_have_attribute("data-state", "running")
    await expect(crow(page, name).locator(".crow-uptime")).to_contain_text("up ", timeout=WAIT)
    await expect(crow(page, name).locator(".cpu")).to_contain_text("CPU", timeout=WAIT)  # live stats
    await shot(page, artifacts, "containers")

    await crow(page, name).click()
    await expect(page).to_have_url(re.compile(rf"\?container={name}&view=logs$"))
    logs = page.locator("#panel-logs .log-rows")
    await expect(logs).to_contain_text("ready", timeout=WAIT)  # history: the subscription is live
    await docker("exec", name, "sh", "-c", "echo 7f3a > /tmp/go")
    await expect(logs).to_contain_text("after-subscribe 7f3a", timeout=WAIT)
    await shot(page, artifacts, "logs")


async def test_login_form_refuses_a_bad_token_and_accepts_a_good_one(
        page: Page, server: RunningServer, artifacts: Path, watched: Seen) -> None:
    await page.goto(server.url + "/")
    await expect(page.locator("#login-form")).to_be_visible(timeout=WAIT)
    await shot(page, artifacts, "login")
    await page.fill("#token-input", "not-a-jwt")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("Invalid token", timeout=WAIT)
    assert await page.evaluate("sessionStorage.getItem('openpanel-ws.token')") is None
    await page.fill("#token-input", make_token())
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app")).to_be_visible(timeout=WAIT)
    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible(timeout=WAIT)
    assert await page.evaluate("sessionStorage.getItem('openpanel-ws.token')") is None


async def test_deep_links_open_each_view(
        page: Page, server: RunningServer, containers: Containers, watched: Seen) -> None:
    name = await containers.run()
    await open_console(page, server, f"/?container={name}&view=stats")
    await expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)
    await expect(page.locator("#detail-name")).to_have_text(name)
    await expect(page.locator('[data-tab="stats"]')).to_have_attribute("aria-current", "page")
    await page.click('[data-tab="logs"]')
    await expect(page).to_have_url(re.compile(r"view=logs$"))
    await expect(page.locator("#panel-logs")).to_be_visible()
    await page.go_back()
    await expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)
    await page.goto(f"{server.url}/?view=events")
    await expect(page.locator("#view-events")).to_be_visible(timeout=WAIT)
    await page.goto(f"{server.url}/?view=metrics")
    await expect(page.locator("#view-metrics")).to_be_visible(timeout=WAIT)


# --- terminal, stats, metrics, events ---------------------------------------------------------


async def test_terminal_runs_a_command(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    name = await containers.run()
    await open_console(page, server, f"/?container={name}&view=terminal")
    await expect(page.locator("#panel-terminal .term-state")).to_have_text("connected", timeout=WAIT)
    rows = page.locator("#panel-terminal .xterm-rows")
    await expect(rows).to_contain_text("#", timeout=WAIT)  # the prompt
    await page.locator("#panel-terminal .xterm-helper-textarea").focus()
    await page.keyboard.type("echo $((6*7))")
    await page.keyboard.press("Enter")
    await expect(rows).to_contain_text("42", timeout=WAIT)
    await shot(page, artifacts, "terminal")
    # The terminal follows its element: a smaller window, fewer columns, and the shell knows.
    await page.set_viewport_size({"width": 900, "height": 700})
    size = "[window.openpanelConsole.viewObj.term.cols, window.openpanelConsole.viewObj.term.rows]"

    async def narrower() -> bool:  # (wait_for_function evaluates a string: the page's CSP forbids that)
        return bool((await page.evaluate(size))[0] < 100)

    await eventually(narrower, 10, step=0.1, what="fewer columns")
    cols, lines = await page.evaluate(size)
    assert cols < 100
    await page.keyboard.type("stty size")
    await page.keyboard.press("Enter")
    await expect(rows).to_contain_text(f"{lines} {cols}", timeout=WAIT)
    # Copy and paste through the clipboard (the buttons; Ctrl+Shift+C/V do the same).
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.evaluate("window.openpanelConsole.viewObj.term.selectAll()")
    await page.click("#panel-terminal button:text('Copy')")
    await expect(page.locator("#toast")).to_have_text("Copied", timeout=WAIT)
    assert "echo $((6*7))" in await page.evaluate("navigator.clipboard.readText()")
    await page.evaluate("navigator.clipboard.writeText('echo pasted-$((2+3))\\n')")
    await page.click("#panel-terminal button:text('Paste')")
    await expect(rows).to_contain_text("pasted-5", timeout=WAIT)
    # A dropped connection: the client reattaches the same shell when the gateway kept the
    # session ("resumed"); otherwise the view opens a new one and says so ("connected").
    state = page.locator("#panel-terminal .term-state")
    assert drop_connections(server) >= 3  # terminal, containers, logs
    await expect(state).to_have_text("reconnecting…", timeout=WAIT)
    await expect(state).to_have_text(re.compile(r"^(connected|resumed)$"), timeout=WAIT)
    if await state.inner_text() == "connected":
        await expect(rows).to_contain_text("connection lost", timeout=WAIT)
    await page.locator("#panel-terminal .xterm-helper-textarea").focus()
    await page.keyboard.type("echo again-$((7*6))")
    await page.keyboard.press("Enter")
    await expect(rows).to_contain_text("again-42", timeout=WAIT)
    await page.keyboard.type("exit 3")
    await page.keyboard.press("Enter")
    exit_note = page.locator("#panel-terminal .term-exit")
    await expect(exit_note).to_have_attribute("data-exit-code", "3", timeout=WAIT)
    await expect(page.locator("#panel-terminal .term-exit")).to_contain_text("exit code 3")


async def test_stats_charts_receive_samples(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    name = await containers.run(
        "while true; do dd if=/dev/zero of=/tmp/x bs=64k count=64 2>/dev/null; sleep 0.3; done")
    await open_console(page, server, f"/?container={name}&view=stats")
    charts = page.locator("#panel-stats .chart")
    await expect(charts).to_have_count(4, timeout=WAIT)
    await expect(page.locator("#panel-stats")).to_have_attribute(
        "data-samples", re.compile(r"^([3-9]|\d\d+)$"), timeout=WAIT)
    for i in range(4):
        assert int(await charts.nth(i).get_attribute("data-samples") or 0) >= 3
    # uPlot drew its series paths into a canvas of the card's width
    assert await page.locator("#panel-stats .chart canvas").count() == 4
    await shot(page, artifacts, "stats")


async def test_host_metrics_and_events_views(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    await open_console(page, server, "/?view=metrics")
    await expect(page.locator("#view-metrics")).to_have_attribute(
        "data-samples", re.compile(r"^([2-9]|\d\d+)$"), timeout=WAIT)
    await expect(page.locator("#view-metrics .tile")).to_have_count(4)
    await shot(page, artifacts, "metrics")

    await page.click('[data-nav="events"]')
    await expect(page).to_have_url(re.compile(r"\?view=events$"))
    name = await containers.run("sleep 1; exit 4")
    table = page.locator("#view-events tbody")
    await expect(table).to_contain_text(name, timeout=WAIT)
    await expect(table).to_contain_text("exit 4", timeout=WAIT)  # the `die` event's exit code
    await page.fill("#view-events input[type=search]", name)
    await page.select_option("#view-events select >> nth=0", "log")
    await expect(table.locator("tr").first).to_contain_text(name, timeout=WAIT)
    for text in await table.locator("tr").all_inner_texts():
        assert name in text
    await page.select_option("#view-events select >> nth=0", "all")
    await shot(page, artifacts, "events")


# --- safety ------------------------------------------------------------------------------------


HOSTILE = r"""printf '<img src=x onerror=alert(1)>\n'; printf '<script>alert(2)</script>\n';
printf '\033[31mRED\033[0m plain \033[1;4;38;5;208mORANGE\033[0m\n';
printf '\033]0;pwned-title\007title gone\033[2J\033[Hcursor gone\n'; echo done; sleep 3600"""


async def test_hostile_output_renders_as_text(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    name = await containers.run(HOSTILE)
    await open_console(page, server, f"/?container={name}&view=logs")
    rows = page.locator("#panel-logs .log-rows")
    await expect(rows).to_contain_text("done", timeout=WAIT)
    text = await rows.inner_text()
    assert "<img src=x onerror=alert(1)>" in text
    assert "<script>alert(2)</script>" in text
    assert "title gone" in text and "cursor gone" in text
    assert "\x1b" not in text and "[31m" not in text and "pwned-title" not in text
    assert await page.locator("#panel-logs img, #panel-logs script").count() == 0
    red = rows.locator("span", has_text=re.compile("^RED$"))
    assert await red.evaluate("n => getComputedStyle(n).color") == "rgb(224, 108, 117)"
    orange = rows.locator("span", has_text=re.compile("^ORANGE$"))
    assert (await orange.evaluate("n => getComputedStyle(n).fontWeight")) == "700"
    # Search highlights matches with <mark>, still as text.
    await page.fill("#logs-search", "onerror")
    await expect(page.locator("#panel-logs mark")).to_have_text("onerror", timeout=WAIT)
    await expect(page.locator("#panel-logs .log-row")).to_have_count(1)
    # "Download" saves what is shown, as plain text without escape sequences.
    async with page.expect_download() as info:
        await page.click("#panel-logs button:text('Download')")
    download = await info.value
    saved = await asyncio.to_thread(Path(await download.path()).read_text)
    assert "<img src=x onerror=alert(1)>" in saved and "\x1b" not in saved
    assert download.suggested_filename.startswith(f"{name}-logs-")
    # An absence: give a late dialog the chance to show up (the fixture then fails).
    await asyncio.sleep(0.5 * SECOND)
    await shot(page, artifacts, "hostile")


async def test_page_is_served_with_a_strict_policy(server: RunningServer) -> None:
    status, headers, body = await http_get(server.url + "/")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in body and b" on" not in body.split(b"<body>")[1].split(b">")[0]
    etag = headers["ETag"]
    status, _, _ = await http_get(server.url + "/", {"If-None-Match": etag})
    assert status == 304
    status, headers, _ = await http_get(server.url + "/static/vendor/xterm/xterm.mjs",
                                        {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("text/javascript")
    for missing in ("/static/../server.py", "/static/nope.js", "/static/index.html"):
        assert (await http_get(server.url + missing))[0] == 404


# --- scopes -----------------------------------------------------------------------------------


async def test_scoped_token_sees_only_its_containers(
        page: Page, server: RunningServer, containers: Containers, artifacts: Path, watched: Seen) -> None:
    mine = await containers.run(name=f"scoped-mine-{os.urandom(4).hex()}")
    other = await containers.run(name=f"scoped-other-{os.urandom(4).hex()}")
    token = make_token("scoped-user", roles=(), containers=["scoped-mine-*"])
    status, body = await api_containers(server.url, token)
    assert status == 200
    names = {c["name"] for c in body["containers"]}
    assert mine in names and other not in names
    assert all(n.startswith("scoped-mine-") for n in names)

    await open_console(page, server, token=token)
    await expect(crow(page, mine)).to_be_visible(timeout=WAIT)
    assert await crow(page, other).count() == 0
    await shot(page, artifacts, "scoped")
    await page.goto(f"{server.url}/?container={other}&view=logs")
    await expect(page.locator("#detail-placeholder")).to_contain_text("No container named", timeout=WAIT)


# --- load: 1,000 lines/s ---------------------------------------------------------------------


FLOOD_WINDOW = 5.0  # seconds of flood the page is measured over (the window is the measurement)


async def test_logs_view_stays_bounded_under_a_flood(
        page: Page, server: RunningServer, containers: Containers, watched: Seen) -> None:
    # ~1,000 lines/s or more: 100 lines every 0.1 s.
    name = await containers.run(
        "i=0; while true; do seq $i $((i+99)) | sed 's/^/flood line /'; i=$((i+100)); sleep 0.1; done")
    await open_console(page, server, f"/?container={name}&view=logs")
    await expect(page.locator("#panel-logs .log-rows")).to_contain_text("flood line", timeout=WAIT)
    await page.evaluate("""() => { window.__gaps = []; let last = performance.now();
        const tick = (t) => { window.__gaps.push(t - last); last = t;
          if (window.__gaps.length < 100000) requestAnimationFrame(tick) }; requestAnimationFrame(tick) }""")
    await asyncio.sleep(FLOOD_WINDOW)
    lines = int(await page.locator("#panel-logs").get_attribute("data-lines") or 0)
    rows = await page.locator("#panel-logs .log-row").count()
    gaps = await page.evaluate("window.__gaps")
    assert lines > 1000, lines
    assert rows < 200, f"{rows} rows in the DOM: not virtualised"
    gaps.sort()
    print(f"flood: {lines} lines kept, {rows} rows in the DOM, {len(gaps)} frames in 5 s, "
          f"frame gap p50 {gaps[len(gaps) // 2]:.1f} ms, max {gaps[-1]:.1f} ms")


# --- screenshots at both sizes ---------------------------------------------------------------


async def test_screenshots_desktop_and_phone(
        chromium_browser: Any, server: RunningServer, containers: Containers, artifacts: Path) -> None:
    # A token scoped to this test's containers keeps other tests' containers out of the pictures.
    tag = os.urandom(3).hex()
    web = await containers.run(
        "i=0; while true; do i=$((i+1)); "
        "printf '%s \\033[32mINFO\\033[0m GET /api/items/%s 200 \\033[2m%sms\\033[0m\\n' "
        "\"$(date +%T)\" $i $((i * 7 % 40 + 3)); if [ $((i % 6)) = 0 ]; then "
        "echo \"$(date +%T) WARN upstream slow, retrying ($i)\" >&2; fi; sleep 0.3; done",
        name=f"shop-web-{tag}")
    await containers.run("while true; do echo \"$(date +%T) checkpoint complete\"; sleep 2; done",
                         name=f"shop-db-{tag}")
    await containers.run("while true; do dd if=/dev/zero of=/tmp/x bs=1M count=8 2>/dev/null; sleep 1; done",
                         name=f"shop-worker-{tag}")
    await containers.run("exit 0", name=f"shop-migrate-{tag}")
    token = make_token("demo", containers=[f"shop-*-{tag}"])
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = await chromium_browser.new_context(viewport=viewport)
        page = await context.new_page()
        try:
            await page.goto(f"{server.url}/?container={web}&view=logs#token={token}")
            await expect(page.locator("#panel-logs .log-rows")).to_contain_text("WARN upstream", timeout=WAIT)
            if label == "desktop":
                await expect(crow(page, web).locator(".cpu")).to_contain_text("CPU", timeout=WAIT)
                worker = crow(page, f"shop-worker-{tag}")
                await expect(worker.locator(".mem")).to_contain_text("MEM", timeout=WAIT)
                # A second more of live stats for the picture (only the screenshot shows it).
                await asyncio.sleep(1.0 * SECOND)
            # Nothing overflows the viewport horizontally (readable without sideways scrolling).
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{label}: page is {width}px wide"
            path = await shot(page, artifacts, f"logs-{label}")
            if label == "desktop" and os.environ.get("OPENPANEL_WS_DOCS_SCREENSHOT"):
                shutil.copyfile(path, DOCS_SHOT)
            await page.goto(f"{server.url}/")
            await expect(crow(page, web)).to_be_visible(timeout=WAIT)
            await shot(page, artifacts, f"containers-{label}")
            await page.goto(f"{server.url}/?container={web}&view=stats")
            await expect(page.locator("#panel-stats")).to_have_attribute(
                "data-samples", re.compile(r"^([2-9]|\d\d+)$"), timeout=WAIT)
            await shot(page, artifacts, f"stats-{label}")
            await page.goto(f"{server.url}/?view=metrics")
            await expect(page.locator("#view-metrics .tile")).to_have_count(4, timeout=WAIT)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{label}: metrics page is {width}px wide"
            await shot(page, artifacts, f"metrics-{label}")
            await page.goto(f"{server.url}/?view=events")
            await expect(page.locator("#view-events")).to_be_visible(timeout=WAIT)
            await shot(page, artifacts, f"events-{label}")
        finally:
            await context.close()


async def test_keyboard_reaches_the_views(
        page: Page, server: RunningServer, containers: Containers, watched: Seen) -> None:
    name = await containers.run()
    # Scoped to this test's container: other tests' containers (other workers) would
    # re-render the list under the focused row and lengthen the Tab order.
    await open_console(page, server, token=make_token(containers=[name]))
    await expect(crow(page, name)).to_be_visible(timeout=WAIT)
    await crow(page, name).focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#panel-logs")).to_be_visible(timeout=WAIT)
    # Tab from the top of the page: every control of the view is reached, in order.
    await page.locator("body").focus()
    reached: list[str] = []
    for _ in range(80):
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate("""() => { const n = document.activeElement;
            return n.dataset.tab ? 'tab:' + n.dataset.tab : n.dataset.nav ? 'nav:' + n.dataset.nav
              : n.id || (n.textContent || '').trim().slice(0, 20) }"""))
    for wanted in ("nav:metrics", "nav:events", "tab:stats", "tab:terminal", "logs-search", "logs-tail",
                   "Pause", "Download"):
        assert wanted in reached, f"{wanted} not reachable with Tab: {reached}"
    await page.locator('[data-tab="stats"]').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)


# --- several Docker hosts ----------------------------------------------------------------------


async def start_hosts_server(make_server: Any) -> RunningServer:
    """`local` and `other` on the one local engine (the same containers answer on both),
    and `down`, whose engine nothing answers (in the session's loop, as `make_server`)."""
    url = Settings().docker_host
    server: RunningServer = await make_server(
        hosts=hosts_from_env(f"local={url},other={url},down=tcp://127.0.0.1:9"))
    return server


async def test_host_switcher_states_and_views_on_the_chosen_host(
        page: Page, make_server: Any, containers: Containers, artifacts: Path,
        watched: Seen) -> None:
    hosts_server = await start_hosts_server(make_server)
    name = await containers.run("echo on-every-host; sleep 3600")
    await open_console(page, hosts_server)
    select = page.locator("#host-select")
    await expect(page.locator("#host-switcher")).to_be_visible(timeout=WAIT)
    await expect(select.locator("option")).to_have_count(3)
    assert await select.input_value() == "local"
    await expect(page.locator("#host-state")).to_have_text("up", timeout=WAIT)
    # The host nobody answers: down, from GET /api/hosts or its host_status line.
    await expect(select.locator('option[value="down"]')).to_have_attribute("data-state", "down", timeout=WAIT)
    await expect(crow(page, name)).to_be_visible(timeout=WAIT)

    await select.select_option("other")
    await expect(page).to_have_url(re.compile(r"\?host=other$"))
    await expect(crow(page, name)).to_be_visible(timeout=WAIT)
    await crow(page, name).click()
    await expect(page).to_have_url(re.compile(rf"\?host=other&container={name}&view=logs$"))
    await expect(page.locator("#panel-logs .log-rows")).to_contain_text("on-every-host", timeout=WAIT)
    assert await page.evaluate("window.openpanelConsole.viewObj.sub.host") == "other"
    await shot(page, artifacts, "hosts-logs")

    await page.click('[data-tab="terminal"]')
    await expect(page).to_have_url(re.compile(rf"\?host=other&container={name}&view=terminal$"))
    await expect(page.locator("#panel-terminal")).to_be_visible()

    # A deep link to a host that is down: its error is shown with the empty list.
    await page.goto(f"{hosts_server.url}/?host=down")
    await expect(page.locator("#host-state")).to_have_text("down", timeout=WAIT)
    await expect(page.locator("#host-error")).to_be_visible(timeout=WAIT)

    # Events: a host column, each engine event once per host, host_status rows.
    await page.goto(f"{hosts_server.url}/?view=events")
    await expect(page.locator("#view-events thead")).to_contain_text("host")
    other = await containers.run("sleep 1; exit 5")
    table = page.locator("#view-events tbody")
    await page.fill("#view-events input[type=search]", other)
    await expect(table.locator("tr", has_text="exit 5")).to_have_count(2, timeout=WAIT)
    rows = await table.locator("tr", has_text="exit 5").all()
    hosts = {await r.locator("td.ev-host").inner_text() for r in rows}
    assert hosts == {"local", "other"}
    await page.fill("#view-events input[type=search]", "down")
    await expect(table.locator("tr", has_text="host").first).to_contain_text("down", timeout=WAIT)
    await shot(page, artifacts, "hosts-events")


async def test_host_states_follow_host_status(
        page: Page, make_server: Any, artifacts: Path, watched: Seen) -> None:
    """A host whose engine goes away and comes back: the switcher follows its host_status
    lines without a reload."""
    settings = Settings()
    proxy = EngineProxy(settings.docker_host.removeprefix("unix://"))
    await proxy.start()
    try:
        server = await make_server(
            hosts=hosts_from_env(f"local={settings.docker_host},flaky={proxy.url}"))
        await open_console(page, server)
        option = page.locator('#host-select option[value="flaky"]')
        await expect(option).to_have_attribute("data-state", "up", timeout=WAIT)
        await proxy.stop()
        await expect(option).to_have_attribute("data-state", "down", timeout=WAIT)
        await expect(option).to_contain_text("down")
        await shot(page, artifacts, "hosts-down")
        await proxy.start()  # the same port
        await expect(option).to_have_attribute("data-state", "up", timeout=WAIT * 2)
    finally:
        await proxy.stop()
