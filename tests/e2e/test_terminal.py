"""`/ws/terminal` end to end: a real server, a real engine, busybox containers."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import (
    Containers,
    RunningServer,
    TerminalClient,
    WsClient,
    deadline,
    docker,
    eventually,
    make_token,
    start_server,
)
from openpanel_ws.server import GATEWAYS_KEY

# The busybox image's PID 1 (`sh -c "sleep 3600"` execs sleep) never reaps orphans, so
# killed processes may linger as zombies ("Z"): dead, holding no resources but a pid.
TIMEOUT = 30.0
SLOW_READ = 0.01  # seconds per message read: the slow link under test (not a wait)


class Term(TerminalClient):
    """A paced terminal client that accumulates all output in `text`."""

    def __init__(self, client: WsClient) -> None:
        super().__init__(client, TIMEOUT)
        self.text = ""  # all terminal_output so far

    def take_output(self, msg: dict[str, Any]) -> None:
        self.text += msg["data"]

    async def type(self, data: str) -> None:
        await self.send({"type": "input", "data": data})

    async def until(self, needle: str, timeout: float = TIMEOUT, start: int = 0) -> str:
        """Accumulated output once it contains `needle` after `start`."""
        by = deadline(timeout)
        while needle not in self.text[start:]:
            if time.monotonic() >= by:
                raise TimeoutError(f"{needle!r} not seen; output tail: {self.text[-300:]!r}")
            self.take(await self.client.recv_by(by))
        return self.text

    async def closed(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        while True:
            msg = await self.next_other(timeout)
            if msg["type"] == "terminal_closed":
                return msg
            if msg["type"] != "ping":
                raise AssertionError(f"unexpected {msg}")


async def terminal(server: RunningServer, token: str | None = None) -> Term:
    client = await server.connect("/ws/terminal")
    await client.auth(token)
    return Term(client)


async def opened(server: RunningServer, container: str, **fields: Any) -> Term:
    term = await terminal(server)
    reply = await term.open(container, **fields)
    assert reply["type"] == "terminal_opened", reply
    return term


async def leftovers(name: str) -> list[str]:
    """Live processes in the container other than its PID 1 and our `ps`."""
    out = await docker("exec", name, "ps", "-o", "pid,stat,args")
    rows = []
    for line in out.splitlines()[1:]:
        pid, stat, args = ([*line.split(None, 2), "", ""])[:3]
        if pid == "1" or stat.startswith("Z") or args.startswith("ps "):
            continue
        rows.append(line.strip())
    return rows


async def assert_no_leftovers(name: str, timeout: float = TIMEOUT) -> None:
    async def none_left() -> bool:
        return not await leftovers(name)

    try:
        await eventually(none_left, timeout, step=0.2)
    except AssertionError:
        raise AssertionError(f"processes left behind: {await leftovers(name)}") from None


async def wait_for_process(name: str, needle: str, timeout: float = TIMEOUT) -> None:
    async def running() -> bool:
        return any(needle in row for row in await leftovers(name))

    await eventually(running, timeout, step=0.2, what=f"{needle!r} running")


# --- happy paths ------------------------------------------------------------------------


async def test_echo_round_trip(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await terminal(server)
    reply = await term.open(name)
    assert reply["type"] == "terminal_opened"
    assert reply["containerId"] == name
    assert reply["sessionId"].startswith("session-")
    # The typed line echoes `hel""lo`; only the command's output reads `hello`.
    await term.type('echo hel""lo; echo $TERM\n')
    text = await term.until("hello\r\n")
    await term.until("xterm-256color\r\n", start=text.index("hello\r\n"))


async def test_custom_shell_by_path_and_by_name(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name, shell="/bin/ash")
    await term.type('echo "shell=$0"\n')
    await term.until("shell=/bin/ash")
    term2 = await opened(server, name, shell="sh")  # looked up through $PATH
    await term2.type('echo "shell=$0"\n')
    await term2.until("shell=sh")


async def test_resize_seen_by_stty(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name, cols=100, rows=30)
    await term.type("stty size\n")
    await term.until("30 100\r\n")
    for cols, rows in ((120, 40), (81, 25)):
        await term.send({"type": "resize", "cols": cols, "rows": rows})
        mark = len(term.text)
        await term.type("stty size\n")
        await term.until(f"{rows} {cols}\r\n", start=mark)


async def test_bad_messages_change_nothing(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await terminal(server)
    # Nothing open yet.
    for msg in ({"type": "input", "data": "ls\n"}, {"type": "resize", "cols": 80, "rows": 24},
                {"type": "close_terminal"}):
        await term.send(msg)
        reply = await term.next_other()
        assert reply["type"] == "terminal_error", reply
    bad_opens = ({"containerId": name, "shell": "sh -c id"}, {"containerId": name, "cols": 0},
                 {"containerId": 42}, {})
    for fields in bad_opens:
        await term.send({"type": "open_terminal", **fields})
        reply = await term.next_other()
        assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", reply
    reply = await term.open(name)
    assert reply["type"] == "terminal_opened"
    bad_resizes = ({"cols": 0, "rows": 24}, {"cols": 80, "rows": 1001}, {"cols": "80", "rows": 24},
                   {"cols": 80}, {"cols": 80.5, "rows": 24}, {"cols": True, "rows": 24})
    for fields in bad_resizes:
        await term.send({"type": "resize", **fields})
        reply = await term.next_other()
        assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", (fields, reply)
    await term.send({"type": "input"})
    reply = await term.next_other()
    assert reply["code"] == "INVALID_MESSAGE" and reply["field"] == "data"
    await term.send({"type": "resize", "cols": 1000, "rows": 1})  # the bounds are allowed
    await term.send({"type": "resize", "cols": 90, "rows": 20})
    await term.type("stty size\n")
    await term.until("20 90\r\n")


async def test_exit_code_and_reopen(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    await term.type("sleep 1000 &\n")  # a background job the shell leaves behind
    await wait_for_process(name, "sleep 1000")
    await term.type("exit 7\n")
    closed = await term.closed()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 7}
    assert await leftovers(name) == []  # gone before terminal_closed was sent
    # The connection can open a new terminal.
    assert (await term.open(name))["type"] == "terminal_opened"
    await term.type('echo ag""ain\n')
    await term.until("again")


async def test_close_terminal_leaves_no_process(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    # A background job, one that ignores HUP, one with a cleared environment, a
    # foreground program: all must go.
    await term.type("sleep 1001 & (trap '' HUP; sleep 1002) & env -i sleep 1003 & top\n")
    await wait_for_process(name, "top")
    await wait_for_process(name, "sleep 1003")
    await term.send({"type": "close_terminal"})
    closed = await term.closed()
    assert closed == {"type": "terminal_closed", "reason": "User closed"}
    assert await leftovers(name) == []
    # Input after close is refused, the connection stays usable.
    await term.type("ls\n")
    assert (await term.next_other())["type"] == "terminal_error"


@pytest.mark.parametrize("how", ["close frame", "dropped"])
async def test_socket_gone_leaves_no_process(make_server: Any, containers: Containers,
                                             how: str) -> None:
    # Resume off (grace 0): the shell goes with the socket. With resume on, see
    # test_terminal_sessions.py (grace expiry).
    server = await make_server(terminal_grace=0)
    name = await containers.run()
    term = await opened(server, name)
    await term.type("sleep 1004 & top\n")
    await wait_for_process(name, "top")
    if how == "close frame":
        await term.client.close()
    else:  # no close handshake: the TCP connection just goes away
        transport = term.client.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
    await assert_no_leftovers(name)
    gateway = server.app[GATEWAYS_KEY]["terminal"]
    await eventually(lambda: gateway.open_terminals == 0, timeout=TIMEOUT)


async def test_server_shutdown_leaves_no_process(containers: Containers, engine: None) -> None:
    name = await containers.run()
    srv = await start_server()
    try:
        term = await opened(srv, name)
        await term.type("top\n")
        await wait_for_process(name, "top")
    finally:
        await srv.stop()
    await assert_no_leftovers(name)


async def test_utf8_split_across_reads(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    sample = "àçãéü日本語😀€"
    # Typed as octal escapes, so only the output (not the echo) holds the characters;
    # the odd-length prefix and 600 repetitions put character boundaries everywhere.
    escaped = "".join(f"\\{b:03o}" for b in sample.encode())
    await term.type(f"printf x; i=0; while [ $i -lt 600 ]; do printf '{escaped}'; i=$((i+1)); "
                    "done; echo; echo DO\"\"NE\n")
    text = await term.until("DONE\r\n")
    assert "\ufffd" not in text
    assert text.count(sample) == 600


async def test_paste_100_kb_arrives_complete(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    lines = [f"{i:05d} {'abcdefghij' * 7} ção ü 日本 😀\n" for i in range(1200)]
    payload = "".join(lines)
    raw = payload.encode()
    assert len(raw) >= 100 * 1024
    await term.type('stty -echo; echo RE""ADY; cat > /tmp/paste; stty echo\n')
    await term.until("READY")
    # Under the 64 KiB frame limit with room for JSON escaping; about 8 messages/s.
    piece = 16 * 1024
    for start in range(0, len(payload), piece):
        await term.type(payload[start:start + piece])
    await term.type("\x04")  # end of file for cat (at a line start)
    mark = len(term.text)
    await term.type('echo SI""ZE $(wc -c < /tmp/paste); md5sum /tmp/paste\n')
    await term.until("  /tmp/paste\r\n", start=mark)  # md5sum output, not the echo
    tail = term.text[mark:]
    assert f"SIZE {len(raw)}" in tail, tail
    assert hashlib.md5(raw).hexdigest() in tail, tail


# --- refusals ---------------------------------------------------------------------------


async def test_authorization(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    viewer = await terminal(server, make_token("viewer", roles=["viewer"]))
    reply = await viewer.open(name)
    assert reply["type"] == "error" and reply["code"] == "PERMISSION_DENIED", reply
    for msg in ({"type": "input", "data": "id\n"}, {"type": "resize", "cols": 80, "rows": 24}):
        await viewer.send(msg)
        assert (await viewer.next_other())["type"] == "terminal_error"

    allowed = await terminal(server, make_token("op", roles=["viewer"], permissions=["terminal"]))
    reply = await allowed.open(name)
    assert reply["type"] == "terminal_opened", reply

    # The `containers` claim scopes the terminal exactly as it does /ws/containers.
    scoped = await terminal(server, make_token("op", roles=[], permissions=["terminal"],
                                               containers=["not-this-one-*"]))
    reply = await scoped.open(name)
    assert reply["type"] == "error" and reply["code"] == "PERMISSION_DENIED", reply
    reply = await scoped.open("no-such-container-at-all")
    assert reply["type"] == "error" and reply["code"] == "PERMISSION_DENIED", reply
    in_scope = await terminal(server, make_token("op", roles=[], permissions=["terminal"],
                                                 containers=[name[:6] + "*"]))
    assert (await in_scope.open(name))["type"] == "terminal_opened"


async def test_stopped_or_missing_container(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    await docker("stop", "-t", "0", name)
    term = await terminal(server)
    for ref in (name, "opws-does-not-exist"):
        reply = await term.open(ref)
        assert reply == {"type": "terminal_error", "message": "Container not found or not running",
                         "containerId": ref, "host": "local"}


async def test_missing_shell(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await terminal(server)
    for shell in ("/bin/bash", "bash"):
        reply = await term.open(name, shell=shell)
        assert reply["type"] == "terminal_error", reply
        assert reply["message"] == f"Shell not found in the container: {shell}"
    assert (await term.open(name))["type"] == "terminal_opened"
    await term.type('echo o""k\n')
    await term.until("ok")


async def test_second_open_refused(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    reply = await term.open(name)
    assert reply["type"] == "terminal_error" and "already open" in reply["message"]
    await term.type('echo st""ill\n')
    await term.until("still")
    await term.send({"type": "close_terminal"})
    await term.closed()
    await assert_no_leftovers(name)


# --- configuration ----------------------------------------------------------------------


async def test_audit_lines(make_server: Any, containers: Containers, tmp_path: Path) -> None:
    audit = tmp_path / "terminal-audit.jsonl"
    srv = await make_server(terminal_audit_log=audit)
    name = await containers.run()
    term = await terminal(srv, make_token("alice", roles=["viewer"], permissions=["terminal"]))
    opened_reply = await term.open(name)
    session_id = opened_reply["sessionId"]
    typed = ["echo SECRET-TYPED-TEXT-no-audit\n", "exit 3\n"]
    await term.type(typed[0])
    await term.until("SECRET")
    await term.type(typed[1])
    assert (await term.closed())["exitCode"] == 3
    lines = [orjson.loads(line) for line in audit.read_bytes().splitlines()]
    assert [line["event"] for line in lines] == ["terminal_start", "terminal_end"]
    start, end = lines
    for record in lines:
        assert record["sessionId"] == session_id
        assert record["user"] == "alice"
        assert record["containerName"] == name
        assert record["containerRef"] == name
        assert record["shell"] == "/bin/sh"
        assert len(record["container"]) == 64
    assert end["exitCode"] == 3 and end["reason"] == "Process exited"
    assert end["bytesIn"] == sum(len(t.encode()) for t in typed)
    assert end["bytesOut"] >= len("SECRET-TYPED-TEXT-no-audit")
    assert end["start"] == start["start"] and end["end"] >= end["start"]
    assert b"SECRET" not in audit.read_bytes()


async def test_idle_timeout(make_server: Any, containers: Containers) -> None:
    srv = await make_server(terminal_idle_timeout=2)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type("top\n")  # output alone does not count as activity
    await wait_for_process(name, "top")
    closed = await term.closed(timeout=TIMEOUT)
    assert closed == {"type": "terminal_closed", "reason": "Idle timeout"}
    assert await leftovers(name) == []


async def test_refreshed_token_without_permission_ends_the_terminal(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await opened(server, name)
    await term.type("sleep 1005 &\n")
    await wait_for_process(name, "sleep 1005")
    await term.send({"type": "auth", "token": make_token("tester", roles=["viewer"])})
    assert (await term.next_other())["type"] == "authenticated"
    # The re-auth itself re-checks the terminal (docs/protocol.md), before any input.
    assert await term.next_other() == {"type": "terminal_closed", "reason": "permission"}
    await term.type("id\n")
    assert (await term.next_other())["type"] == "terminal_error"
    assert await leftovers(name) == []


async def test_audit_log_unwritable_refuses_the_terminal(
        make_server: Any, containers: Containers, tmp_path: Path) -> None:
    srv = await make_server(terminal_audit_log=tmp_path / "missing-dir" / "audit.jsonl")
    name = await containers.run()
    term = await terminal(srv)
    reply = await term.open(name)
    assert reply["type"] == "terminal_error" and "audit log" in reply["message"], reply
    assert await leftovers(name) == []


async def test_slow_consumer_is_cut_off_and_its_shell_killed(
        make_server: Any, containers: Containers) -> None:
    srv = await make_server(send_queue_max=64, send_timeout=2.0, terminal_grace=0)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type("yes 0123456789012345678901234567890123456789\n")
    # This client never reads: its queue overflows, the server cuts it off (1013 or an
    # abort when even the close frame cannot be sent) and the shell must go with it.
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    await eventually(lambda: gateway.open_terminals == 0, timeout=60)
    assert await leftovers(name) == []


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def test_remote_engine_over_tcp(make_server: Any, containers: Containers) -> None:
    """The whole path (attach, resize, kill by marker) with the engine behind tcp://."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection("/var/run/docker.sock")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        port = proxy.sockets[0].getsockname()[1]
        srv = await make_server(docker_host=f"tcp://127.0.0.1:{port}")
        assert not srv.services.hosts.default.on_this_machine
        name = await containers.run()
        term = await opened(srv, name, cols=77, rows=22)
        await term.type("stty size; sleep 1006 & top\n")
        await term.until("22 77\r\n")
        await wait_for_process(name, "top")
        await term.send({"type": "close_terminal"})
        assert (await term.closed())["reason"] == "User closed"
        assert await leftovers(name) == []
    finally:
        proxy.close()


async def test_kill_falls_back_to_the_session_shell_without_bin_sh(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    await docker("exec", name, "rm", "/bin/sh")
    term = await opened(server, name, shell="/bin/ash")
    await term.type("sleep 1007 & top\n")
    await wait_for_process(name, "top")
    await term.send({"type": "close_terminal"})
    assert (await term.closed())["reason"] == "User closed"
    assert await leftovers(name) == []


@pytest.mark.serial  # a `yes` flood to drain within its timeout: throughput needs the CPU
async def test_a_slowly_reading_client_is_throttled_not_cut_off(
        make_server: Any, containers: Containers) -> None:
    """Backpressure: a flood of output to a client on a slow link pauses the shell's
    output instead of overflowing the client's queue (which would close it with 1013)."""
    srv = await make_server(send_queue_max=64, send_queue_max_bytes=512 * 1024)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type("yes 0123456789012345678901234567890123456789\n")
    deadline = time.monotonic() + 3.0
    received = 0
    while time.monotonic() < deadline:  # far slower than `yes` writes
        msg = await term.client.recv(TIMEOUT)
        assert msg["type"] in ("terminal_output", "ping"), msg
        received += 1
        await asyncio.sleep(SLOW_READ)
    assert received > 64  # more than the queue bound: it was throttled, then resumed
    await term.type("\x03")
    await term.type("echo done-$((40+2))\n")
    await term.until("done-42", timeout=60)
    await term.send({"type": "close_terminal"})
    assert (await term.closed(timeout=60))["reason"] == "User closed"
