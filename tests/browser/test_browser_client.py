"""openpanel-ws.js, as the gateway serves it, in headless Chromium (and Node) against a
real server and engine: every endpoint, heartbeats, and a server SIGKILL + restart under
`logs` with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pages import open_page

from client_support import ServerProcess
from helpers import (
    SECOND,
    TEST_IMAGE,
    Containers,
    RunningServer,
    docker,
    eventually,
    free_port,
    make_token,
    scaled,
    unique_name,
)
from openpanel_ws.config import Settings
from openpanel_ws.hosts.config import hosts_from_env

ROOT = Path(__file__).resolve().parents[2]
CLIENT_JS = ROOT / "clients" / "js" / "openpanel-ws.js"
COUNTER = "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.1; done"


async def test_the_gateway_serves_the_client(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/client/openpanel-ws.js") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/javascript")
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert await resp.read() == CLIENT_JS.read_bytes()
            etag = resp.headers["ETag"]
        async with session.get(server.url + "/client/openpanel-ws.js",
                               headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with session.get(server.url + "/client/openpanel-ws.d.ts") as resp:
            assert resp.status == 200 and "OpenPanelClient" in await resp.text()


async def _load_client(page: Any, base: str) -> None:
    await open_page(page, base + "/healthz")
    await page.evaluate("""async (base) => {
        window.op = await import(base + '/client/openpanel-ws.js')
        window.seen = { logs: [], stats: 0, metrics: 0, events: 0, states: [], errors: [], term: [] }
    }""", base)


def _numbers(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.fullmatch(r"line-(\d+)", line))]


async def _wait_for(page: Any, expression: str, timeout: float = 30.0) -> Any:
    """The value of `expression` once it is truthy (Chromium re-evaluates it on every
    animation frame); fails after `timeout` (scaled)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        handle = await page.wait_for_function(expression, timeout=scaled(timeout) * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"timed out waiting for {expression}: "
                             f"{await page.evaluate('JSON.stringify(window.seen)')}") from None
    return await handle.json_value()


async def test_every_endpoint_in_chromium_across_heartbeats(
        make_server: Any, containers: Containers, page: Any) -> None:
    srv: RunningServer = await make_server(heartbeat_interval=2.0)
    name = await containers.run(COUNTER)
    await _load_client(page, srv.url)
    await page.evaluate("""([url, token, name]) => {
        const s = window.seen
        const c = window.client = new window.op.OpenPanelClient({ url, getToken: async () => token })
        c.addEventListener('state', e => s.states.push(e.detail.endpoint + ':' + e.detail.state))
        c.addEventListener('error', e => s.errors.push(e.detail.code))
        c.subscribeLogs(name, { tail: 5 }, l => s.logs.push(l.data))
        c.subscribeStats(name, { interval: 1000 }, m => { s.stats++ })
        c.subscribeMetrics({ interval: 1000 }, m => { s.metrics++ })
        c.subscribeEvents({}, m => { s.events++ })
        const t = c.openTerminal(name, { cols: 80, rows: 24 })
        t.addEventListener('opened', () => t.write('echo "sum=$((40+2))"\\n'))
        t.addEventListener('output', e => s.term.push(e.detail.data))
    }""", [srv.url.replace("http://", "ws://"), make_token(), name])
    await _wait_for(page, "window.seen.term.join('').includes('sum=42')")
    # Time itself is under test: three heartbeat intervals and more, all answered.
    await asyncio.sleep(3.5 * srv.settings.heartbeat_interval * SECOND)
    seen = await page.evaluate("window.seen")
    assert seen["stats"] >= 3 and seen["metrics"] >= 3, seen
    nums = _numbers(seen["logs"])
    assert nums == list(range(nums[0], nums[0] + len(nums))), nums  # in order, no gap, no dup
    assert len(nums) > 30
    assert seen["errors"] == []
    # connected once each and never again: heartbeats answered, nothing reconnected
    assert not [s for s in seen["states"] if s.endswith(":reconnecting")], seen["states"]
    assert sorted(seen["states"]) == sorted(
        f"{e}:{st}" for e in ("containers", "metrics", "logs", "terminal")
        for st in ("connecting", "authenticated")), seen["states"]
    await page.evaluate("window.client.close()")


async def test_the_client_survives_a_server_sigkill_under_logs_in_chromium(
        engine: None, containers: Containers, page: Any, tmp_path: Path) -> None:
    """Logs: no gap, no duplicate. Events: those that happened while the server was dead
    arrive after the restart (resumed with `since`), once."""
    proc = ServerProcess(free_port(), tmp_path)
    await proc.start()
    try:
        name = await containers.run(COUNTER)
        base = f"http://127.0.0.1:{proc.port}"
        await _load_client(page, base)
        await page.evaluate("""([url, token, name]) => {
            const s = window.seen
            s.events = []
            const c = window.client = new window.op.OpenPanelClient({ url, getToken: async () => token })
            c.addEventListener('state', e => s.states.push(e.detail.endpoint + ':' + e.detail.state))
            c.subscribeLogs(name, { tail: 0 }, l => s.logs.push(l.data), e => s.errors.push(e.code))
            c.subscribeEvents({}, m => {
                if (m.type === 'docker_event') {
                    const e = m.event
                    const who = e.Actor.Attributes.name
                    s.events.push([e.timeNano, e.Type, e.Action, e.Actor.ID, who].join(' '))
                }
            }, e => s.errors.push(e.code))
        }""", [proc.url, make_token(), name])
        await _wait_for(page, "window.seen.logs.length >= 10 && "
                              "window.seen.states.includes('logs:authenticated')")
        before_kill = await containers.run("true", name=unique_name("opws-before"))
        await _wait_for(page, f"window.seen.events.some(e => e.endsWith(' {before_kill}'))")
        await proc.kill()  # SIGKILL: no close frame, no goodbye
        during = unique_name("opws-during")
        await docker("create", "--name", during, TEST_IMAGE, "true")
        await docker("rm", during)
        await proc.start()
        await _wait_for(
            page, "window.seen.states.filter(s => s === 'containers:authenticated').length >= 2", 60)
        before = len(await page.evaluate("window.seen.logs"))
        await _wait_for(page, f"window.seen.logs.length >= {before + 20}")
        await _wait_for(page, f"window.seen.events.some(e => e.includes(' destroy ') "
                              f"&& e.endsWith(' {during}'))")
        # An absence: anything replayed twice would have arrived within this window.
        await asyncio.sleep(1.0 * SECOND)
        seen = await page.evaluate("window.seen")
        await page.evaluate("window.client.close()")
    finally:
        await proc.kill()
    assert "containers:reconnecting" in seen["states"] and seen["errors"] == [], seen
    nums = _numbers(seen["logs"])
    dups = len(nums) - len(set(nums))
    gaps = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
    assert dups == 0 and gaps == [], f"{dups} duplicates, missing {gaps[:20]}"
    assert nums == sorted(nums)
    events: list[str] = seen["events"]
    assert len(events) == len(set(events)), [e for e in events if events.count(e) > 1]
    during_events = [e.split(" ")[2] for e in events if e.endswith(" " + during)]
    assert during_events == ["create", "destroy"], during_events


async def test_the_client_survives_a_server_sigkill_under_logs_in_node(
        engine: None, containers: Containers, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/ensure-docker.sh")
    proc = ServerProcess(free_port(), tmp_path)
    await proc.start()
    name = await containers.run(COUNTER)
    script = tmp_path / "follow.mjs"
    script.write_text(f"""
import {{ OpenPanelClient }} from {str(CLIENT_JS)!r}
const c = new OpenPanelClient({{ url: {proc.url!r}, token: {make_token()!r} }})
c.addEventListener('state', e => console.log('STATE ' + e.detail.state))
c.subscribeLogs({name!r}, {{ tail: 0 }}, l => console.log('LINE ' + l.data),
                e => console.log('ERROR ' + e.code))
process.on('SIGTERM', () => {{ c.close(); process.exit(0) }})
""")
    follower = await asyncio.create_subprocess_exec(
        node, "--experimental-websocket", str(script), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    assert follower.stdout is not None
    out: list[str] = []

    async def read_until(predicate: Any, timeout: float = 60.0) -> None:
        assert follower.stdout is not None
        deadline = time.monotonic() + scaled(timeout)
        while not predicate():
            raw = await asyncio.wait_for(follower.stdout.readline(), max(0.1, deadline - time.monotonic()))
            if not raw:
                raise AssertionError("the Node client ended: " + "\n".join(out[-20:]))
            out.append(raw.decode().rstrip("\n"))

    try:
        await read_until(lambda: sum(x.startswith("LINE ") for x in out) >= 10)
        await proc.kill()  # SIGKILL: no close frame, no goodbye
        await read_until(lambda: "STATE reconnecting" in out)
        await proc.start()
        await read_until(lambda: out.count("STATE authenticated") >= 2)
        mark = len(out)
        await read_until(lambda: sum(x.startswith("LINE ") for x in out[mark:]) >= 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            follower.terminate()
        await follower.wait()
        await proc.kill()
    nums = _numbers([x[5:] for x in out if x.startswith("LINE ")])
    assert not [x for x in out if x.startswith("ERROR")], out
    assert "STATE reconnecting" in out
    assert len(nums) == len(set(nums)), "duplicates"
    assert sorted(set(range(nums[0], nums[-1] + 1)) - set(nums)) == [], "gap"


async def test_the_readme_examples_run_in_chromium(
        server: RunningServer, containers: Containers, page: Any) -> None:
    """clients/js/README.md's examples, as written (URL, token and container filled in),
    one module script on a page of the gateway's origin."""
    readme = (ROOT / "clients" / "js" / "README.md").read_text()
    blocks = [b for b in re.findall(r"```javascript\n(.*?)```", readme, flags=re.S)
              if "xterm" not in b and "client.close()" not in b]
    assert blocks and "import { OpenPanelClient } from '/client/openpanel-ws.js'" in blocks[0]
    name = await containers.run(COUNTER)
    code = ("\n".join(blocks).replace("ws://localhost:3001", server.url.replace("http://", "ws://"))
            .replace("your-jwt-token", make_token()).replace("container-123", name))
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(msg.text))
    await open_page(page, server.url + "/healthz")
    await page.add_script_tag(content=code, type="module")
    wanted = ("Log: line-", "Stats:", "containers: authenticated", "logs: authenticated", "cpu ")
    try:
        await eventually(lambda: all(any(x.startswith(w) for x in logs) for w in wanted), 30)
    except AssertionError:
        raise AssertionError(logs[-20:]) from None
    assert not [x for x in logs if x.startswith(("Error:", "WebSocket error:"))], logs


async def test_held_keys_are_coalesced_not_rejected_in_chromium(
        server: RunningServer, containers: Containers, page: Any) -> None:
    """400 keystrokes written at once (a held key, a paste typed char by char) against a
    terminal limit of 10 messages/s: none rejected, none lost."""
    name = await containers.run()
    await _load_client(page, server.url)
    await page.evaluate("""([url, token, name]) => {
        const s = window.seen
        const c = window.client = new window.op.OpenPanelClient({ url, token })
        c.addEventListener('error', e => s.errors.push(e.detail.code))
        const t = c.openTerminal(name, { cols: 200, rows: 24 })
        t.addEventListener('error', e => s.errors.push(e.detail.code))
        t.addEventListener('output', e => s.term.push(e.detail.data))
        t.addEventListener('opened', () => {
            const keys = 'echo ' + '0123456789'.repeat(40).split('').join('') + ' | wc -c\\n'
            for (const ch of keys) t.write(ch)
        })
    }""", [server.url.replace("http://", "ws://"), make_token(), name])
    out = await _wait_for(page, "window.seen.term.join('').match(/\\n\\s*401\\s*\\r?\\n/)", 30)
    assert out
    assert await page.evaluate("window.seen.errors") == []
    await page.evaluate("window.client.close()")


async def test_a_command_without_tty_in_chromium(
        server: RunningServer, containers: Containers, page: Any) -> None:
    """The terminal extensions through the JS client: `command`, `tty: false`, `stdin:
    false`; output names its stream, `closed` carries the exit code."""
    name = await containers.run()
    await _load_client(page, server.url)
    closed = await page.evaluate("""([url, token, name]) => new Promise((resolve) => {
        const s = window.seen
        const c = new window.op.OpenPanelClient({ url, token })
        const t = c.openTerminal(name, { tty: false, stdin: false,
                                        command: ['sh', '-c', 'echo out; sleep 0.2; echo err >&2; exit 3'] })
        t.addEventListener('output', e => s.term.push([e.detail.stream, e.detail.data]))
        t.addEventListener('error', e => s.errors.push(e.detail.code))
        t.addEventListener('closed', e => { c.close(); resolve(e.detail) })
    })""", [server.url.replace("http://", "ws://"), make_token(), name])
    seen = await page.evaluate("window.seen")
    assert closed == {"reason": "Process exited", "exitCode": 3}, closed
    assert seen["term"] == [["stdout", "out\n"], ["stderr", "err\n"]], seen
    assert seen["errors"] == []


async def test_get_token_refreshes_before_exp_on_the_open_connection_in_chromium(
        make_server: Any, page: Any) -> None:
    """Tokens that live 4 s on a server with 1 s leeway: the client re-authenticates on
    the open connection before each `exp`, so the connection outlives every token."""
    srv: RunningServer = await make_server(jwt_leeway=1.0)
    tokens = [make_token(ttl_seconds=4.0 * (i + 1)) for i in range(6 + int(3 * SECOND))]
    await _load_client(page, srv.url)
    await page.evaluate("""([url, tokens]) => {
        const s = window.seen
        let n = 0
        s.tokens = 0
        const c = window.client = new window.op.OpenPanelClient({
            url, getToken: async () => { s.tokens++; return tokens[n++] } })
        c.addEventListener('state', e => s.states.push(e.detail.state))
        c.addEventListener('error', e => s.errors.push(e.detail.code))
        c.subscribeMetrics({ interval: 500 }, () => { s.metrics++ }, e => s.errors.push(e.code))
    }""", [srv.url.replace("http://", "ws://"), tokens])
    # Time itself is under test: past the first two tokens' exp + leeway.
    await asyncio.sleep(10.0 * SECOND)
    seen = await page.evaluate("window.seen")
    await page.evaluate("window.client.close()")
    assert seen["errors"] == [] and seen["states"] == ["connecting", "authenticated"], seen
    assert seen["tokens"] >= 3, seen  # re-authenticated on the same connection
    before = seen["metrics"]
    assert before >= 15, seen


async def test_two_hosts_in_chromium(make_server: Any, containers: Containers, page: Any) -> None:
    """The same container on two hosts (two configurations of the local engine) is two
    subscriptions; lines, samples and the terminal name their host; a host route works."""
    url = Settings().docker_host
    srv: RunningServer = await make_server(hosts=hosts_from_env(f"local={url},other={url}"))
    name = await containers.run("echo hello; sleep 3600")
    await _load_client(page, srv.url)
    await page.evaluate("""([token, name]) => {
        const c = new op.OpenPanelClient({ url: location.origin, token, host: 'other' })
        window.c = c
        window.seen.hosts = { lines: [], stats: [], term: [], routed: [], list: [] }
        c.subscribeLogs(name, { host: 'local' }, l => seen.hosts.lines.push(`${l.host}:${l.data}`))
        c.subscribeLogs(name, {}, l => seen.hosts.lines.push(`${l.host}:${l.data}`))
        c.subscribeStats(name, { interval: 1000 }, m => seen.hosts.stats.push(m.host))
        const t = c.openTerminal(name, { command: ['echo', 'hi'], tty: false, stdin: false })
        t.addEventListener('opened', () => seen.hosts.term.push(t.host))
        const routed = new op.OpenPanelClient({ url: location.origin, token, hostRoute: 'local' })
        window.routed = routed
        routed.subscribeLogs(name, {}, l => seen.hosts.routed.push(`${l.host}:${l.data}`))
        c.hosts().then(rows => { seen.hosts.list = rows.map(h => `${h.id}:${h.state}`) })
    }""", [make_token(), name])
    await _wait_for(page, "seen.hosts.lines.length >= 2 && seen.hosts.stats.length >= 1 "
                          "&& seen.hosts.term.length && seen.hosts.routed.length && seen.hosts.list.length")
    seen = await page.evaluate("seen.hosts")
    assert sorted(seen["lines"]) == ["local:hello", "other:hello"]
    assert set(seen["stats"]) == {"other"} and seen["term"] == ["other"]
    assert seen["routed"] == ["local:hello"]
    assert seen["list"] == ["local:up", "other:up"]
    await page.evaluate("c.close(); routed.close()")
