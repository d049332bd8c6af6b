"""The specification's JavaScript examples, verbatim, stay connected in Chromium and in
Node across several heartbeats: they never answer the JSON ping, and the server's ping
frame (answered by the WebSocket implementation itself) keeps them alive."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pages import open_page, sockets

from helpers import Containers, RunningServer, eventually, make_token, run_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "spec" / "API_WEBSOCKET.pt-BR.md"
HEARTBEAT = 2.0
WATCH = HEARTBEAT * 3 + 1.5  # three full heartbeat intervals, and then some


def _examples() -> tuple[str, str]:
    if not SPEC.exists():
        pytest.skip("the specification is not beside this checkout")
    text = SPEC.read_text()
    typescript = re.findall(r"```typescript\n(.*?)```", text, flags=re.S)[0]
    reconnect = next(b for b in re.findall(r"```javascript\n(.*?)```", text, flags=re.S)
                     if "reconnectAttempts" in b)
    return typescript, reconnect


def _fill(code: str, port: int, token: str, container: str) -> str:
    return (code.replace("ws://localhost:3001", f"ws://127.0.0.1:{port}")
            .replace("your-jwt-token", token).replace("container-123", container))


async def test_the_spec_examples_stay_connected_in_chromium(
        make_server: Any, containers: Containers, page: Any) -> None:
    typescript, reconnect = _examples()
    srv: RunningServer = await make_server(heartbeat_interval=HEARTBEAT)
    name = await containers.run("i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(msg.text))
    await open_page(page, f"{srv.url}/healthz")  # a page of the gateway's own origin
    token = make_token()
    for code in (typescript, reconnect):
        await page.add_script_tag(content=_fill(code, srv.port, token, name))
    await asyncio.sleep(WATCH)  # time itself is under test: heartbeats keep both open
    opened = await sockets(page)
    assert len(opened) == 2, opened  # the reconnect example never had to reconnect
    assert all(s["opened"] and s["close"] is None for s in opened), opened
    seen = [int(m.group(1)) for line in logs if (m := re.match(r"Log: line-(\d+)", line))]
    assert seen, logs[-10:]
    # still receiving at the end of the window
    before = len(seen)
    await eventually(lambda: len([x for x in logs if x.startswith("Log: ")]) > before, 5)
    assert len([x for x in logs if x.startswith("Log: ")]) > before


async def test_the_spec_examples_stay_connected_in_node(
        make_server: Any, containers: Containers, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/ensure-docker.sh")
    typescript, reconnect = _examples()
    srv: RunningServer = await make_server(heartbeat_interval=HEARTBEAT)
    name = await containers.run("i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    token = make_token()
    # The same recorder as in the browser, then the examples verbatim.
    recorder = """
const Native = globalThis.WebSocket
globalThis.__sockets = []
globalThis.WebSocket = class extends Native {
  constructor (...args) {
    super(...args)
    const rec = { opened: false, close: null }
    globalThis.__sockets.push(rec)
    this.addEventListener('open', () => { rec.opened = true })
    this.addEventListener('close', (e) => { rec.close = e.code; console.log('CLOSED', e.code) })
  }
}
setTimeout(() => { console.log('SOCKETS', JSON.stringify(globalThis.__sockets)); process.exit(0) }, WATCH_MS)
""".replace("WATCH_MS", str(int(WATCH * 1000)))
    script = tmp_path / "examples.mjs"
    script.write_text(recorder + "{\n" + _fill(typescript, srv.port, token, name) + "\n}\n{\n"
                      + _fill(reconnect, srv.port, token, name) + "\n}\n")
    out = await run_for(node, "--experimental-websocket", str(script), seconds=WATCH + 10)
    assert "CLOSED" not in out, out[-2000:]
    assert 'SOCKETS [{"opened":true,"close":null},{"opened":true,"close":null}]' in out, out[-2000:]
    assert re.search(r"Log: line-\d+", out), out[-2000:]
