"""`openpanel-ws events` end to end: real engine events through `/ws/logs`."""

from __future__ import annotations

import orjson

from client_support import CliStream, ws_url
from helpers import Containers, RunningServer, docker, eventually, unique_name


async def test_events_json_and_filter(server: RunningServer, containers: Containers) -> None:
    name = unique_name("opws-cli-ev")
    cli = await CliStream.start("events", "--json", "--filter", f"container={name}",
                                "--url", ws_url(server.url))
    try:
        # connected and authenticated; its `subscribe` {filters} follows at once
        await eventually(lambda: server.authenticated() == 1, 30, what="the CLI connected")
        await containers.run("sleep 3600", name=name)
        seen = []
        while True:
            item = orjson.loads(await cli.readline(60))
            if item["type"] == "system_log" and item["source"] == "gateway":
                continue
            seen.append(item)
            if item["type"] == "docker_event" and item["event"].get("Action") == "start":
                break
        events = [i for i in seen if i["type"] == "docker_event"]
        assert events and all(e["event"]["Actor"]["Attributes"].get("name") == name for e in events)
        assert any(i["type"] == "system_log" and name in i["message"] for i in seen)
    finally:
        await cli.stop()


async def test_events_human_lines(server: RunningServer, containers: Containers) -> None:
    name = unique_name("opws-cli-ev")
    cli = await CliStream.start("events", "--filter", f"container={name}", "--url", ws_url(server.url))
    try:
        await eventually(lambda: server.authenticated() == 1, 30, what="the CLI connected")
        await containers.run("sleep 3600", name=name)
        await docker("stop", "-t", "0", name)
        lines = await cli.read_until(lambda line: "died with exit code" in line, timeout=60)
        start = next(line for line in lines if " container start " in line)
        assert f"name={name}" in start and start[:4].isdigit()
        assert any(" container die " in line and name in line for line in lines)
        assert lines[-1].endswith(f"[warning] docker: Container {name} died with exit code 137")
    finally:
        await cli.stop()
