"""The Python client and the CLI with several Docker hosts behind one gateway, end to end
(docs/client.md "Several Docker hosts"): the host option, HOST/CONTAINER, subscriptions
keyed by (host, container), host routes, `openpanel-ws hosts`.

The second host is a second configuration of the local engine ("other"): the same
containers answer on both, so what is under test is the addressing, not a transport.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from client_support import CliStream, EngineProxy, cli_env, run_cli, ws_url
from helpers import Containers, RunningServer, eventually, make_token, scaled, unique_name
from openpanel_ws.client import LogLine, OpenPanelClient
from openpanel_ws.config import Settings
from openpanel_ws.hosts.config import hosts_from_env


@pytest.fixture
async def hosts_server(make_server: Any) -> RunningServer:
    url = Settings().docker_host
    server: RunningServer = await make_server(hosts=hosts_from_env(f"local={url},other={url}"))
    return server


async def first_lines(client: OpenPanelClient, name: str, host: str | None, n: int) -> list[LogLine]:
    out: list[LogLine] = []
    async with asyncio.timeout(scaled(30)):
        async for line in client.logs(name, tail="all", host=host):
            out.append(line)
            if len(out) == n:
                break
    return out


async def test_the_same_container_on_two_hosts_and_the_default_host(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run("echo one; echo two; sleep 3600")
    async with OpenPanelClient(ws_url(hosts_server.url), make_token()) as client:
        on_local, on_other = await asyncio.gather(first_lines(client, name, "local", 2),
                                                  first_lines(client, name, "other", 2))
        assert [(line.host, line.data) for line in on_local] == [("local", "one"), ("local", "two")]
        assert [(line.host, line.data) for line in on_other] == [("other", "one"), ("other", "two")]
        # Without a host: the gateway's default host, named in what arrives.
        assert [line.host for line in await first_lines(client, name, None, 1)] == ["local"]
    async with OpenPanelClient(ws_url(hosts_server.url), make_token(), host="other") as client:
        assert [line.host for line in await first_lines(client, name, None, 1)] == ["other"]


async def test_a_host_route_and_a_host_out_of_scope(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run("echo routed; sleep 3600")
    async with OpenPanelClient(ws_url(hosts_server.url), make_token(), host_route="other") as client:
        [line] = await first_lines(client, name, None, 1)
        assert (line.host, line.data) == ("other", "routed")
    async with OpenPanelClient(ws_url(hosts_server.url), make_token(hosts=["local"])) as client:
        with pytest.raises(Exception, match="permission denied") as info:
            await first_lines(client, name, "other", 1)
        assert getattr(info.value, "host", None) == "other"


async def test_cli_host_slash_container_and_host_option(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run("echo from-both; sleep 3600")
    url = ws_url(hosts_server.url)
    for args in ([f"other/{name}"], ["--host", "other", name], [f"other/{name}", "--host", "local"]):
        rc, out, err = await run_cli("logs", *args, "--url", url)
        assert (rc, out) == (0, "from-both\n"), err
    rc, out, err = await run_cli("logs", f"nope/{name}", "--url", url)
    assert rc == 2 and "Unknown host 'nope'" in err and out == ""
    rc, _, err = await run_cli("logs", "/x", "--url", url)
    assert rc == 2 and "HOST/CONTAINER" in err


async def test_cli_stats_on_two_hosts_and_exec_on_one(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    url = ws_url(hosts_server.url)
    rc, out, err = await run_cli("stats", f"local/{name}", f"other/{name}", "--no-stream", "--json",
                                 "--url", url)
    assert rc == 0, err
    samples = [orjson.loads(line) for line in out.splitlines()]
    assert sorted((s["host"], s["containerId"]) for s in samples) == [("local", name), ("other", name)]
    rc, out, err = await run_cli("exec", "--url", url, f"other/{name}", "echo", "hi")
    assert (rc, out) == (0, "hi\n"), err
    rc, out, err = await run_cli("exec", name, "--host", "other", "--url", url, "echo", "there")
    assert (rc, out) == (0, "there\n"), err


async def test_cli_hosts_lists_the_hosts_the_token_may_see(hosts_server: RunningServer) -> None:
    url = ws_url(hosts_server.url)
    rc, out, err = await run_cli("hosts", "--json", "--url", url)
    assert rc == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["local", "other"]
    assert {"id", "engine", "state", "error", "version", "containers", "terminals"} <= set(rows[0])
    rc, out, err = await run_cli("hosts", "--url", url)
    assert rc == 0, err
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["HOST", "STATE", "ENGINE"]
    assert [line.split()[0] for line in lines] == ["local", "other"]
    rc, out, err = await run_cli("hosts", "--json", "--url", url, env=cli_env(make_token(hosts=["oth*"])))
    assert rc == 0, err
    assert [orjson.loads(line)["id"] for line in out.splitlines()] == ["other"]


async def test_cli_events_of_every_host_and_of_one(
        hosts_server: RunningServer, containers: Containers) -> None:
    name = unique_name("opws-cli-hosts-ev")
    url = ws_url(hosts_server.url)
    every = await CliStream.start("events", "--json", "--filter", f"container={name}", "--url", url)
    one = await CliStream.start("events", "--json", "--host", "other", "--filter", f"container={name}",
                                "--url", url)
    try:
        await eventually(lambda: hosts_server.authenticated() == 2, 30, what="both CLIs connected")
        await containers.run("sleep 3600", name=name)

        async def starts(cli: CliStream, count: int) -> list[str]:
            hosts: list[str] = []
            while len(hosts) < count:
                item = orjson.loads(await cli.readline(60))
                if item["type"] == "docker_event" and item["event"].get("Action") == "start":
                    hosts.append(item["host"])
            return hosts

        assert sorted(await starts(every, 2)) == ["local", "other"]  # the one engine, twice
        assert await starts(one, 1) == ["other"]
        with pytest.raises(TimeoutError):  # and not the local host's
            await asyncio.wait_for(starts(one, 1), scaled(2))
    finally:
        await every.stop()
        await one.stop()


async def test_logs_follow_a_host_that_goes_down_and_comes_back(
        make_server: Any, containers: Containers) -> None:
    """`logs -f` on a host whose engine goes away: a notice, the subscription stays, and
    the lines continue on the same host with no gap and no duplicate."""
    settings = Settings()
    proxy = EngineProxy(settings.docker_host.removeprefix("unix://"))
    await proxy.start()
    cli: CliStream | None = None
    try:
        server = await make_server(hosts=hosts_from_env(f"local={settings.docker_host},flaky={proxy.url}"))
        name = await containers.run('i=0; while true; do echo "n $i"; i=$((i+1)); sleep 0.2; done')
        cli = await CliStream.start("logs", "-f", f"flaky/{name}", "--url", ws_url(server.url))
        await cli.read_until(lambda line: line == "n 3", timeout=30)
        await proxy.stop()

        async def flaky_down() -> bool:
            async with OpenPanelClient(ws_url(server.url), make_token()) as client:
                return any(h["id"] == "flaky" and h["state"] == "down" for h in await client.hosts())

        await eventually(flaky_down, 30, what="the host seen down")
        await proxy.start()
        lines = await cli.read_until(lambda line: line.startswith("n ") and int(line[2:]) >= 40, timeout=60)
        numbers = [int(line[2:]) for line in lines if line.startswith("n ")]
        assert numbers == list(range(numbers[-1] + 1)), numbers  # every line once, in order
        await cli.stop()
        assert f"container '{name}': the gateway cannot reach the Docker engine of host 'flaky'; " \
            "waiting for the host" in await cli.stderr()
    finally:
        if cli is not None:
            await cli.stop()
        await proxy.stop()
