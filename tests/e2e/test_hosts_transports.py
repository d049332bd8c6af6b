"""Every behaviour on `/hosts/{id}/ws/*` of a remote host, over each remote transport:
engine2 (a second dockerd) over TCP+TLS and over SSH (docs/hosts.md "What each transport
supports"). Logs across a restart of a container there, stats, events, a terminal with
resize and exit code and nothing left after close, the end of an exec's stdin; over SSH,
exactly one SSH connection however many streams run; a refused transport as the host's
one-line error; the start-up banner's hosts line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_containers import same_instant
from test_logs import actions_of, read_until
from test_terminal import TIMEOUT, Term
from test_terminal_extensions import Exec

from helpers import (
    Containers,
    RunningServer,
    WsClient,
    eventually,
    free_port,
    scaled,
    unique_name,
)
from hosts_support import (
    Engine2Containers,
    HostsDescriptor,
    docker2,
    local_host,
    ssh_host,
    tls_host,
)
from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.ssh import SshTransport
from openpanel_ws.hosts.config import HostConfig

TRANSPORTS = {"tls": tls_host, "ssh": ssh_host}


@pytest.fixture(params=sorted(TRANSPORTS))
def remote(request: pytest.FixtureRequest, hosts_setup: HostsDescriptor) -> HostConfig:
    config: HostConfig = TRANSPORTS[request.param]()
    return config


@pytest.fixture
async def server(make_server: Any, remote: HostConfig) -> AsyncIterator[RunningServer]:
    srv: RunningServer = await make_server(hosts=(local_host(), remote))
    yield srv


async def on_host(server: RunningServer, remote: HostConfig, name: str) -> WsClient:
    return await server.connect(f"/hosts/{remote.id}/ws/{name}", auth=True)


async def engine2_lines(name: str) -> list[tuple[str, str]]:
    """(timestamp, text) of every stdout line engine2 logged for `name`."""
    out = await docker2("logs", "--timestamps", name)
    return [tuple(line.split(" ", 1)) for line in out.splitlines()]  # type: ignore[misc]


async def leftovers2(name: str) -> list[str]:
    """Live processes in the engine2 container other than its PID 1 and our `ps`."""
    out = await docker2("exec", name, "ps", "-o", "pid,stat,args")
    rows = []
    for line in out.splitlines()[1:]:
        pid, stat, args = ([*line.split(None, 2), "", ""])[:3]
        if pid != "1" and not stat.startswith("Z") and not args.startswith("ps "):
            rows.append(line.strip())
    return rows


async def test_logs_across_a_restart(server: RunningServer, remote: HostConfig,
                                     engine2_containers: Engine2Containers) -> None:
    name = await engine2_containers.run(
        "n=$(cat /n 2>/dev/null || echo 0); echo run start $n; "
        "while :; do n=$((n+1)); echo $n > /n; echo line $n; sleep 0.05; done")
    client = await on_host(server, remote, "containers")
    await client.send({"type": "subscribe_logs", "containerId": name, "tail": "all"})
    ack = await client.expect("subscribed_logs", 15)
    assert (ack["containerId"], ack["host"]) == (name, remote.id)
    got: list[dict[str, Any]] = []

    async def read_run(runs: int) -> None:
        while True:
            starts = [i for i, m in enumerate(got) if m["data"].startswith("run start")]
            if len(starts) >= runs and len(got) - starts[-1] > 5:
                return
            got.append(await client.expect("log", 20))

    await read_run(1)
    await docker2("restart", "-t", "0", name)
    await read_run(2)
    await docker2("stop", "-t", "0", name)
    truth = await engine2_lines(name)
    while len(got) < len(truth):
        got.append(await client.expect("log", 20))
    assert [m["data"] for m in got] == [text for _, text in truth]
    assert all(same_instant(m["timestamp"], ts) for m, (ts, _) in zip(got, truth, strict=True))
    assert {m["host"] for m in got} == {remote.id}
    assert await client.quiet(1.0, "log") == []


async def test_stats(server: RunningServer, remote: HostConfig,
                     engine2_containers: Engine2Containers) -> None:
    name = await engine2_containers.run()
    client = await on_host(server, remote, "containers")
    await client.send({"type": "subscribe_stats", "containerId": name})
    assert (await client.expect("subscribed_stats", 15))["host"] == remote.id
    first = await client.expect("stats", 20)
    second = await client.expect("stats", 20)
    for stats in (first, second):
        assert stats["host"] == remote.id and stats["containerId"] == name
        assert stats["stats"]["pids"] >= 1 and "usage" in stats["stats"]["memory"], stats


async def test_events(server: RunningServer, remote: HostConfig, containers: Containers,
                      engine2_containers: Engine2Containers) -> None:
    client = await on_host(server, remote, "logs")
    await client.send({"type": "subscribe", "filters": {"type": ["container"]}})
    local_name = await containers.run("true", name=unique_name("opws-ev1"))
    name = unique_name("opws-ev2")
    await engine2_containers.run("sleep 1; exit 3", name=name)
    got = await read_until(client, lambda ms: "die" in actions_of(ms, name), timeout=40)
    assert actions_of(got, name)[:2] == ["create", "start"]
    assert {m["host"] for m in got if m.get("type") == "docker_event"} == {remote.id}
    # Only this host's events on its route: the local engine's container is not heard.
    assert actions_of(got, local_name) == []
    die = next(m for m in got if m.get("type") == "docker_event"
               and m["event"]["Action"] == "die" and m["event"]["Actor"]["Attributes"]["name"] == name)
    assert die["event"]["Actor"]["Attributes"]["exitCode"] == "3"


async def test_a_terminal_with_resize_and_exit_code(
        server: RunningServer, remote: HostConfig, engine2_containers: Engine2Containers) -> None:
    name = await engine2_containers.run()
    term = Term(await on_host(server, remote, "terminal"))
    opened = await term.open(name, cols=100, rows=30)
    assert (opened["type"], opened["host"]) == ("terminal_opened", remote.id), opened
    await term.type("stty size\n")
    await term.until("30 100\r\n")
    await term.send({"type": "resize", "cols": 120, "rows": 40})
    mark = len(term.text)
    await term.type("stty size\n")
    await term.until("40 120\r\n", start=mark)
    await term.type("sleep 1000 &\n")

    async def sleeping() -> bool:
        return any("sleep 1000" in row for row in await leftovers2(name))

    await eventually(sleeping, TIMEOUT, step=0.2, what="sleep 1000 running")
    await term.type("exit 7\n")
    assert await term.closed() == {"type": "terminal_closed", "reason": "Process exited",
                                   "exitCode": 7}
    assert await leftovers2(name) == []
    # Closed by the client: nothing left either.
    assert (await term.open(name))["type"] == "terminal_opened"
    await term.type("sleep 1001 & top\n")
    await term.until("Mem:")
    await term.send({"type": "close_terminal"})
    assert await term.closed() == {"type": "terminal_closed", "reason": "User closed"}
    assert await leftovers2(name) == []


def ssh_connections_of_this_process(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections("tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def test_one_ssh_connection_however_many_streams(
        make_server: Any, hosts_setup: HostsDescriptor,
        engine2_containers: Engine2Containers) -> None:
    remote = ssh_host()
    server: RunningServer = await make_server(hosts=(local_host(), remote))
    names = [await engine2_containers.run("while :; do echo tick; sleep 0.2; done")
             for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for name in names:  # logs and stats of three containers, on one connection each
            client = await on_host(server, remote, "containers")
            stack.push_async_callback(client.close)
            await client.send({"type": "subscribe_logs", "containerId": name})
            await client.send({"type": "subscribe_stats", "containerId": name})
            clients.append(client)
        events = await on_host(server, remote, "logs")
        await events.send({"type": "subscribe", "filters": {}})
        term = Term(await on_host(server, remote, "terminal"))
        assert (await term.open(names[0]))["type"] == "terminal_opened"
        for client in clients:
            await client.expect("log", 20)
            await client.expect("stats", 20)
        await term.type('echo o""k\n')
        await term.until("ok\r\n")
        engine = server.services.hosts.get(remote.id).engine
        assert engine.open_streams >= 7  # 3 logs, 3 stats, the events stream
        transport = engine.transport
        assert isinstance(transport, SshTransport)
        assert transport.connections_made == 1
        port = hosts_setup.raw["ssh"]["port"]
        assert ssh_connections_of_this_process(port) == 1
        await term.send({"type": "close_terminal"})
        await term.closed()


async def test_a_refused_transport_is_its_host_s_one_line_error(
        make_server: Any, hosts_setup: HostsDescriptor) -> None:
    """The host's `down` error is the transport's one line (wrong CA, unknown host key)."""
    bad = (tls_host("badca", certs=hosts_setup.wrong_ca),
           tls_host("expired", certs=hosts_setup.expired),
           ssh_host("stranger", known_hosts=hosts_setup.known_hosts_empty))
    server: RunningServer = await make_server(hosts=(local_host(), *bad))

    async def all_down() -> bool:
        return all(not server.services.hosts.get(h.id).up
                   and server.services.hosts.get(h.id).status.error for h in bad)

    await eventually(all_down, scaled(20), step=0.1, what="the bad hosts down")
    errors = {h.id: server.services.hosts.get(h.id).status.error for h in bad}
    assert errors["badca"].startswith("TLS: certificate verify failed: "), errors
    assert errors["expired"] == (f"TLS: the engine at 127.0.0.1:{hosts_setup.tcp_port} refused "
                                 "the client certificate (sslv3 alert bad certificate)"), errors
    assert errors["stranger"] == (
        f"ssh root@127.0.0.1:{hosts_setup.raw['ssh']['port']}: host key is not in "
        f"{hosts_setup.known_hosts_empty}: refused (check the key, then add it with "
        "ssh-keyscan)"), errors
    assert all("\n" not in e for e in errors.values() if e)


async def test_eof_ends_the_programs_input(
        server: RunningServer, remote: HostConfig, engine2_containers: Engine2Containers) -> None:
    """The end of stdin crosses the transport: TLS close_notify, an SSH channel's EOF."""
    name = await engine2_containers.run()
    ex = Exec(await on_host(server, remote, "terminal"))
    opened = await ex.open(name, tty=False, command=["sh", "-c", "cat; echo done"])
    assert opened["type"] == "terminal_opened", opened
    await ex.send({"type": "input", "data": "abc\n"})
    await ex.send({"type": "eof"})
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 0}
    assert ex.out == {"stdout": "abc\ndone\n"}


async def test_the_banner_lists_the_hosts(hosts_setup: HostsDescriptor, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPANEL_WS_")}
    env.update(OPENPANEL_WS_HOSTS=(f"local=unix:///var/run/docker.sock,"
                                   f"tls={hosts_setup.tcp_url}?certs={hosts_setup.certs},"
                                   f"ssh={hosts_setup.ssh_url}"),
               OPENPANEL_WS_DEFAULT_HOST="tls", OPENPANEL_WS_JWT_SECRET="s" * 40,
               XDG_STATE_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openpanel_ws", "serve", "--port", str(free_port()), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        while not any(line.startswith("hosts: ") for line in banner) and len(banner) < 16:
            banner.append((await asyncio.wait_for(proc.stdout.readline(), scaled(30))).decode())
    finally:
        proc.terminate()
        await proc.wait()
    ssh = hosts_setup.ssh_url
    assert banner[-1] == (f"hosts: local (unix:///var/run/docker.sock), tls ({hosts_setup.tcp_url}, "
                          f"TLS) [default], ssh ({ssh})\n"), banner


@pytest.mark.parametrize("dial_stdio", [False, True], ids=["streamlocal", "dial-stdio"])
async def test_ssh_channels_both_ways(hosts_setup: HostsDescriptor, dial_stdio: bool,
                                      engine2_containers: Engine2Containers) -> None:
    """Requests and an exec attach (until the program's end), over direct-streamlocal
    channels and over `docker system dial-stdio` (the fallback when the server refuses
    streamlocal), against the real sshd and engine2."""
    name = await engine2_containers.run()
    engine = DockerEngine(ssh_host().target)
    transport = engine.transport
    assert isinstance(transport, SshTransport)
    transport.dial_stdio = dial_stdio
    try:
        assert (await engine.inspect_container(name))["Name"] == f"/{name}"
        created = await engine.post(f"/containers/{name}/exec", {
            "AttachStdin": True, "AttachStdout": True, "Tty": True, "Cmd": ["cat"]})
        reader, writer = await engine.hijack(f"/exec/{created['Id']}/start",
                                             {"Detach": False, "Tty": True})
        writer.write(b"over ssh\n")
        output = b""
        async with asyncio.timeout(scaled(20)):
            while output.count(b"over ssh") < 2:  # the TTY's echo, then cat's copy
                chunk = await reader.read(4096)
                assert chunk, output
                output += chunk
            writer.write(b"\x04")  # ^D: cat ends (a TTY's end of input)
            await reader.read()  # until the engine ends the attach stream
        writer.close()
        info = await engine.get(f"/exec/{created['Id']}/json")
        assert (info["Running"], info["ExitCode"]) in ((False, 0), (True, None)), info
        assert transport.connections_made == 1
        assert transport.dial_stdio is dial_stdio
    finally:
        await engine.close()
