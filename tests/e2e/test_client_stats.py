"""`openpanel-ws stats` end to end against real containers."""

from __future__ import annotations

import asyncio

import orjson

from client_support import CliStream, run_cli, ws_url
from helpers import Containers, RunningServer, docker, scaled


async def test_stats_json_lines_follow_a_container(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600", options=["--memory", "64m"])
    cli = await CliStream.start("stats", name, "--interval", "500", "--url", ws_url(server.url))
    try:
        samples = [orjson.loads(await cli.readline(60)) for _ in range(3)]
    finally:
        await cli.stop()
    for s in samples:
        assert s["containerId"] == name
        stats = s["stats"]
        assert stats["memory"]["limit"] == 64 * 1024 * 1024
        assert 0 < stats["memory"]["usage"] < stats["memory"]["limit"]
        assert stats["cpu"]["usage"] == stats["cpu"]["percent"] >= 0
        assert {"rx_bytes", "tx_bytes"} <= set(stats["network"])


async def test_stats_no_stream_several_containers(server: RunningServer, containers: Containers) -> None:
    a, b = await containers.run("sleep 3600"), await containers.run("sleep 3600")
    rc, out, err = await run_cli("stats", a, b, "--no-stream", "--url", ws_url(server.url))
    assert rc == 0, err
    assert sorted(orjson.loads(line)["containerId"] for line in out.splitlines()) == sorted([a, b])


async def test_stats_errors_and_removal(server: RunningServer, containers: Containers) -> None:
    url = ws_url(server.url)
    rc, _, err = await run_cli("stats", "opws-missing-db", "--url", url)
    assert rc == 1 and err == "openpanel-ws: container 'opws-missing-db' not found\n"
    name = await containers.run("sleep 3600")
    cli = await CliStream.start("stats", name, "--interval", "500", "--url", url)
    try:
        await cli.readline(60)
        await docker("rm", "-f", name)
        assert await asyncio.wait_for(cli.proc.wait(), scaled(60)) == 0
        assert "removed" in await cli.stderr()
    finally:
        await cli.stop()


async def test_stats_table_on_a_terminal(server: RunningServer, containers: Containers) -> None:
    from test_client_exec import PtyCli

    name = await containers.run("sleep 3600", options=["--memory", "32m"])
    cli = await PtyCli.spawn("stats", name, "--no-stream", "--url", ws_url(server.url))
    try:
        await cli.expect(rb"CONTAINER +CPU % +MEM USAGE / LIMIT +MEM % +NET I/O\r\n")
        await cli.expect(name.encode() + rb" +\d+\.\d\d% +[\d.]+[KM]iB / 32MiB +\d+\.\d\d% ")
        assert await cli.wait(30) == 0
    finally:
        await cli.close()
