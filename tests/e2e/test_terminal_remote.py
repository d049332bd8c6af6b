"""Terminals on a remote host, end to end: engine2 (scripts/ensure-hosts.sh) over TCP+TLS
and over SSH (docs/terminal.md "Hosts"). Resize and exit code, no process left after
close or grace expiry, crash clean-up, and a reload, which ends these sessions with
"Service restart" (their attach streams cannot cross the re-exec) and hands the local
host's on."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_terminal import TIMEOUT, Term, assert_no_leftovers, wait_for_process
from test_terminal_sessions import drop

from client_support import ServerProcess
from helpers import RunningServer, WsClient, eventually, free_port, scaled
from hosts_support import (
    Engine2Containers,
    HungProxy,
    docker2,
    local_host,
    ssh_host,
    ssh_toml,
    tls_host,
    tls_toml,
)
from openpanel_ws.hosts.config import HostConfig

ENGINE_TIMEOUT = 3.0  # the hung host's engine timeout (seconds)


def remote_host(kind: str) -> HostConfig:
    return tls_host() if kind == "tls" else ssh_host()


async def leftovers2(name: str) -> list[str]:
    """Live processes in the engine2 container other than its PID 1 and our `ps`."""
    out = await docker2("exec", name, "ps", "-o", "pid,stat,args")
    rows = []
    for line in out.splitlines()[1:]:
        pid, stat, args = ([*line.split(None, 2), "", ""])[:3]
        if pid == "1" or stat.startswith("Z") or args.startswith("ps "):
            continue
        rows.append(line.strip())
    return rows


async def no_leftovers2(name: str) -> None:
    async def none_left() -> bool:
        return not await leftovers2(name)

    try:
        await eventually(none_left, TIMEOUT, step=0.2)
    except AssertionError:
        raise AssertionError(f"processes left behind: {await leftovers2(name)}") from None


async def running2(name: str, needle: str) -> None:
    async def running() -> bool:
        return any(needle in row for row in await leftovers2(name))

    await eventually(running, TIMEOUT, step=0.2, what=f"{needle!r} running on engine2")


async def term_on(server: RunningServer, path: str) -> Term:
    client = await server.connect(path)
    await client.auth()
    return Term(client)


@pytest.mark.parametrize("kind", ["tls", "ssh"])
async def test_resize_exit_code_and_nothing_left(
        make_server: Any, engine2_containers: Engine2Containers, kind: str) -> None:
    host = remote_host(kind)
    server: RunningServer = await make_server(hosts=(local_host(), host))
    name = await engine2_containers.run()
    term = await term_on(server, f"/hosts/{host.id}/ws/terminal")
    opened = await term.open(name, cols=90, rows=20)
    assert (opened["type"], opened["host"]) == ("terminal_opened", host.id), opened
    await term.type("stty size\n")
    await term.until("20 90\r\n")
    await term.send({"type": "resize", "cols": 101, "rows": 31})
    mark = len(term.text)
    await term.type("stty size; sleep 1031 & top\n")
    await term.until("31 101\r\n", start=mark)
    await running2(name, "top")
    await term.send({"type": "close_terminal"})
    assert (await term.closed())["reason"] == "User closed"
    assert await leftovers2(name) == []
    # The program's own exit: its code, and its background job killed after it.
    again = await term_on(server, f"/hosts/{host.id}/ws/terminal")
    assert (await again.open(name))["host"] == host.id
    await again.type("sleep 1032 & exit 7\n")
    assert await again.closed() == {"type": "terminal_closed", "reason": "Process exited",
                                    "exitCode": 7}
    assert await leftovers2(name) == []
    # The container is engine2's: the local host does not have it.
    local = await term_on(server, "/ws/terminal")
    assert await local.open(name) == {"type": "terminal_error", "host": "local", "containerId": name,
                                      "message": "Container not found or not running"}


@pytest.mark.parametrize("kind", ["tls", "ssh"])
async def test_grace_expiry_leaves_no_process(
        make_server: Any, engine2_containers: Engine2Containers, kind: str) -> None:
    host = remote_host(kind)
    server: RunningServer = await make_server(hosts=(local_host(), host), terminal_grace=2)
    name = await engine2_containers.run()
    term = await term_on(server, "/ws/terminal")
    assert (await term.open(name, host=host.id))["host"] == host.id
    await term.type("sleep 1033 & top\n")
    await running2(name, "top")
    drop(term)
    await no_leftovers2(name)


class RemoteHostsServer(ServerProcess):
    """`serve` with a config file: hosts `local`, `tls` and `ssh` (engine2 twice)."""

    def environment(self) -> dict[str, str]:
        config = self.state_dir / "hosts.toml"
        config.write_text('[[hosts]]\nid = "local"\nengine = "unix:///var/run/docker.sock"\n\n'
                          + tls_toml() + "\n" + ssh_toml())
        return {**super().environment(), "OPENPANEL_WS_CONFIG": str(config)}


async def connect_process(server: ServerProcess) -> WsClient:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.url + "/ws/terminal")
    client = WsClient(ws, session)
    await client.expect("connected")
    await client.auth()
    return client


async def test_a_reload_ends_remote_sessions_and_hands_local_ones_on(
        containers: Any, engine2_containers: Engine2Containers, tmp_path: Path) -> None:
    local_name = await containers.run()
    remote_names = {kind: await engine2_containers.run() for kind in ("tls", "ssh")}
    server = RemoteHostsServer(free_port(), tmp_path)
    await server.start()
    try:
        terms: dict[str, Term] = {}
        sessions: dict[str, str] = {}
        for kind, name in (("local", local_name), *remote_names.items()):
            term = terms[kind] = Term(await connect_process(server))
            opened = await term.open(name, host=kind)
            assert opened["host"] == kind, opened
            sessions[kind] = opened["sessionId"]
            await term.type("sleep 1034 &\n")
        await wait_for_process(local_name, "sleep 1034")
        for name in remote_names.values():
            await running2(name, "sleep 1034")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        for kind in remote_names:
            assert await terms[kind].closed() == {"type": "terminal_closed",
                                                  "reason": "Service restart"}
        for kind in terms:
            assert await terms[kind].client.wait_closed(TIMEOUT) == 1012
        for name in remote_names.values():
            assert await leftovers2(name) == []  # killed before the reload

        async def reloaded() -> bool:
            try:
                client = await connect_process(server)
            except (aiohttp.ClientError, OSError):
                return False
            await client.close()
            return True

        await eventually(reloaded, TIMEOUT, what="the reloaded gateway")
        for kind, name in remote_names.items():  # nothing to resume there
            gone = await Term(await connect_process(server)).open(
                name, host=kind, sessionId=sessions[kind])
            assert (gone["type"], gone["host"]) == ("terminal_error", kind), gone
        again = Term(await connect_process(server))
        resumed = await again.open(local_name, host="local", sessionId=sessions["local"])
        assert (resumed["host"], resumed["resumed"]) == ("local", True), resumed
        await again.send({"type": "close_terminal"})
        assert (await again.closed())["reason"] == "User closed"
        await assert_no_leftovers(local_name)
    finally:
        await server.kill()


async def test_a_crash_is_cleaned_up_on_the_remote_host(
        engine2_containers: Engine2Containers, tmp_path: Path) -> None:
    name = await engine2_containers.run()
    server = RemoteHostsServer(free_port(), tmp_path)
    await server.start()
    try:
        term = Term(await connect_process(server))
        assert (await term.open(name, host="ssh"))["host"] == "ssh"
        await term.type("sleep 1035 & top\n")
        await running2(name, "top")
        await server.kill()  # SIGKILL: no clean-up at all
        await term.client.close()
        assert any("top" in row for row in await leftovers2(name)), "the crash left nothing?"
        await server.start()
        await no_leftovers2(name)
    finally:
        await server.kill()


async def test_a_hung_host_delays_no_terminal_on_another_host(
        make_server: Any, containers: Any, engine2_containers: Engine2Containers,
        hung_proxy: HungProxy) -> None:
    """An open on a host that accepts and never answers is DOCKER_UNAVAILABLE within that
    host's engine timeout; meanwhile a terminal on the local host opens and echoes; once
    the host answers again, its terminal works."""
    hung = tls_host("hung", url=hung_proxy.url, timeout=ENGINE_TIMEOUT)
    server: RunningServer = await make_server(hosts=(local_host(), hung))
    local_name, remote_name = await containers.run(), await engine2_containers.run()
    stuck = await term_on(server, "/hosts/hung/ws/terminal")
    started = time.monotonic()
    await stuck.send({"type": "open_terminal", "containerId": remote_name})
    answer = asyncio.ensure_future(stuck.next_other(TIMEOUT))
    other = await term_on(server, "/ws/terminal")
    assert (await other.open(local_name))["host"] == "local"
    await other.type('echo meanwh""ile\n')
    await other.until("meanwhile\r\n")
    assert not answer.done(), "the hung host answered before the local terminal echoed"
    assert await answer == {"type": "error", "code": "DOCKER_UNAVAILABLE",
                            "message": "Docker engine unavailable", "containerId": remote_name,
                            "host": "hung"}
    assert time.monotonic() - started < scaled(ENGINE_TIMEOUT + 5)
    hung_proxy.release()
    term = await term_on(server, "/hosts/hung/ws/terminal")
    assert (await term.open(remote_name))["host"] == "hung"
    await term.type("sleep 1036 &\n")
    await running2(remote_name, "sleep 1036")
    await term.send({"type": "close_terminal"})
    assert (await term.closed())["reason"] == "User closed"
    assert await leftovers2(remote_name) == []
