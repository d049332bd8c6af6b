"""Host scopes end to end (docs/protocol.md "Host scopes"): a token whose `hosts` claim is
`["staging-*"]` cannot see, subscribe to, open a terminal on, or learn the existence of
anything on `prod-1`.

`prod-1` is the local engine behind an `EngineProxy` that records every request, so the
tests can show that the host check asks no engine: an existing and a missing container
out of scope answer alike, and in the same time, because neither is looked up.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine_proxy import EngineProxy
from helpers import Containers, RunningServer, WsClient, make_token, scaled, unique_name
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig

pytestmark = pytest.mark.timeout(180)

MakeServer = Callable[..., Awaitable[RunningServer]]
LOCAL = "unix:///var/run/docker.sock"
DENIED = "Permission denied"


@pytest.fixture
async def prod(tmp_path: Path) -> AsyncIterator[EngineProxy]:
    proxy = EngineProxy(tmp_path / "prod.sock")
    await proxy.open()
    try:
        yield proxy
    finally:
        await proxy.down()


@pytest.fixture
async def server(make_server: MakeServer, prod: EngineProxy) -> RunningServer:
    return await make_server(hosts=(HostConfig("staging-1", EngineTarget(LOCAL)),
                                    HostConfig("prod-1", EngineTarget(prod.url))))


def staging_token() -> str:
    return make_token("ops", hosts=["staging-*"])


async def get_json(server: RunningServer, path: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            server.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, json.loads(await resp.read())


async def denied_in(client: WsClient, message: dict[str, Any]) -> float:
    """Send `message`; its PERMISSION_DENIED must come back: the seconds it took."""
    started = time.monotonic()
    await client.send(message)
    error = await client.expect("error", 10)
    took = time.monotonic() - started
    expected = {"type": "error", "code": "PERMISSION_DENIED", "message": DENIED}
    if "containerId" in message:
        expected["containerId"] = message["containerId"]
    if "host" in message or "containerId" in message:
        expected["host"] = message.get("host") or "prod-1"
    assert error == expected
    return took


async def test_the_http_surface_shows_nothing_of_prod(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    status, body = await get_json(server, "/api/containers", staging_token())
    assert status == 200
    assert {r["host"] for r in body["containers"]} == {"staging-1"}
    assert name in {r["name"] for r in body["containers"]}
    assert body["unavailable"] == []
    for wanted in ("prod-1", "prod-2"):  # existing or not: the same answer
        status, body = await get_json(server, f"/api/containers?host={wanted}", staging_token())
        assert (status, body) == (403, {"error": DENIED, "code": "PERMISSION_DENIED",
                                        "host": wanted})
    status, rows = await get_json(server, "/api/hosts", staging_token())
    assert (status, [r["id"] for r in rows]) == (200, ["staging-1"])
    status, body = await get_json(server, "/readyz", staging_token())
    assert [h["id"] for h in body["hosts"]] == ["staging-1"]
    # An unscoped token sees both.
    status, rows = await get_json(server, "/api/hosts", make_token())
    assert [r["id"] for r in rows] == ["staging-1", "prod-1"]


async def test_no_subscription_on_prod_and_no_way_to_tell_what_exists_there(
        server: RunningServer, containers: Containers, prod: EngineProxy) -> None:
    name = await containers.run("echo hi; sleep 3600")
    full_id = await containers.id_of(name)
    timings: dict[str, list[float]] = {"exists": [], "missing": []}
    for _ in range(4):
        for ref, group in ((name, "exists"), (full_id, "exists"), (full_id[:12], "exists"),
                           (unique_name("missing"), "missing"), ("0" * 12, "missing")):
            # A connection per container: the requests stay under the rate limit.
            client = await server.connect("/ws/containers", auth=staging_token())
            for kind in ("logs", "stats"):
                message = {"type": f"subscribe_{kind}", "containerId": ref, "host": "prod-1"}
                timings[group].append(await denied_in(client, message))
            await client.close()
    client = await server.connect("/ws/containers", auth=staging_token())
    # A host that is not configured at all answers exactly as prod-1 does.
    await denied_in(client, {"type": "subscribe_logs", "containerId": name, "host": "prod-2"})
    for kind in ("logs", "stats"):
        await denied_in(client, {"type": f"unsubscribe_{kind}", "containerId": name,
                                 "host": "prod-1"})
    # The host check asked no engine: the proxy in front of prod-1 saw no request about
    # any container (only the status probe's /info and nothing else).
    assert prod.asked_about("/containers") == []
    assert prod.asked_about(full_id[:12]) == [] and prod.asked_about(name) == []
    # Hence the same time for a container that exists there and one that does not.
    exists, missing = (statistics.median(timings[g]) for g in ("exists", "missing"))
    assert exists < scaled(0.25) and missing < scaled(0.25), timings
    assert abs(exists - missing) < scaled(0.05), timings
    # The same container through its allowed host is there.
    await client.send({"type": "subscribe_logs", "containerId": name, "host": "staging-1"})
    assert (await client.expect("subscribed_logs", 15))["host"] == "staging-1"
    assert (await client.expect("log", 15))["data"] == "hi"


async def test_the_prod_route_authenticates_and_refuses_every_request(
        server: RunningServer, containers: Containers, prod: EngineProxy) -> None:
    name = await containers.run("sleep 3600")
    client = await server.connect("/hosts/prod-1/ws/containers", auth=staging_token())
    for kind in ("subscribe_logs", "subscribe_stats", "unsubscribe_logs", "unsubscribe_stats"):
        await denied_in(client, {"type": kind, "containerId": name})
        await denied_in(client, {"type": kind, "containerId": unique_name("missing")})
    await client.send({"type": "ping"})
    await client.expect("pong", 5)
    metrics = await server.connect("/hosts/prod-1/ws/metrics", auth=staging_token())
    await denied_in(metrics, {"type": "subscribe", "host": "prod-1"})
    assert prod.asked_about("/containers") == []
    # The same route with an unscoped token works: prod-1 is real.
    admin = await server.connect("/hosts/prod-1/ws/containers", auth=make_token())
    await admin.send({"type": "subscribe_stats", "containerId": name})
    assert (await admin.expect("subscribed_stats", 15))["host"] == "prod-1"


async def test_no_terminal_on_prod(
        server: RunningServer, containers: Containers, prod: EngineProxy) -> None:
    name = await containers.run("sleep 3600")
    for path, message in (
            ("/ws/terminal", {"type": "open_terminal", "containerId": name, "host": "prod-1"}),
            ("/hosts/prod-1/ws/terminal", {"type": "open_terminal", "containerId": name})):
        client = await server.connect(path, auth=staging_token())
        await denied_in(client, message)
        assert await client.quiet(0.5, "terminal_opened") == []
    assert prod.asked_about("/containers") == []
