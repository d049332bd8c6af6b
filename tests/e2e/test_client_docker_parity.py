"""The CLI where scripts rely on Docker CLI behaviour (issue "behaves like the Docker
CLI"): exec stdin from a file, /dev/null, a pipe or closed; -t or not; COMMAND; exit
codes; Ctrl-C; error lines; refused arguments; the admin token kept out of logs."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

import pytest
from test_client_exec import PtyCli

from client_support import PYTHON, cli_env, run_cli, ws_url
from helpers import Containers, RunningServer, docker, eventually, free_port, scaled

SCRIPT = b"echo from-$((2+3))\necho oops >&2\nexit 5\n"


async def run_cli_stdin(*args: str, stdin: str, timeout: float = 30.0) -> tuple[int, bytes, bytes]:
    """The CLI with fd 0 from a shell redirection (`< file`, `< /dev/null`, `<&-`)."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", f'exec "$@" {stdin}', "sh", PYTHON, "-m", "openpanel_ws", *args,
        env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), scaled(timeout))
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_exec_i_reads_a_file_dev_null_or_closed_stdin(
        server: RunningServer, containers: Containers, tmp_path: Path) -> None:
    name = await containers.run()
    url = ws_url(server.url)
    script = tmp_path / "script.sh"
    script.write_bytes(SCRIPT)
    rc, out, err = await run_cli_stdin("exec", "-i", name, "--url", url, stdin=f"< {script}")
    assert (rc, out, err) == (5, b"from-5\n", b"oops\n")
    # /dev/null and a closed stdin: the shell reads end-of-file and ends at once.
    for redirection in ("< /dev/null", "<&-"):
        rc, out, err = await run_cli_stdin("exec", "-i", name, "--url", url, stdin=redirection)
        assert (rc, out, err) == (0, b"", b""), redirection
    # `sh` as the COMMAND reads the script from stdin the same way.
    rc, out, err = await run_cli_stdin("exec", "-i", "--url", url, name, "sh", stdin=f"< {script}")
    assert (rc, out) == (5, b"from-5\n"), err


async def test_exec_without_i_gives_no_stdin(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    rc, out, err = await run_cli("exec", name, "--url", ws_url(server.url),
                                 stdin=b"echo should-not-run\n", timeout=30)
    assert (rc, out, err) == (0, "", "")


async def test_exec_without_t_is_plain_bytes_streams_apart(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    rc, out, err = await run_cli("exec", "-i", name, "--url", ws_url(server.url), stdin=SCRIPT)
    # No TTY: no prompt, no banner, no \r\n, no escape sequences; stderr on stderr.
    assert (rc, out, err) == (5, "from-5\n", "oops\n")


async def test_exec_runs_a_command_and_returns_its_exit_code(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    url = ws_url(server.url)
    rc, out, err = await run_cli("exec", "--url", url, name, "ls", "/")
    assert rc == 0 and {"bin", "etc", "proc"} <= set(out.split()), err
    rc, out, err = await run_cli("exec", "--url", url, name, "sh", "-c", "echo $# $1; exit 7", "x", "a b")
    assert (rc, out) == (7, "1 a b\n"), err
    rc, _, err = await run_cli("exec", "--url", url, name, "/no/such/program")
    assert rc == 1 and err.count("\n") == 1 and "/no/such/program" in err, err


async def test_exec_t_allocates_a_tty_and_without_t_there_is_none(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    url = ws_url(server.url)
    rc, out, _ = await run_cli("exec", "--url", url, name, "tty")
    assert (rc, out) == (1, "not a tty\n")
    cli = await PtyCli.spawn("exec", "-t", "--url", url, name, "tty")
    try:
        await cli.expect(rb"/dev/pts/\d+\r\n")
        assert await cli.wait(30) == 0
    finally:
        await cli.close()


@pytest.mark.parametrize("command", [("logs", "-f"), ("events",), ("stats",), ("metrics",), ("exec",)])
async def test_ctrl_c_exits_130_with_a_newline(
        server: RunningServer, containers: Containers, command: tuple[str, ...]) -> None:
    name = await containers.run("echo started; sleep 3600")
    url = ws_url(server.url)
    # `events` follows this test's container only: another worker's events printed between
    # the echoed ^C and the exit would end the output instead of the newline under test.
    args = {"logs": [*command, name, "--url", url], "stats": [*command, name, "--url", url],
            "events": [*command, "--filter", f"container={name}", "--url", url],
            "exec": ["exec", "--url", url, name, "sleep", "600"]}.get(command[0], [*command, "--url", url])
    cli = await PtyCli.spawn(*args)
    try:
        # Streaming (or waiting for the next item): what shows it depends on the command.
        if command[0] == "logs":
            await cli.expect(rb"started")
        elif command[0] in ("stats", "metrics"):
            await cli.expect(rb"\x1b\[H\x1b\[2J")  # the first table drawn
        elif command[0] == "exec":
            await eventually(lambda: containers.has_process(name, "sleep 600"), 30, what="the exec")
        else:
            await eventually(lambda: server.authenticated() == 1, 30, what="the CLI connected")
        cli.write(b"\x03")
        assert await cli.wait(30) == 130
        await eventually(lambda: bytes(cli.output).endswith(b"^C\r\n"), 5, what="the ^C line")
        assert bytes(cli.output).endswith(b"^C\r\n"), bytes(cli.output[-200:])
    finally:
        await cli.close()


async def test_lost_container_during_exec_it_says_so_on_a_fresh_line_and_exits_137(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    cli = await PtyCli.spawn("exec", "-it", name, "--url", ws_url(server.url))
    try:
        await cli.expect(rb"# ")
        cli.write(b"printf no-newline\r")
        await cli.expect(rb"no-newline/ # ")
        await docker("restart", "-t", "0", name)
        assert await cli.wait(30) == 137
        out = bytes(cli.output)
        assert re.search(rb"# (\x1b\[6n|\r/ # \x1b\[J)*\r\nopenpanel-ws: container '[^']+' stopped, "
                         rb"restarted or was removed during exec\r\n$", out), out[-300:]
    finally:
        await cli.close()


async def test_connection_lost_error_starts_on_a_fresh_line(
        make_server: object, containers: Containers) -> None:
    assert callable(make_server)
    server = await make_server()
    name = await containers.run()
    cli = await PtyCli.spawn("exec", "-it", name, "--url", ws_url(server.url))
    try:
        await cli.expect(rb"# ")
        await server.stop()
        assert await cli.wait(30) != 0
        out = bytes(cli.output)
        assert re.search(rb"# (\x1b\[6n|\r/ # \x1b\[J)*\r\nopenpanel-ws: [^\r\n]+\r\n$", out), out[-300:]
    finally:
        await cli.close()


async def test_refused_arguments_exit_2_with_one_line(
        server: RunningServer, containers: Containers) -> None:
    url = ws_url(server.url)
    rc, out, err = await run_cli("events", "--filter", "colour=red", "--url", url, timeout=30)
    assert rc == 2 and out == "", out[:300]
    assert err.count("\n") == 1 and "colour" in err, err
    name = await containers.run("echo a-line; sleep 3600")
    rc, out, err = await run_cli("logs", "-f", name, "--since", "2026-13-45T00:00:00Z", "--url", url,
                                 timeout=30)
    assert rc == 2 and out == "", out[:300]
    assert err.count("\n") == 1 and "since" in err, err


async def _serve(env: dict[str, str], port: int, *, tty: bool) -> bytes:
    """Start `serve`, read its banner, stop it with SIGINT."""
    if tty:
        cli = await PtyCli.spawn("serve", "--port", str(port), env=env)
        try:
            await cli.expect(rb"export [^\r\n]+\r\n")
            return bytes(cli.output)
        finally:
            await cli.close()
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", "serve", "--port", str(port), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    out = b""
    try:
        while b"export " not in out:
            line = await asyncio.wait_for(proc.stdout.readline(), scaled(30))
            assert line, out
            out += line
    finally:
        proc.send_signal(2)
        await asyncio.wait_for(proc.wait(), scaled(30))
    return out


async def test_admin_token_only_on_a_terminal(tmp_path: Path, engine: None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPANEL_WS_")}
    env.update(XDG_STATE_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    token_file = tmp_path / "openpanel-ws" / "admin-token"
    port = free_port()
    out = (await _serve(env, port, tty=False)).decode()
    assert "eyJ" not in out  # no token in what a service manager would log
    assert f"written to {token_file}" in out and "openpanel-ws token --sub admin" in out
    assert f'export OPENPANEL_WS_URL=ws://127.0.0.1:{port} OPENPANEL_WS_TOKEN="$(cat {token_file})"' in out
    assert f"port: {port}" in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("eyJ")
    # On a terminal: the token and a ready-to-paste export line.
    port = free_port()
    out = (await _serve(env, port, tty=True)).decode()
    match = re.search(r"export OPENPANEL_WS_URL=(\S+) OPENPANEL_WS_TOKEN=(eyJ\S+)\r\n", out)
    assert match and match[1] == f"ws://127.0.0.1:{port}", out


async def test_exec_i_large_stdin_arrives_intact(
        server: RunningServer, containers: Containers, tmp_path: Path) -> None:
    import hashlib

    name = await containers.run()
    data = b"".join(b"line %06d of a large script\n" % i for i in range(4000))  # ~116 kB
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    rc, out, err = await run_cli_stdin("exec", "-i", "--url", ws_url(server.url), name, "md5sum",
                                       stdin=f"< {path}", timeout=60)
    assert rc == 0, err
    assert out.split()[0].decode() == hashlib.md5(data).hexdigest()
