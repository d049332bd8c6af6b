"""Terminal sessions end to end (docs/terminal.md "Sessions"): resume after a dropped
socket, exactly-once replay by `seq`, grace expiry, crash clean-up, caps, recording."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyte
from test_terminal import (
    TIMEOUT,
    Term,
    assert_no_leftovers,
    leftovers,
    opened,
    terminal,
    wait_for_process,
)

from client_support import PYTHON, ServerProcess, cli_env
from helpers import (
    SECOND,
    Containers,
    RunningServer,
    WsClient,
    docker,
    eventually,
    free_port,
    make_token,
    scaled,
)
from openpanel_ws.client import ClientError, OpenPanelClient, TerminalError
from openpanel_ws.client.aio import TerminalSession
from openpanel_ws.client.sansio import BackoffPolicy
from openpanel_ws.server import GATEWAYS_KEY

UNKNOWN = "Terminal session not found or expired"


class SeqTerm(Term):
    """Also keeps every output message's `seq`, and checks they are contiguous."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seq: int | None = None

    def take(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "terminal_output":
            assert isinstance(msg.get("seq"), int), msg
            size = len(msg["data"].encode())
            if self.seq is not None:
                assert msg["seq"] == self.seq + size, (self.seq, msg)
            self.seq = msg["seq"]
        elif msg.get("type") == "terminal_opened" and msg.get("resumed"):
            self.seq = msg["seq"]
        super().take(msg)


async def seq_terminal(server: RunningServer, token: str | None = None) -> SeqTerm:
    client = await server.connect("/ws/terminal")
    await client.auth(token)
    return SeqTerm(client)


def drop(term: Term) -> None:
    """The TCP connection just goes away (no close handshake): a network blip."""
    transport = term.client.ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()


async def test_resume_keeps_the_shell(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await seq_terminal(server)
    first = await term.open(name)
    session_id = first["sessionId"]
    assert "resumed" not in first
    await term.type("KEEP=kept-$((6*7)); cd /tmp\n")
    await term.type('echo RE""ADY\n')
    await term.until("READY\r\n")
    drop(term)
    again = await seq_terminal(server)
    reply = await again.open(name, sessionId=session_id, lastSeq=term.seq)
    assert reply == {"type": "terminal_opened", "containerId": name, "host": "local",
                     "sessionId": session_id, "resumed": True, "seq": term.seq}
    await again.type('echo "$KEEP in $(pwd)"\n')
    await again.until("kept-42 in /tmp\r\n")
    await again.send({"type": "close_terminal"})
    assert (await again.closed())["reason"] == "User closed"
    assert await leftovers(name) == []


async def test_missed_output_arrives_exactly_once_in_order(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    term = await seq_terminal(server)
    session_id = (await term.open(name))["sessionId"]
    await term.type("stty -echo; i=0; while [ $i -lt 400 ]; do echo line-$i; echo $i > /tmp/at; "
                    "i=$((i+1)); usleep 5000; done; echo EN\"\"D; stty echo\n")
    await term.until("line-20\r\n")
    drop(term)

    async def printed_while_detached() -> bool:  # the shell keeps printing meanwhile
        at = await docker("exec", name, "cat", "/tmp/at", check=False)
        return at.isdigit() and int(at) >= 150

    await eventually(printed_while_detached, TIMEOUT, what="150 lines printed while detached")
    again = await seq_terminal(server)
    again.seq = term.seq
    reply = await again.open(name, sessionId=session_id, lastSeq=term.seq)
    assert reply["resumed"] is True and reply["seq"] == term.seq
    await again.until("END\r\n")
    text = term.text + again.text
    lines = [line for line in text.split("\r\n") if line.startswith("line-")]
    assert lines == [f"line-{i}" for i in range(400)]


async def test_resume_without_last_seq_replays_the_buffer(
        server: RunningServer, containers: Containers) -> None:
    """A refreshed page has no screen left: it gets everything still buffered."""
    name = await containers.run()
    term = await seq_terminal(server)
    session_id = (await term.open(name))["sessionId"]
    await term.type('echo MAR""KER-1\n')
    await term.until("MARKER-1\r\n")
    await term.client.close()
    again = await seq_terminal(server)
    reply = await again.open(name, sessionId=session_id)
    assert reply["resumed"] is True and reply["seq"] == 0
    await again.until("MARKER-1\r\n")
    # The shell may print its next prompt after the first client stopped reading: the
    # replay is everything that client saw, byte for byte, then whatever came after.
    assert again.text.startswith(term.text)


async def test_other_users_session_is_unknown(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    owner = await terminal(server, make_token("alice"))
    session_id = (await owner.open(name))["sessionId"]
    drop(owner)
    intruder = await terminal(server, make_token("mallory"))
    stolen = await intruder.open(name, sessionId=session_id)
    unknown = await intruder.open(name, sessionId="session-0000000000000000")
    assert stolen["type"] == unknown["type"] == "terminal_error"
    assert stolen["message"] == unknown["message"] == UNKNOWN
    # Bad lastSeq: a clear INVALID_MESSAGE, the session stays resumable.
    back = await terminal(server, make_token("alice"))
    bad = await back.open(name, sessionId=session_id, lastSeq=10**9)
    assert bad["type"] == "error" and bad["code"] == "INVALID_MESSAGE" and bad["field"] == "lastSeq"
    ok = await back.open(name, sessionId=session_id, lastSeq=0)
    assert ok["type"] == "terminal_opened" and ok["resumed"] is True


async def test_a_second_connection_takes_the_session_over(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    first = await opened(server, name)
    gateway = server.app[GATEWAYS_KEY]["terminal"]
    (terminal_obj,) = gateway._terminals
    session_id = terminal_obj.lifecycle.session_id
    second = await terminal(server)
    reply = await second.open(name, sessionId=session_id)
    assert reply["type"] == "terminal_opened" and reply["resumed"] is True
    assert await first.closed() == {"type": "terminal_closed",
                                    "reason": "Resumed on another connection"}
    await second.type('echo ta""ken\n')
    await second.until("taken\r\n")


async def test_grace_expiry_leaves_no_process(make_server: Any, containers: Containers) -> None:
    srv = await make_server(terminal_grace=3)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type("sleep 1010 & top\n")
    await wait_for_process(name, "top")
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    (live,) = gateway._terminals
    session_id = live.lifecycle.session_id
    drop(term)
    await assert_no_leftovers(name)  # after the grace period
    assert gateway.open_terminals == 0
    late = await terminal(srv)
    reply = await late.open(name, sessionId=session_id)
    assert reply["type"] == "terminal_error" and reply["message"] == UNKNOWN


async def test_detached_session_is_alive_until_grace_ends(
        make_server: Any, containers: Containers) -> None:
    srv = await make_server(terminal_grace=600)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type("sleep 1011\n")
    await wait_for_process(name, "sleep 1011")
    await term.client.close()
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    await eventually(lambda: gateway.detached_terminals == 1, timeout=TIMEOUT)
    assert any("sleep 1011" in row for row in await leftovers(name))
    await srv.stop()  # a clean shutdown ends detached sessions too
    await assert_no_leftovers(name)


async def test_caps_hold_across_connections(make_server: Any, containers: Containers) -> None:
    srv = await make_server(terminal_max_per_user=2, terminal_max=3)
    name = await containers.run()
    alice = make_token("alice")
    first = await opened_as(srv, name, alice)
    drop(first)  # detached, still counts
    await opened_as(srv, name, alice)
    third = await terminal(srv, alice)
    refused = await third.open(name)
    assert refused["type"] == "terminal_error", refused
    assert "at most 2 live terminal sessions per user" in refused["message"]
    await opened_as(srv, name, make_token("bob"))  # the third on this server
    carol = await terminal(srv, make_token("carol"))
    refused = await carol.open(name)
    assert refused["type"] == "terminal_error"
    assert "Too many terminals on this server: at most 3" in refused["message"]
    # Closing one frees a slot for its owner.
    await third.open(name)  # still refused, nothing changed
    fourth = await terminal(srv, alice)
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    detached = next(t for t in gateway._terminals if t.attached is None)
    reply = await fourth.open(name, sessionId=detached.lifecycle.session_id)
    assert reply["resumed"] is True
    await fourth.send({"type": "close_terminal"})
    await fourth.closed()
    assert (await third.open(name))["type"] == "terminal_opened"


async def opened_as(server: RunningServer, name: str, token: str) -> Term:
    term = await terminal(server, token)
    reply = await term.open(name)
    assert reply["type"] == "terminal_opened", reply
    return term


async def test_kill_9_then_restart_leaves_no_process(containers: Containers, engine: None,
                                                     tmp_path: Path) -> None:
    name = await containers.run()
    proc = ServerProcess(free_port(), tmp_path)
    await proc.start()
    try:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(proc.url + "/ws/terminal")
        client = WsClient(ws, session)
        await client.expect("connected")
        await client.auth()
        term = Term(client)
        assert (await term.open(name))["type"] == "terminal_opened"
        await term.type("sleep 1012 & top\n")
        await wait_for_process(name, "top")
        await proc.kill()  # SIGKILL: no clean-up at all
        await client.close()
        # An absence (nobody cleaned up after the crash): a window for a wrong clean-up.
        await asyncio.sleep(1.0 * SECOND)
        assert any("top" in row for row in await leftovers(name)), "the crash left nothing?"
        journal = tmp_path / "openpanel-ws" / "terminal-sessions.sqlite3"
        assert journal.exists() and stat.S_IMODE(journal.stat().st_mode) == 0o600
        await proc.start()
        await assert_no_leftovers(name)
    finally:
        await proc.kill()


async def test_recording_replays_to_the_same_screen(
        make_server: Any, containers: Containers, tmp_path: Path) -> None:
    record_dir = tmp_path / "casts"
    audit = tmp_path / "audit.jsonl"
    srv = await make_server(terminal_record_dir=record_dir, terminal_audit_log=audit)
    name = await containers.run()
    term = await opened(srv, name, cols=60, rows=12)
    await term.type("PS1='$ '; printf '\\033[1;31mred\\033[0m plain\\n'; seq 1 30\n")
    await term.until("30\r\n")
    await term.send({"type": "resize", "cols": 70, "rows": 14})
    await term.type("echo top-secret-input-marker > /dev/null; echo d\"\"one\n")
    await term.until("done\r\n")
    await term.send({"type": "close_terminal"})
    await term.closed()
    (cast,) = casts(record_dir)
    assert stat.S_IMODE(cast.stat().st_mode) == 0o600
    assert "_tester_" in cast.name and name in cast.name
    lines = cast.read_bytes().splitlines()
    head = orjson.loads(lines[0])
    assert head["version"] == 2 and head["width"] == 60 and head["height"] == 12
    assert head["env"]["TERM"] == "xterm-256color" and isinstance(head["timestamp"], int)
    events = [orjson.loads(line) for line in lines[1:]]
    assert {e[1] for e in events} == {"o", "r"}  # no input events by default
    assert [e[2] for e in events if e[1] == "r"] == ["70x14"]
    audit_lines = [orjson.loads(line) for line in audit.read_bytes().splitlines()]
    assert all(line["recording"] == str(cast) for line in audit_lines)

    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", "recordings", "play", str(cast), "--speed", "50",
        env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err
    # The replay (at the recorded final size) draws what the live client saw.
    assert screen(out.decode(), 70, 14) == screen(term.text, 70, 14)
    listing = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", "recordings", "list",
        env=cli_env(OPENPANEL_WS_TERMINAL_RECORD_DIR=str(record_dir)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(listing.communicate(), TIMEOUT)
    assert listing.returncode == 0 and str(cast) in out.decode() and "60x12" in out.decode(), err


def screen(text: str, cols: int, rows: int) -> list[str]:
    emulated = pyte.Screen(cols, rows)
    stream = pyte.Stream(emulated)
    stream.feed(text)
    return list(emulated.display)


async def test_recording_with_input(make_server: Any, containers: Containers,
                                    tmp_path: Path) -> None:
    srv = await make_server(terminal_record_dir=tmp_path, terminal_record_input=True)
    name = await containers.run()
    term = await opened(srv, name)
    await term.type('echo in""put\n')
    await term.until("input\r\n")
    await term.send({"type": "close_terminal"})
    await term.closed()
    (cast,) = casts(tmp_path)
    events = [orjson.loads(line) for line in cast.read_bytes().splitlines()[1:]]
    assert [e[2] for e in events if e[1] == "i"] == ["echo in\"\"put\n"]


def casts(directory: Path) -> list[Path]:
    return list(directory.glob("*.cast"))


async def test_recording_directory_unwritable_refuses(make_server: Any, containers: Containers,
                                                      tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    srv = await make_server(terminal_record_dir=blocked)
    name = await containers.run()
    term = await terminal(srv)
    reply = await term.open(name)
    assert reply["type"] == "terminal_error" and "recording" in reply["message"], reply
    assert await leftovers(name) == []
    assert os.listdir(tmp_path) == ["file-not-dir"]


class Output:
    """Drains a client TerminalSession into one string, in the background."""

    def __init__(self, session: TerminalSession) -> None:
        self.text = ""
        self.error: BaseException | None = None
        self._changed = asyncio.Event()  # set on every chunk and at the end
        self.task = asyncio.get_running_loop().create_task(self._drain(session))

    async def _drain(self, session: TerminalSession) -> None:
        try:
            async for data in session:
                self.text += data
                self._changed.set()
        except ClientError as exc:
            self.error = exc
        finally:
            self._changed.set()

    async def until(self, needle: str, start: int = 0, timeout: float = TIMEOUT) -> int:
        deadline = asyncio.get_running_loop().time() + scaled(timeout)
        while (at := self.text.find(needle, start)) < 0:
            left = deadline - asyncio.get_running_loop().time()
            if self.task.done() or left <= 0:
                raise AssertionError(f"{needle!r} not seen ({self.error}); tail {self.text[-200:]!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return at + len(needle)


async def test_python_client_resumes_across_a_reload_not_a_restart(
        containers: Containers, engine: None, tmp_path: Path) -> None:
    """A reload (SIGHUP: the gateway re-executes itself and hands its sessions on) keeps
    the shell; a restart (stop, start) does not, and the client says so."""
    name = await containers.run()
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    try:
        async with OpenPanelClient(server.url, make_token(),
                                   backoff=BackoffPolicy(base=0.2, cap=1.0)) as client:
            term = await client.terminal(name, cols=80, rows=24)
            out = Output(term)
            term.write("KEEP=survived-$((6*7)); echo pid=$$.\n")
            end = await out.until("\npid=")
            shell_pid = out.text[end:out.text.index(".", end)]
            assert server.proc is not None
            server.proc.send_signal(signal.SIGHUP)
            await eventually(lambda: term._sub.resuming or term.resumes == 1, timeout=TIMEOUT)
            mark = len(out.text)
            # Typed while reattaching: held, sent right after the resume.
            term.write('echo "$KEEP"; echo pid=$$.\n')
            await eventually(lambda: term.resumes == 1, timeout=TIMEOUT)
            end = await out.until("\npid=", start=mark)
            assert out.text[end:out.text.index(".", end)] == shell_pid
            assert "survived-42\r\n" in out.text[mark:]
            assert out.text.count("\npid=") == 2  # nothing replayed twice

            await server.terminate()  # a restart: the session ends with the process
            await server.start()
            await out.task
            assert isinstance(out.error, TerminalError)
            assert "did not survive" in str(out.error)
        await assert_no_leftovers(name)
    finally:
        await server.kill()


async def test_exec_says_when_the_session_did_not_survive(
        containers: Containers, engine: None, tmp_path: Path) -> None:
    name = await containers.run()
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    cli = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", "exec", "-i", "--url", server.url,
        "--reconnect-base", "0.2", "--reconnect-max", "1", name, "sh",
        env=cli_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert cli.stdin is not None and cli.stdout is not None
        cli.stdin.write(b"echo first-$((1+1)); sleep 1013\n")
        await cli.stdin.drain()
        assert await asyncio.wait_for(cli.stdout.readline(), TIMEOUT) == b"first-2\n"
        await wait_for_process(name, "sleep 1013")
        await server.kill()  # crash: the shell is left behind ...
        await server.start()  # ... and reaped by the next gateway
        _out, err = await asyncio.wait_for(cli.communicate(), TIMEOUT)
        assert cli.returncode == 1
        assert "the terminal session did not survive the reconnect" in err.decode(), err
        await assert_no_leftovers(name)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
        await server.kill()


async def test_resume_without_a_tty_keeps_both_streams(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    client = await server.connect("/ws/terminal", auth=True)
    script = ("i=0; while [ $i -lt 60 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); "
              "usleep 20000; done")
    await client.send({"type": "open_terminal", "containerId": name, "tty": False,
                       "command": ["sh", "-c", script]})
    session_id = (await client.expect("terminal_opened"))["sessionId"]
    got: list[dict[str, Any]] = []
    while not any("out-10" in m["data"] for m in got):
        got.append(await client.expect("terminal_output", timeout=TIMEOUT))
    last_seq = got[-1]["seq"]
    client.ws._response.connection.transport.abort()  # type: ignore[union-attr]
    again = await server.connect("/ws/terminal", auth=True)
    await again.send({"type": "open_terminal", "containerId": name, "sessionId": session_id,
                      "lastSeq": last_seq})
    assert (await again.expect("terminal_opened"))["seq"] == last_seq
    while True:
        msg = await again.recv(TIMEOUT)
        if msg["type"] == "terminal_closed":
            break
        if msg["type"] == "terminal_output":
            got.append(msg)
    for stream, prefix in (("stdout", "out"), ("stderr", "err")):
        text = "".join(m["data"] for m in got if m["stream"] == stream)
        assert text.split() == [f"{prefix}-{i}" for i in range(60)], stream


class RecordingServer(ServerProcess):
    """`serve` with recording on (the base class passes no OPENPANEL_WS_* settings)."""

    def __init__(self, port: int, state_dir: Path, record_dir: Path) -> None:
        super().__init__(port, state_dir)
        self.record_dir = record_dir

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "OPENPANEL_WS_TERMINAL_RECORD_DIR": str(self.record_dir)}


async def test_reload_keeps_the_recording_going(containers: Containers, engine: None,
                                                tmp_path: Path) -> None:
    name = await containers.run()
    record_dir = tmp_path / "casts"
    server = RecordingServer(free_port(), tmp_path, record_dir)
    await server.start()
    try:
        async with OpenPanelClient(server.url, make_token(),
                                   backoff=BackoffPolicy(base=0.2, cap=1.0)) as client:
            term = await client.terminal(name)
            out = Output(term)
            term.write('echo be""fore\n')
            await out.until("before\r\n")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGHUP)
            await eventually(lambda: term.resumes == 1, timeout=TIMEOUT)
            term.write('echo af""ter\n')
            await out.until("after\r\n")
            await term.close()
        (cast,) = casts(record_dir)
        output = "".join(e[2] for e in (orjson.loads(line)
                                        for line in cast.read_bytes().splitlines()[1:])
                         if e[1] == "o")
        assert "before\r\n" in output and "after\r\n" in output
        times = [orjson.loads(line)[0] for line in cast.read_bytes().splitlines()[1:]]
        assert times == sorted(times)
        await assert_no_leftovers(name)
    finally:
        await server.kill()


async def test_a_client_that_went_silent_can_resume(make_server: Any, containers: Containers) -> None:
    """A half-open connection (the client neither reads nor answers pings) is closed by
    the heartbeat (4002): the shell waits, detached, and a resume on a new connection
    gets everything, including what was stuck behind the dead connection."""
    srv = await make_server(heartbeat_interval=1.0)
    name = await containers.run()
    term = await opened(srv, name)
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    session_id = next(iter(gateway._terminals)).lifecycle.session_id
    await term.type("yes 0123456789012345678901234567890123456789 | head -n 20000; "
                    "echo FIN\"\"ISHED\n")
    await eventually(lambda: gateway.detached_terminals == 1, timeout=TIMEOUT)  # never read
    again = await seq_terminal(srv)
    reply = await again.open(name, sessionId=session_id, lastSeq=0)
    assert reply["type"] == "terminal_opened" and reply["resumed"] is True
    await again.until("FINISHED\r\n", timeout=60)
    # 820 kB printed, the ring keeps 256 KiB: the replay says where it starts, and from
    # there every byte arrives once (SeqTerm checks each seq) up to the live end.
    assert reply["seq"] > 0
    assert again.seq is not None and again.seq - reply["seq"] == len(again.text.encode())
    line = "0123456789012345678901234567890123456789"
    rows = again.text.split("\r\n")
    assert set(rows[1:-2]) == {line} and rows[-2].endswith("FINISHED"), rows[-3:]
    await again.send({"type": "close_terminal"})
    await again.closed(timeout=60)
    assert await leftovers(name) == []
