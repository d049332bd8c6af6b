"""`openpanel-ws logs` end to end: real containers, a real server, killed and restarted."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from client_support import CliStream, ServerProcess, run_cli, ws_url
from helpers import Containers, RunningServer, docker, eventually, free_port, make_token, scaled
from openpanel_ws.client import OpenPanelClient

COUNTER = 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.1; done'


async def wait_for_log_lines(containers: Containers, name: str, count: int) -> None:
    async def enough() -> bool:
        return len((await containers.logs(name)).splitlines()) >= count

    await eventually(enough, 30, step=0.1, what=f"{name} logging {count} lines")


async def test_logs_splits_stdout_and_stderr_and_ends(server: RunningServer, containers: Containers) -> None:
    name = await containers.run('echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; sleep 3600')
    await wait_for_log_lines(containers, name, 4)
    rc, out, err = await run_cli("logs", name, "--url", ws_url(server.url))
    assert rc == 0, err
    assert out.splitlines() == ["out-1", "out-2"]
    assert err.splitlines() == ["err-1", "err-2"]


async def test_logs_tail_and_timestamps(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("for i in 1 2 3 4 5; do echo n$i; done; sleep 3600")
    await wait_for_log_lines(containers, name, 5)
    rc, out, err = await run_cli("logs", name, "--tail", "2", "-t", "--url", ws_url(server.url))
    assert rc == 0, err
    lines = out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["n4", "n5"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line.split(" ")[0]) for line in lines)


async def test_logs_unknown_container_is_one_line(server: RunningServer) -> None:
    rc, out, err = await run_cli("logs", "-f", "opws-missing-web", "--url", ws_url(server.url))
    assert rc == 1 and out == ""
    assert err == "openpanel-ws: container 'opws-missing-web' not found\n"


async def test_logs_follow_ends_when_the_container_is_removed(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run(COUNTER)
    cli = await CliStream.start("logs", "-f", name, "--url", ws_url(server.url))
    try:
        await cli.read_until(lambda line: line == "line 3")
        await docker("rm", "-f", name)
        assert await asyncio.wait_for(cli.proc.wait(), scaled(60)) == 0
        assert "removed" in await cli.stderr()
    finally:
        await cli.stop()


async def test_logs_follow_across_a_server_restart_has_no_gap_and_no_duplicate(
        tmp_path: Path, containers: Containers) -> None:
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    name = await containers.run(COUNTER)
    cli = await CliStream.start("logs", "-f", name, "--url", server.url, "--reconnect-base", "0.5",
                                "--reconnect-max", "2")
    try:
        await cli.read_until(lambda line: line == "line 20")
        await server.kill()  # SIGKILL: no close frame, the client sees a dead connection
        last_before = int(cli.lines[-1].split()[1])
        # the container keeps logging meanwhile: 20 lines the client must get after
        await wait_for_log_lines(containers, name, last_before + 21)
        await server.start()
        # well past what was logged while the server was down
        target = last_before + 60
        await cli.read_until(lambda line: line == f"line {target}", timeout=90)
        numbers = [int(line.split()[1]) for line in cli.lines]
        assert numbers == list(range(len(numbers))), "gap or duplicate across the restart"
    finally:
        await cli.stop()
        await server.kill()
    stderr = await cli.stderr()
    assert "reconnecting" in stderr and "reconnected" in stderr, stderr


async def test_logs_follow_across_a_graceful_restart(tmp_path: Path, containers: Containers) -> None:
    """SIGTERM: the server says 1001 (going away); the client reconnects the same way."""
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    name = await containers.run(COUNTER)
    cli = await CliStream.start("logs", "-f", name, "--url", server.url, "--reconnect-base", "0.5")
    try:
        await cli.read_until(lambda line: line == "line 10")
        await server.terminate()
        await server.start()
        last_before = int(cli.lines[-1].split()[1])
        await cli.read_until(lambda line: line == f"line {last_before + 40}", timeout=90)
        numbers = [int(line.split()[1]) for line in cli.lines]
        assert numbers == list(range(len(numbers)))
    finally:
        await cli.stop()
        await server.kill()
    assert "1001" in await cli.stderr()


async def test_library_logs_resume_with_since(server: RunningServer, containers: Containers) -> None:
    """Library level: a consumer of `client.logs` sees every line once; `follow=False` ends."""

    name = await containers.run("for i in $(seq 1 300); do echo x$i; done; sleep 3600")
    await wait_for_log_lines(containers, name, 300)
    async with OpenPanelClient(ws_url(server.url), make_token()) as client:
        lines = [line.data async for line in client.logs(name, tail="all", follow=False)]
    assert lines == [f"x{i}" for i in range(1, 301)]


async def test_logs_since(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("echo early; sleep 2; echo late; sleep 3600")
    await wait_for_log_lines(containers, name, 2)
    url = ws_url(server.url)
    rc, out, _ = await run_cli("logs", name, "-t", "--url", url)
    assert rc == 0
    late_ts = next(line.split()[0] for line in out.splitlines() if line.endswith(" late"))
    rc, out, err = await run_cli("logs", name, "--since", late_ts, "--url", url)
    assert rc == 0, err
    assert out.splitlines() == ["late"]
    rc, _, err = await run_cli("logs", name, "--since", "yesterday", "--url", url)
    assert rc == 2 and "--since" in err
