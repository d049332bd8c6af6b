"""The web console in headless Chromium against a real gateway and a real engine.

Every test signs in the way a person does (the `/#token=` link `make run` prints) and
saves a screenshot of what it saw under tests/browser/artifacts/ (git-ignored).
OPENPANEL_WS_DOCS_SCREENSHOT=1 also refreshes docs/console.png from the logs view.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import ThreadedServer, api_containers, http_get

from helpers import Containers, docker, make_token

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.timeout(180)

DOCS_SHOT = Path(__file__).parents[2] / "docs" / "console.png"
WAIT = 20_000  # ms: generous, the machine is shared


@pytest.fixture(scope="module")
def gateway(engine: None) -> Iterator[ThreadedServer]:
    srv = ThreadedServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def watched(page: Page) -> Iterator[dict[str, list[str]]]:
    """Dialogs (must never fire), page errors and CSP violations seen by the page."""
    seen: dict[str, list[str]] = {"dialogs": [], "errors": [], "csp": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

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


def open_console(page: Page, gateway: ThreadedServer, path: str = "/", token: str | None = None) -> None:
    page.goto(f"{gateway.url}{path}#token={token or make_token()}")
    expect(page.locator("#app")).to_be_visible(timeout=WAIT)


def shot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def crow(page: Page, name: str) -> Any:
    return page.locator(f'.crow[data-name="{name}"]')


# --- token hand-off, list, logs ------------------------------------------------------------


def test_fragment_login_lists_containers_and_follows_new_lines(
        page: Page, gateway: ThreadedServer, containers: Containers, artifacts: Path,
        watched: dict[str, list[str]]) -> None:
    name = containers.run(
        "echo ready; while true; do if [ -f /tmp/go ]; then echo \"after-subscribe $(cat /tmp/go)\"; "
        "rm /tmp/go; fi; sleep 0.2; done")
    token = make_token()
    page.goto(f"{gateway.url}/#token={token}")
    expect(crow(page, name)).to_be_visible(timeout=WAIT)
    # The token left the address bar (and history) and lives in sessionStorage only.
    assert "token" not in page.url and "#" not in page.url
    assert page.evaluate("sessionStorage.getItem('openpanel-ws.token')") == token
    expect(crow(page, name)).to_have_attribute("data-state", "running")
    expect(crow(page, name).locator(".crow-uptime")).to_contain_text("up ", timeout=WAIT)
    expect(crow(page, name).locator(".cpu")).to_contain_text("CPU", timeout=WAIT)  # live stats
    shot(page, artifacts, "containers")

    crow(page, name).click()
    expect(page).to_have_url(re.compile(rf"\?container={name}&view=logs$"))
    logs = page.locator("#panel-logs .log-rows")
    expect(logs).to_contain_text("ready", timeout=WAIT)  # history: the subscription is live
    docker("exec", name, "sh", "-c", "echo 7f3a > /tmp/go")
    expect(logs).to_contain_text("after-subscribe 7f3a", timeout=WAIT)
    shot(page, artifacts, "logs")


def test_login_form_refuses_a_bad_token_and_accepts_a_good_one(
        page: Page, gateway: ThreadedServer, artifacts: Path, watched: dict[str, list[str]]) -> None:
    page.goto(gateway.url + "/")
    expect(page.locator("#login-form")).to_be_visible(timeout=WAIT)
    shot(page, artifacts, "login")
    page.fill("#token-input", "not-a-jwt")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("Invalid token", timeout=WAIT)
    assert page.evaluate("sessionStorage.getItem('openpanel-ws.token')") is None
    page.fill("#token-input", make_token())
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible(timeout=WAIT)
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible(timeout=WAIT)
    assert page.evaluate("sessionStorage.getItem('openpanel-ws.token')") is None


def test_deep_links_open_each_view(page: Page, gateway: ThreadedServer, containers: Containers,
                                   watched: dict[str, list[str]]) -> None:
    name = containers.run()
    open_console(page, gateway, f"/?container={name}&view=stats")
    expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)
    expect(page.locator("#detail-name")).to_have_text(name)
    expect(page.locator('[data-tab="stats"]')).to_have_attribute("aria-current", "page")
    page.click('[data-tab="logs"]')
    expect(page).to_have_url(re.compile(r"view=logs$"))
    expect(page.locator("#panel-logs")).to_be_visible()
    page.go_back()
    expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)
    page.goto(f"{gateway.url}/?view=events")
    expect(page.locator("#view-events")).to_be_visible(timeout=WAIT)
    page.goto(f"{gateway.url}/?view=metrics")
    expect(page.locator("#view-metrics")).to_be_visible(timeout=WAIT)


# --- terminal, stats, metrics, events ---------------------------------------------------------


def test_terminal_runs_a_command(page: Page, gateway: ThreadedServer, containers: Containers,
                                 artifacts: Path, watched: dict[str, list[str]]) -> None:
    name = containers.run()
    open_console(page, gateway, f"/?container={name}&view=terminal")
    expect(page.locator("#panel-terminal .term-state")).to_have_text("connected", timeout=WAIT)
    rows = page.locator("#panel-terminal .xterm-rows")
    expect(rows).to_contain_text("#", timeout=WAIT)  # the prompt
    page.locator("#panel-terminal .xterm-helper-textarea").focus()
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("42", timeout=WAIT)
    shot(page, artifacts, "terminal")
    # A dropped connection: the view reconnects through the client (a new shell).
    assert gateway.drop_terminal_connections() == 1
    expect(page.locator("#panel-terminal .term-state")).to_have_text("reconnecting…", timeout=WAIT)
    expect(rows).to_contain_text("connection lost", timeout=WAIT)
    expect(page.locator("#panel-terminal .term-state")).to_have_text("connected", timeout=WAIT)
    page.locator("#panel-terminal .xterm-helper-textarea").focus()
    page.keyboard.type("echo again-$((7*6))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("again-42", timeout=WAIT)
    page.keyboard.type("exit 3")
    page.keyboard.press("Enter")
    expect(page.locator("#panel-terminal .term-exit")).to_have_attribute("data-exit-code", "3", timeout=WAIT)
    expect(page.locator("#panel-terminal .term-exit")).to_contain_text("exit code 3")


def test_stats_charts_receive_samples(page: Page, gateway: ThreadedServer, containers: Containers,
                                      artifacts: Path, watched: dict[str, list[str]]) -> None:
    name = containers.run(
        "while true; do dd if=/dev/zero of=/tmp/x bs=64k count=64 2>/dev/null; sleep 0.3; done")
    open_console(page, gateway, f"/?container={name}&view=stats")
    charts = page.locator("#panel-stats .chart")
    expect(charts).to_have_count(4, timeout=WAIT)
    expect(page.locator("#panel-stats")).to_have_attribute("data-samples", re.compile(r"^([3-9]|\d\d+)$"),
                                                           timeout=WAIT)
    for i in range(4):
        assert int(charts.nth(i).get_attribute("data-samples") or 0) >= 3
    # uPlot drew its series paths into a canvas of the card's width
    assert page.locator("#panel-stats .chart canvas").count() == 4
    shot(page, artifacts, "stats")


def test_host_metrics_and_events_views(page: Page, gateway: ThreadedServer, containers: Containers,
                                       artifacts: Path, watched: dict[str, list[str]]) -> None:
    open_console(page, gateway, "/?view=metrics")
    expect(page.locator("#view-metrics")).to_have_attribute("data-samples", re.compile(r"^([2-9]|\d\d+)$"),
                                                            timeout=WAIT)
    expect(page.locator("#view-metrics .tile")).to_have_count(4)
    shot(page, artifacts, "metrics")

    page.click('[data-nav="events"]')
    expect(page).to_have_url(re.compile(r"\?view=events$"))
    name = containers.run("sleep 1; exit 4")
    table = page.locator("#view-events tbody")
    expect(table).to_contain_text(name, timeout=WAIT)
    expect(table).to_contain_text("exit 4", timeout=WAIT)  # the `die` event's exit code
    page.fill("#view-events input[type=search]", name)
    page.select_option("#view-events select >> nth=0", "log")
    expect(table.locator("tr").first).to_contain_text(name, timeout=WAIT)
    for text in table.locator("tr").all_inner_texts():
        assert name in text
    page.select_option("#view-events select >> nth=0", "all")
    shot(page, artifacts, "events")


# --- safety ------------------------------------------------------------------------------------


HOSTILE = r"""printf '<img src=x onerror=alert(1)>\n'; printf '<script>alert(2)</script>\n';
printf '\033[31mRED\033[0m plain \033[1;4;38;5;208mORANGE\033[0m\n';
printf '\033]0;pwned-title\007title gone\033[2J\033[Hcursor gone\n'; echo done; sleep 3600"""


def test_hostile_output_renders_as_text(page: Page, gateway: ThreadedServer, containers: Containers,
                                        artifacts: Path, watched: dict[str, list[str]]) -> None:
    name = containers.run(HOSTILE)
    open_console(page, gateway, f"/?container={name}&view=logs")
    rows = page.locator("#panel-logs .log-rows")
    expect(rows).to_contain_text("done", timeout=WAIT)
    text = rows.inner_text()
    assert "<img src=x onerror=alert(1)>" in text
    assert "<script>alert(2)</script>" in text
    assert "title gone" in text and "cursor gone" in text
    assert "\x1b" not in text and "[31m" not in text and "pwned-title" not in text
    assert page.locator("#panel-logs img, #panel-logs script").count() == 0
    red = rows.locator("span", has_text=re.compile("^RED$"))
    assert red.evaluate("n => getComputedStyle(n).color") == "rgb(224, 108, 117)"
    orange = rows.locator("span", has_text=re.compile("^ORANGE$"))
    assert orange.evaluate("n => [getComputedStyle(n).fontWeight, n.className]")[0] == "700"
    # Search highlights matches with <mark>, still as text.
    page.fill("#logs-search", "onerror")
    expect(page.locator("#panel-logs mark")).to_have_text("onerror", timeout=WAIT)
    expect(page.locator("#panel-logs .log-row")).to_have_count(1)
    time.sleep(0.5)  # give a late dialog the chance to show up (the fixture then fails)
    shot(page, artifacts, "hostile")


def test_page_is_served_with_a_strict_policy(gateway: ThreadedServer) -> None:
    status, headers, body = http_get(gateway.url + "/")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in body and b" on" not in body.split(b"<body>")[1].split(b">")[0]
    etag = headers["ETag"]
    status, _, _ = http_get(gateway.url + "/", {"If-None-Match": etag})
    assert status == 304
    status, headers, _ = http_get(gateway.url + "/static/vendor/xterm/xterm.mjs", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("text/javascript")
    for missing in ("/static/../server.py", "/static/nope.js", "/static/index.html"):
        assert http_get(gateway.url + missing)[0] == 404


# --- scopes -----------------------------------------------------------------------------------


def test_scoped_token_sees_only_its_containers(page: Page, gateway: ThreadedServer, containers: Containers,
                                               artifacts: Path, watched: dict[str, list[str]]) -> None:
    mine = containers.run(name=f"scoped-mine-{os.urandom(4).hex()}")
    other = containers.run(name=f"scoped-other-{os.urandom(4).hex()}")
    token = make_token("scoped-user", roles=(), containers=["scoped-mine-*"])
    status, body = api_containers(gateway.url, token)
    assert status == 200
    names = {c["name"] for c in body["containers"]}
    assert mine in names and other not in names
    assert all(n.startswith("scoped-mine-") for n in names)

    open_console(page, gateway, token=token)
    expect(crow(page, mine)).to_be_visible(timeout=WAIT)
    assert crow(page, other).count() == 0
    shot(page, artifacts, "scoped")
    page.goto(f"{gateway.url}/?container={other}&view=logs")
    expect(page.locator("#detail-placeholder")).to_contain_text("No container named", timeout=WAIT)


# --- load: 1,000 lines/s ---------------------------------------------------------------------


def test_logs_view_stays_bounded_under_a_flood(page: Page, gateway: ThreadedServer, containers: Containers,
                                               watched: dict[str, list[str]]) -> None:
    # ~1,000 lines/s or more: 100 lines every 0.1 s.
    name = containers.run("i=0; while true; do seq $i $((i+99)) | sed 's/^/flood line /'; i=$((i+100)); "
                          "sleep 0.1; done")
    open_console(page, gateway, f"/?container={name}&view=logs")
    expect(page.locator("#panel-logs .log-rows")).to_contain_text("flood line", timeout=WAIT)
    page.evaluate("""() => { window.__gaps = []; let last = performance.now();
        const tick = (t) => { window.__gaps.push(t - last); last = t;
          if (window.__gaps.length < 100000) requestAnimationFrame(tick) }; requestAnimationFrame(tick) }""")
    time.sleep(5)
    lines = int(page.locator("#panel-logs").get_attribute("data-lines") or 0)
    rows = page.locator("#panel-logs .log-row").count()
    gaps = page.evaluate("window.__gaps")
    assert lines > 1000, lines
    assert rows < 200, f"{rows} rows in the DOM: not virtualised"
    gaps.sort()
    print(f"flood: {lines} lines kept, {rows} rows in the DOM, {len(gaps)} frames in 5 s, "
          f"frame gap p50 {gaps[len(gaps) // 2]:.1f} ms, max {gaps[-1]:.1f} ms")


# --- screenshots at both sizes ---------------------------------------------------------------


def test_screenshots_desktop_and_phone(chromium_browser: Any, gateway: ThreadedServer, containers: Containers,
                                       artifacts: Path) -> None:
    # A token scoped to this test's containers keeps other tests' containers out of the pictures.
    tag = os.urandom(3).hex()
    web = containers.run(
        "i=0; while true; do i=$((i+1)); "
        "printf '%s \\033[32mINFO\\033[0m GET /api/items/%s 200 \\033[2m%sms\\033[0m\\n' "
        "\"$(date +%T)\" $i $((i * 7 % 40 + 3)); if [ $((i % 6)) = 0 ]; then "
        "echo \"$(date +%T) WARN upstream slow, retrying ($i)\" >&2; fi; sleep 0.3; done",
        name=f"shop-web-{tag}")
    containers.run("while true; do echo \"$(date +%T) checkpoint complete\"; sleep 2; done",
                   name=f"shop-db-{tag}")
    containers.run("while true; do dd if=/dev/zero of=/tmp/x bs=1M count=8 2>/dev/null; sleep 1; done",
                   name=f"shop-worker-{tag}")
    containers.run("exit 0", name=f"shop-migrate-{tag}")
    token = make_token("demo", containers=[f"shop-*-{tag}"])
    sizes = (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844}))
    for label, viewport in sizes:
        context = chromium_browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            page.goto(f"{gateway.url}/?container={web}&view=logs#token={token}")
            expect(page.locator("#panel-logs .log-rows")).to_contain_text("WARN upstream", timeout=WAIT)
            if label == "desktop":
                expect(crow(page, web).locator(".cpu")).to_contain_text("CPU", timeout=WAIT)
                expect(crow(page, f"shop-worker-{tag}").locator(".mem")).to_contain_text("MEM", timeout=WAIT)
                time.sleep(1)
            # Nothing overflows the viewport horizontally (readable without sideways scrolling).
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{label}: page is {width}px wide"
            path = shot(page, artifacts, f"logs-{label}")
            if label == "desktop" and os.environ.get("OPENPANEL_WS_DOCS_SCREENSHOT"):
                shutil.copyfile(path, DOCS_SHOT)
            page.goto(f"{gateway.url}/")
            expect(crow(page, web)).to_be_visible(timeout=WAIT)
            shot(page, artifacts, f"containers-{label}")
            page.goto(f"{gateway.url}/?container={web}&view=stats")
            expect(page.locator("#panel-stats")).to_have_attribute(
                "data-samples", re.compile(r"^([2-9]|\d\d+)$"), timeout=WAIT)
            shot(page, artifacts, f"stats-{label}")
            page.goto(f"{gateway.url}/?view=metrics")
            expect(page.locator("#view-metrics .tile")).to_have_count(4, timeout=WAIT)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{label}: metrics page is {width}px wide"
            shot(page, artifacts, f"metrics-{label}")
            page.goto(f"{gateway.url}/?view=events")
            expect(page.locator("#view-events")).to_be_visible(timeout=WAIT)
            shot(page, artifacts, f"events-{label}")
        finally:
            context.close()


def test_keyboard_reaches_the_views(page: Page, gateway: ThreadedServer, containers: Containers,
                                    watched: dict[str, list[str]]) -> None:
    name = containers.run()
    open_console(page, gateway)
    expect(crow(page, name)).to_be_visible(timeout=WAIT)
    crow(page, name).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel-logs")).to_be_visible(timeout=WAIT)
    # Tab from the top of the page: every control of the view is reached, in order.
    page.locator("body").focus()
    reached: list[str] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("""() => { const n = document.activeElement;
            return n.dataset.tab ? 'tab:' + n.dataset.tab : n.dataset.nav ? 'nav:' + n.dataset.nav
              : n.id || (n.textContent || '').trim().slice(0, 20) }"""))
    for wanted in ("nav:metrics", "nav:events", "tab:stats", "tab:terminal", "logs-search", "logs-tail",
                   "Pause", "Download"):
        assert wanted in reached, f"{wanted} not reachable with Tab: {reached}"
    page.locator('[data-tab="stats"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel-stats")).to_be_visible(timeout=WAIT)
