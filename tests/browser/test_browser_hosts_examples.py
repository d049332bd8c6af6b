"""The specification's JavaScript examples, verbatim, in Chromium against
`/hosts/{id}/ws/containers` of a remote host (engine2 over TCP+TLS, over SSH): a client
written against the specification alone works on a host's base URL (docs/protocol.md
"Hosts")."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from pages import open_page, sockets
from test_browser_spec_examples import HEARTBEAT, WATCH, _examples

from helpers import RunningServer, eventually, make_token
from hosts_support import Engine2Containers, HostsDescriptor, local_host, ssh_host, tls_host


def _fill_for_host(code: str, port: int, host_id: str, token: str, container: str) -> str:
    return (code.replace("ws://localhost:3001/ws/", f"ws://127.0.0.1:{port}/hosts/{host_id}/ws/")
            .replace("your-jwt-token", token).replace("container-123", container))


@pytest.mark.parametrize("transport", ["tls", "ssh"])
async def test_the_spec_examples_on_a_remote_host_in_chromium(
        make_server: Any, hosts_setup: HostsDescriptor, engine2_containers: Engine2Containers,
        page: Any, transport: str) -> None:
    typescript, reconnect = _examples()
    remote = tls_host() if transport == "tls" else ssh_host()
    srv: RunningServer = await make_server(heartbeat_interval=HEARTBEAT,
                                           hosts=(local_host(), remote))
    name = await engine2_containers.run(
        "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(msg.text))
    await open_page(page, f"{srv.url}/healthz")
    token = make_token()
    for code in (typescript, reconnect):
        assert "ws://localhost:3001/ws/containers" in code
        await page.add_script_tag(content=_fill_for_host(code, srv.port, remote.id, token, name))
    await asyncio.sleep(WATCH)  # heartbeats keep both open on the host route too
    opened = await sockets(page)
    assert len(opened) == 2, opened
    assert all(s["opened"] and s["close"] is None for s in opened), opened
    seen = [int(m.group(1)) for line in logs if (m := re.match(r"Log: line-(\d+)", line))]
    assert seen, logs[-10:]
    before = len([x for x in logs if x.startswith("Log: ")])
    await eventually(lambda: len([x for x in logs if x.startswith("Log: ")]) > before, 5)
