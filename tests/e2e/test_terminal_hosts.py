"""Terminals on several Docker hosts, end to end (docs/terminal.md "Hosts"): open on a
named host (the `host` field or a /hosts/{id}/ws/terminal route), `host` on
terminal_opened and on refusals, terminals switched off per host, sessions that belong
to their host, host scopes (at open, at re-auth), and no process left on the second host.

The second host is a second configuration of the local engine ("other"): what is under
test is the gateway's addressing, not a transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from test_terminal import TIMEOUT, Term, assert_no_leftovers, leftovers, wait_for_process
from test_terminal import _pipe as pipe
from test_terminal_sessions import drop

from client_support import ServerProcess
from helpers import (
    Containers,
    RunningServer,
    WsClient,
    docker,
    eventually,
    free_port,
    make_token,
)
from openpanel_ws.config import Settings
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.gateways.terminal.journal import JOURNAL_FILE, TerminalJournal
from openpanel_ws.hosts.config import HostConfig, hosts_from_env
from openpanel_ws.server import GATEWAYS_KEY

UNKNOWN = "Terminal session not found or expired"
EXEC_REQUEST = re.compile(rb"((?:GET|POST|HEAD) /\S*exec\S*) HTTP/1\.1")


def local_engine_hosts() -> tuple[HostConfig, ...]:
    """`local` and `other` on the one local engine, and `noterm`, whose terminals are off."""
    url = Settings().docker_host
    local, other, noterm = hosts_from_env(f"local={url},other={url},noterm={url}")
    return local, other, dataclasses.replace(noterm, terminals=False)


@pytest.fixture
async def hosts_server(make_server: Any, tmp_path: Path) -> RunningServer:
    server: RunningServer = await make_server(hosts=local_engine_hosts(),
                                              terminal_audit_log=tmp_path / "audit.jsonl",
                                              terminal_record_dir=tmp_path / "casts")
    return server


async def term_on(server: RunningServer, path: str = "/ws/terminal", token: str | None = None) -> Term:
    client = await server.connect(path)
    await client.auth(token)
    return Term(client)


async def connect_process(server: ServerProcess) -> WsClient:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.url + "/ws/terminal")
    client = WsClient(ws, session)
    await client.expect("connected")
    await client.auth()
    return client


async def exec_ids(name: str) -> str:
    return await docker("inspect", "-f", "{{json .ExecIDs}}", name)


async def test_open_on_a_named_host_and_close_leaves_nothing(
        hosts_server: RunningServer, containers: Containers, tmp_path: Path) -> None:
    name = await containers.run()
    term = await term_on(hosts_server)
    opened = await term.open(name, host="other")
    assert opened == {"type": "terminal_opened", "containerId": name, "host": "other",
                      "sessionId": opened["sessionId"]}
    await term.type("sleep 1021 & echo hel\"\"lo\n")
    await term.until("hello\r\n")
    await wait_for_process(name, "sleep 1021")
    await term.send({"type": "close_terminal"})
    assert (await term.closed())["reason"] == "User closed"
    assert await leftovers(name) == []
    # The audit log and the recording name the host.
    lines = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    assert [(line["event"], line["host"]) for line in lines] == [
        ("terminal_start", "other"), ("terminal_end", "other")]
    (cast,) = (tmp_path / "casts").glob("*.cast")
    assert orjson.loads(cast.read_bytes().splitlines()[0])["host"] == "other"


async def test_the_route_names_the_host_and_the_default_is_the_first(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    routed = await term_on(hosts_server, "/hosts/other/ws/terminal")
    assert (await routed.open(name))["host"] == "other"
    plain = await term_on(hosts_server)
    assert (await plain.open(name))["host"] == "local"
    clash = await term_on(hosts_server, "/hosts/other/ws/terminal")
    refused = await clash.open(name, host="local")
    assert (refused["type"], refused["code"], refused["field"]) == ("error", "INVALID_MESSAGE", "host")
    unknown = await (await term_on(hosts_server)).open(name, host="nope")
    assert unknown == {"type": "error", "code": "INVALID_MESSAGE", "message": "Unknown host 'nope'",
                       "field": "host", "containerId": name, "host": "nope"}
    fresh = await term_on(hosts_server)
    assert await fresh.open("opws-does-not-exist", host="other") == {
        "type": "terminal_error", "message": "Container not found or not running",
        "containerId": "opws-does-not-exist", "host": "other"}


async def test_terminals_switched_off_on_a_host(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    off = {"type": "terminal_error", "message": "Terminals are switched off on host 'noterm'",
           "containerId": name, "host": "noterm"}
    routed = await term_on(hosts_server, "/hosts/noterm/ws/terminal")
    assert await routed.open(name) == off
    assert await routed.open("opws-does-not-exist") == {**off, "containerId": "opws-does-not-exist"}
    plain = await term_on(hosts_server)
    assert await plain.open(name, host="noterm") == off
    assert await exec_ids(name) == "null"  # no exec was created
    # The other hosts are not affected, on the same connection.
    assert (await plain.open(name, host="other"))["host"] == "other"


async def test_a_session_resumes_only_on_its_own_host(
        make_server: Any, containers: Containers) -> None:
    server: RunningServer = await make_server(hosts=local_engine_hosts(), terminal_grace=30)
    name = await containers.run()
    term = await term_on(server)
    session_id = (await term.open(name, host="other"))["sessionId"]
    await term.type("KEEP=on-other\n")
    drop(term)
    expected = {"type": "terminal_error", "message": UNKNOWN, "containerId": name,
                "host": "local", "sessionId": session_id}
    for path, fields in (("/ws/terminal", {"host": "local"}), ("/ws/terminal", {}),
                         ("/hosts/local/ws/terminal", {})):
        elsewhere = await term_on(server, path)
        assert await elsewhere.open(name, sessionId=session_id, **fields) == expected
        # ... exactly the answer to an id that never existed.
        assert await elsewhere.open(name, sessionId="session-0000000000000000", **fields) == {
            **expected, "sessionId": "session-0000000000000000"}
    home = await term_on(server, "/hosts/other/ws/terminal")
    resumed = await home.open(name, sessionId=session_id)
    assert (resumed["type"], resumed["host"], resumed["resumed"]) == ("terminal_opened", "other", True)
    await home.type('echo "$KEEP"\n')
    await home.until("on-other\r\n")


async def test_a_host_out_of_scope_is_refused_before_the_engine(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    token = make_token("op", hosts=["local"])
    term = await term_on(hosts_server, token=token)
    for ref in (name, "opws-does-not-exist"):  # the same answer whether it exists or not
        assert await term.open(ref, host="other") == {
            "type": "error", "code": "PERMISSION_DENIED", "message": "Permission denied",
            "containerId": ref, "host": "other"}
    routed = await term_on(hosts_server, "/hosts/other/ws/terminal", token=token)
    assert (await routed.open(name))["code"] == "PERMISSION_DENIED"
    assert await exec_ids(name) == "null"
    assert (await term.open(name))["host"] == "local"  # the default host is in scope


async def test_reauth_without_the_host_ends_the_terminal(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await term_on(hosts_server)
    assert (await term.open(name, host="other"))["host"] == "other"
    await term.type("sleep 1022 &\n")
    await wait_for_process(name, "sleep 1022")
    await term.send({"type": "auth", "token": make_token("tester", hosts=["local"])})
    assert (await term.next_other())["type"] == "authenticated"
    assert await term.next_other() == {"type": "terminal_closed", "reason": "permission"}
    await assert_no_leftovers(name)
    # A terminal on a host still allowed stays open across the same narrowing.
    kept = await term_on(hosts_server)
    assert (await kept.open(name, host="local"))["host"] == "local"
    await kept.send({"type": "auth", "token": make_token("tester", hosts=["local"])})
    assert (await kept.next_other())["type"] == "authenticated"
    await kept.type('echo st""ill\n')
    await kept.until("still\r\n")


async def test_a_reload_ends_sessions_it_cannot_hand_on(
        make_server: Any, containers: Containers, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exec attach stream over TLS or SSH cannot survive the re-exec: those sessions
    end before it ("Service restart"), with their processes; the others are handed on.
    `other` stands for such a host here: its transport says it cannot hand over."""
    server: RunningServer = await make_server(hosts=local_engine_hosts(), terminal_grace=30)
    other = server.services.hosts.get("other")
    assert other is not None
    monkeypatch.setattr(other.engine.transport, "hands_over", False)
    remote_name, local_name = await containers.run(), await containers.run()
    remote = await term_on(server)
    assert (await remote.open(remote_name, host="other"))["host"] == "other"
    kept = await term_on(server)
    assert (await kept.open(local_name, host="local"))["host"] == "local"
    for term, name in ((remote, remote_name), (kept, local_name)):
        await term.type("sleep 1023 &\n")
        await wait_for_process(name, "sleep 1023")
    path = await server.app[GATEWAYS_KEY]["terminal"].hand_off()
    assert await remote.closed() == {"type": "terminal_closed", "reason": "Service restart"}
    await assert_no_leftovers(remote_name)
    assert path is not None
    records = orjson.loads(path.read_bytes())["sessions"]
    assert [(r["host"], r["containerRef"]) for r in records] == [("local", local_name)]
    assert any("sleep 1023" in row for row in await leftovers(local_name))  # handed on alive
    path.unlink()
    os.close(records[0]["fd"])  # the descriptor the re-executed gateway would adopt


async def test_a_reload_with_nothing_to_hand_on_still_writes_the_hand_off(
        make_server: Any) -> None:
    """The file tells the re-executed gateway that the journal rows of its pid are its
    own past (a kill a reload left under way), to be reaped."""
    server: RunningServer = await make_server(hosts=local_engine_hosts(), terminal_grace=30)
    path = await server.app[GATEWAYS_KEY]["terminal"].hand_off()
    assert path is not None
    assert orjson.loads(path.read_bytes()) == {"pid": os.getpid(), "sessions": []}
    path.unlink()


async def test_grace_expiry_on_the_second_host_leaves_no_process(
        make_server: Any, containers: Containers) -> None:
    server: RunningServer = await make_server(hosts=local_engine_hosts(), terminal_grace=2)
    name = await containers.run()
    term = await term_on(server, "/hosts/other/ws/terminal")
    assert (await term.open(name))["host"] == "other"
    await term.type("sleep 1024 & top\n")
    await wait_for_process(name, "top")
    drop(term)
    await assert_no_leftovers(name)  # after the grace period
    assert server.app[GATEWAYS_KEY]["terminal"].open_terminals == 0


class HostsServer(ServerProcess):
    """`serve` with the hosts of `local_engine_hosts` (OPENPANEL_WS_HOSTS)."""

    def environment(self) -> dict[str, str]:
        url = Settings().docker_host
        return {**super().environment(), "OPENPANEL_WS_HOSTS": f"local={url},other={url}"}


async def test_a_crash_on_the_second_host_is_cleaned_up_at_the_next_start(
        containers: Containers, engine: None, tmp_path: Path) -> None:
    name = await containers.run()
    server = HostsServer(free_port(), tmp_path)
    await server.start()
    try:
        client = await connect_process(server)
        term = Term(client)
        assert (await term.open(name, host="other"))["host"] == "other"
        await term.type("sleep 1025 & top\n")
        await wait_for_process(name, "top")
        await server.kill()  # SIGKILL: no clean-up at all
        await client.close()
        assert any("top" in row for row in await leftovers(name)), "the crash left nothing?"
        journal = TerminalJournal(tmp_path / "openpanel-ws" / JOURNAL_FILE, pid=0)
        assert [e.host for e in journal.entries()] == ["other"]
        await server.start()
        await assert_no_leftovers(name)
        await eventually(lambda: not journal.entries(), TIMEOUT, what="the journal row closed")
    finally:
        await server.kill()


async def test_the_exec_runs_on_the_named_hosts_engine(
        make_server: Any, containers: Containers) -> None:
    """`remote` reaches the engine through a TCP proxy that notes the exec requests it
    carries: the exec, its resize and its marker kill go through it; a terminal on
    `local` does not."""
    execs: list[str] = []  # request lines naming an exec, in order

    async def note(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                execs.extend(m.decode() for m in EXEC_REQUEST.findall(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(
            urlsplit(Settings().docker_host).path)
        await asyncio.gather(note(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        port = proxy.sockets[0].getsockname()[1]
        remote = HostConfig("remote", EngineTarget(f"tcp://127.0.0.1:{port}"))
        server: RunningServer = await make_server(hosts=(local_engine_hosts()[0], remote))
        name = await containers.run()
        on_local = await term_on(server)
        assert (await on_local.open(name))["host"] == "local"
        await on_local.type('echo lo""cal\n')
        await on_local.until("local\r\n")
        assert execs == []
        term = await term_on(server, "/hosts/remote/ws/terminal")
        assert (await term.open(name, cols=91, rows=19))["host"] == "remote"
        await term.type("stty size; sleep 1026 &\n")
        await term.until("19 91\r\n")
        await wait_for_process(name, "sleep 1026")
        assert any(line.startswith("POST /containers/") for line in execs), execs
        assert any("/resize?" in line for line in execs), execs
        opened_with = len(execs)
        await term.send({"type": "close_terminal"})
        assert (await term.closed())["reason"] == "User closed"
        # The kill exec (create, start, inspect) went through the remote host's engine.
        assert any(line.startswith("POST /containers/") for line in execs[opened_with:]), execs
        (left,) = await leftovers(name)  # the local terminal's shell, still open
        assert left.endswith("/bin/sh"), left
        await on_local.send({"type": "close_terminal"})
        assert (await on_local.closed())["reason"] == "User closed"
        assert await leftovers(name) == []
    finally:
        proxy.close()


async def test_a_reload_hands_a_session_on_with_its_host(
        containers: Containers, engine: None, tmp_path: Path) -> None:
    name = await containers.run()
    server = HostsServer(free_port(), tmp_path)
    await server.start()
    try:
        term = Term(await connect_process(server))
        opened = await term.open(name, host="other")
        session_id = opened["sessionId"]
        await term.type("KEEP=handed-$((6*7))\n")
        await term.type('echo RE""ADY\n')
        await term.until("READY\r\n")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        assert await term.client.wait_closed(TIMEOUT) == 1012

        async def resume(**fields: Any) -> tuple[Term, dict[str, Any]]:
            again = Term(await connect_process(server))
            return again, await again.open(name, sessionId=session_id, **fields)

        async def reconnected() -> bool:
            try:
                client = await connect_process(server)
            except (aiohttp.ClientError, OSError):
                return False
            await client.close()
            return True

        await eventually(reconnected, TIMEOUT, what="the reloaded gateway")
        _elsewhere, refused = await resume(host="local")
        assert (refused["type"], refused["message"]) == ("terminal_error", UNKNOWN)
        again, reply = await resume(host="other")
        assert (reply["type"], reply["host"], reply["resumed"]) == ("terminal_opened", "other", True)
        await again.type('echo "$KEEP"\n')
        await again.until("handed-42\r\n")
        await again.send({"type": "close_terminal"})
        assert (await again.closed())["reason"] == "User closed"
        await assert_no_leftovers(name)
    finally:
        await server.kill()


class Proxy:
    """A TCP proxy to the local engine that can go away (every connection cut, nothing
    listening) and come back on the same port: a remote host that stops answering."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(
            urlsplit(Settings().docker_host).path)
        self._open.update((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()


async def test_a_kill_that_could_not_reach_its_host_is_done_when_it_is_back(
        make_server: Any, containers: Containers) -> None:
    proxy = Proxy()
    await proxy.start()
    try:
        remote = HostConfig("remote", EngineTarget(f"tcp://127.0.0.1:{proxy.port}"))
        server: RunningServer = await make_server(hosts=(local_engine_hosts()[0], remote))
        name = await containers.run()
        term = await term_on(server)
        assert (await term.open(name, host="remote"))["host"] == "remote"
        await term.type("sleep 1027 & top\n")
        await wait_for_process(name, "top")
        proxy.cut()  # the attach stream breaks; the kill exec cannot reach the host
        assert (await term.closed())["reason"] == "Process exited"
        assert any("top" in row for row in await leftovers(name)), "nothing left to kill?"
        await proxy.start()
        await assert_no_leftovers(name)  # killed once the host is up again
    finally:
        proxy.cut()
