"""/ws/containers across hosts, end to end (docs/protocol.md "Hosts").

Until a second engine is part of the test machine, the second host is a second
HostConfig on the same local engine (or an `EngineProxy` in front of it): two host ids,
two engine clients, two events hubs, so a container on both is two subscriptions and two
upstreams, exactly as with two engines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine_proxy import EngineProxy
from helpers import Containers, RunningServer, WsClient, eventually, make_token, scaled, unique_name
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.gateways.containers import ContainersGateway
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.server import GATEWAYS_KEY

pytestmark = pytest.mark.timeout(180)

MakeServer = Callable[..., Awaitable[RunningServer]]
LOCAL = "unix:///var/run/docker.sock"
TICKER = "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done"


def host(host_id: str, url: str = LOCAL, timeout: float | None = None) -> HostConfig:
    return HostConfig(host_id, EngineTarget(url), timeout=timeout)


def gateway(server: RunningServer) -> ContainersGateway:
    gw = server.app[GATEWAYS_KEY]["containers"]
    assert isinstance(gw, ContainersGateway)
    return gw


async def two_hosts(make_server: MakeServer, *extra: HostConfig) -> RunningServer:
    return await make_server(hosts=(host("local"), host("other"), *extra))


async def subscribe(client: WsClient, kind: str, ref: str, **extra: Any) -> dict[str, Any]:
    await client.send({"type": f"subscribe_{kind}", "containerId": ref, **extra})
    return await client.expect(None, 20, where=lambda m: m.get("containerId") == ref and m[
        "type"] in (f"subscribed_{kind}", "error"))


def numbers(lines: list[dict[str, Any]]) -> list[int]:
    return [int(m["data"].split()[1]) for m in lines]


# --- the host field and addressing -------------------------------------------------


async def test_host_is_on_every_message_about_a_container(
        make_server: MakeServer, containers: Containers) -> None:
    server = await two_hosts(make_server)
    name = await containers.run(TICKER)
    client = await server.connect("/ws/containers", auth=True)
    ack = await subscribe(client, "logs", name, host="other", tail=1)
    assert ack == {"type": "subscribed_logs", "containerId": name, "host": "other"}
    line = await client.expect("log", 15)
    assert (line["containerId"], line["host"]) == (name, "other")
    ack = await subscribe(client, "stats", name, host="other")
    assert ack == {"type": "subscribed_stats", "containerId": name, "interval": 2000,
                   "host": "other"}
    stats = await client.expect("stats", 15)
    assert (stats["containerId"], stats["host"]) == (name, "other")
    # No host: the default host, named on every reply.
    ack = await subscribe(client, "stats", name)
    assert ack["host"] == "local"
    for kind in ("logs", "stats"):
        await client.send({"type": f"unsubscribe_{kind}", "containerId": name, "host": "other"})
        reply = await client.expect(f"unsubscribed_{kind}", 10)
        assert reply == {"type": f"unsubscribed_{kind}", "containerId": name, "host": "other"}
    missing = unique_name("missing")
    error = await subscribe(client, "logs", missing, host="other")
    assert (error["code"], error["containerId"], error["host"]) == (
        "CONTAINER_NOT_FOUND", missing, "other")
    await containers.cleanup()
    ended = await client.expect("subscription_ended", 20)
    assert (ended["subscription"], ended["containerId"], ended["host"]) == ("stats", name, "local")


async def test_one_container_on_two_hosts_is_two_subscriptions_and_two_upstreams(
        make_server: MakeServer, containers: Containers) -> None:
    server = await two_hosts(make_server)
    name = await containers.run(TICKER)
    client = await server.connect("/ws/containers", auth=True)

    def listeners() -> dict[str, int]:  # each host's events hub, heard only while needed
        return {h.id: h.events.listener_count for h in server.services.hosts}

    assert listeners() == {"local": 0, "other": 0}
    for host_id, heard in (("other", {"local": 0, "other": 1}), ("local", {"local": 1, "other": 1})):
        assert (await subscribe(client, "logs", name, host=host_id, tail=0))["host"] == host_id
        assert listeners() == heard
    assert gateway(server).upstream_counts()["logs"] == 2
    got = await client.expect_many("log", 10, 20)
    by_host = {h: numbers([m for m in got if m["host"] == h]) for h in ("local", "other")}
    assert by_host["local"] and by_host["other"]  # both subscriptions deliver
    # Unsubscribing one host's leaves the other's running.
    await client.send({"type": "unsubscribe_logs", "containerId": name, "host": "local"})
    await client.expect("unsubscribed_logs", 10)
    assert gateway(server).upstream_counts()["logs"] == 1
    client.backlog.clear()
    later = await client.expect_many("log", 5, 20)
    assert {m["host"] for m in later} == {"other"}
    # Removed: the remaining subscription ends, naming its host.
    await containers.cleanup()
    ended = await client.expect("subscription_ended", 20)
    assert (ended["containerId"], ended["host"]) == (name, "other")
    await eventually(lambda: gateway(server).upstream_counts() == {"logs": 0, "stats": 0}, 10)
    assert listeners() == {"local": 0, "other": 0}


async def test_a_host_route_speaks_the_protocol_unchanged(
        make_server: MakeServer, containers: Containers) -> None:
    server = await two_hosts(make_server)
    name = await containers.run("echo hello; sleep 3600")
    await containers.wait_logged(name, "hello")
    client = await server.connect("/hosts/other/ws/containers", auth=True)
    # A client written against the specification alone: no host anywhere.
    await client.send({"type": "subscribe_logs", "containerId": name})
    ack = await client.expect("subscribed_logs", 15)
    assert (ack["containerId"], ack["host"]) == (name, "other")  # host is additive
    line = await client.expect("log", 15)
    assert (line["data"], line["host"]) == ("hello", "other")
    # The route's host may be repeated, never contradicted.
    assert (await subscribe(client, "stats", name, host="other"))["type"] == "subscribed_stats"
    await client.send({"type": "subscribe_stats", "containerId": name, "host": "local"})
    error = await client.expect("error", 10)
    assert (error["code"], error["field"]) == ("INVALID_MESSAGE", "host")
    await client.send({"type": "unsubscribe_logs", "containerId": name, "host": "local"})
    error = await client.expect("error", 10)
    assert (error["code"], error["field"]) == ("INVALID_MESSAGE", "host")
    assert gateway(server).upstream_counts() == {"logs": 1, "stats": 1}


async def test_unknown_host_and_a_bad_host_field(make_server: MakeServer) -> None:
    server = await two_hosts(make_server)
    client = await server.connect("/ws/containers", auth=True)
    for kind in ("logs", "stats"):
        error = await subscribe(client, kind, "web", host="nope")
        assert error == {"type": "error", "code": "INVALID_MESSAGE",
                         "message": "Unknown host 'nope'", "field": "host",
                         "containerId": "web", "host": "nope"}
        error = await subscribe(client, kind, "web", host=42)
        assert (error["code"], error["field"]) == ("INVALID_MESSAGE", "host")
    # An unknown host's route upgrades and authenticates like a known one.
    routed = await server.connect("/hosts/nope/ws/containers", auth=True)
    await routed.send({"type": "subscribe_logs", "containerId": "web"})
    error = await routed.expect("error", 10)
    assert (error["code"], error["field"], error["host"]) == ("INVALID_MESSAGE", "host", "nope")
    assert gateway(server).upstream_counts() == {"logs": 0, "stats": 0}


# --- a host that is down or hangs --------------------------------------------------


async def test_a_down_host_is_docker_unavailable_and_delays_no_other_host(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    hung = EngineProxy(tmp_path / "hung.sock")
    await hung.hang()
    try:
        server = await make_server(hosts=(
            host("local"), host("dead", f"unix://{tmp_path}/none.sock", timeout=1.0),
            host("hung", hung.url, timeout=2.0)))
        name = await containers.run("sleep 3600")
        client = await server.connect("/ws/containers", auth=True)
        started = time.monotonic()
        await client.send({"type": "subscribe_logs", "containerId": name, "host": "hung"})
        await client.send({"type": "subscribe_stats", "containerId": name, "host": "dead"})
        await client.send({"type": "subscribe_logs", "containerId": name, "host": "local"})
        ack = await client.expect("subscribed_logs", 10)
        assert ack["host"] == "local"
        local_after = time.monotonic() - started
        for host_id in ("dead", "hung"):
            def about(m: dict[str, Any], h: str = host_id) -> bool:
                return m.get("host") == h

            error = await client.expect("error", 10, where=about)
            assert error == {"type": "error", "code": "DOCKER_UNAVAILABLE",
                             "message": "Docker engine unavailable", "containerId": name,
                             "host": host_id}
        hung_after = time.monotonic() - started
        assert local_after < hung_after  # the hung host held up nothing of the local one
        assert hung_after < 2.0 + scaled(3.0)  # within the hung host's own timeout
        assert gateway(server).upstream_counts() == {"logs": 1, "stats": 0}
    finally:
        await hung.down()


async def test_an_outage_mid_subscription_is_reported_and_resumes_without_gap_or_duplicate(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    proxy = EngineProxy(tmp_path / "engine.sock")
    await proxy.open()
    try:
        server = await make_server(hosts=(host("local"), host("far", proxy.url, timeout=2.0)))
        name = await containers.run(TICKER)
        client = await server.connect("/ws/containers", auth=True)
        assert (await subscribe(client, "logs", name, host="far", tail="all"))["host"] == "far"
        seen = await client.expect_many("log", 5, 20)
        await proxy.down()
        error = await client.expect("error", scaled(10))
        assert error == {"type": "error", "code": "DOCKER_UNAVAILABLE",
                         "message": "Docker engine unavailable", "containerId": name,
                         "host": "far"}
        await asyncio.sleep(scaled(1.5))  # the container logs on while the host is away
        await proxy.open()
        # Told once per outage, not once per retry; then every line, in order, once.
        upto = await containers.logs(name)
        target = len(upto.splitlines()) + 5
        while not seen or numbers(seen)[-1] < target:
            message = await client.expect(None, 30)
            assert message["type"] == "log", message
            assert message["host"] == "far"
            seen.append(message)
        got = numbers(seen)
        assert got == list(range(1, got[-1] + 1))
        assert gateway(server).upstream_counts()["logs"] == 1
    finally:
        await proxy.down()


async def test_a_host_that_hangs_mid_subscription_is_reported_and_flows_on(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    proxy = EngineProxy(tmp_path / "engine.sock")
    await proxy.open()
    try:
        server = await make_server(hosts=(host("local"), host("far", proxy.url, timeout=1.0)))
        name = await containers.run(TICKER)
        client = await server.connect("/ws/containers", auth=True)
        await subscribe(client, "logs", name, host="far", tail="all")
        local = await server.connect("/ws/containers", auth=True)
        await subscribe(local, "logs", name, tail=0)
        seen = await client.expect_many("log", 3, 20)
        await proxy.hang()  # the stream stalls: only the host's status probe can tell
        error = await client.expect("error", scaled(20))
        assert (error["code"], error["containerId"], error["host"]) == (
            "DOCKER_UNAVAILABLE", name, "far")
        assert server.services.hosts.get("far").status.state == "down"  # type: ignore[union-attr]
        # Meanwhile the same container on the local host streams on.
        assert {m["host"] for m in await local.expect_many("log", 3, 10)} == {"local"}
        await proxy.open()
        target = numbers(seen)[-1] + 10
        while numbers(seen)[-1] < target:
            message = await client.expect(None, 30)
            assert message["type"] == "log", message
            seen.append(message)
        got = numbers(seen)
        assert got == list(range(1, got[-1] + 1))
    finally:
        await proxy.down()


# --- re-auth ------------------------------------------------------------------------


async def test_reauth_ends_the_subscriptions_on_hosts_no_longer_allowed(
        make_server: MakeServer, containers: Containers) -> None:
    server = await two_hosts(make_server)
    name = await containers.run(TICKER)
    client = await server.connect("/ws/containers", auth=make_token("alice"))
    for host_id in ("local", "other"):
        for kind in ("logs", "stats"):
            assert (await subscribe(client, kind, name, host=host_id, tail=0))["host"] == host_id
    await client.send({"type": "auth", "token": make_token("alice", hosts=["loc*"])})
    await client.expect("authenticated", 5)
    ended = [await client.expect("subscription_ended", 5) for _ in range(2)]
    assert sorted((m["subscription"], m["host"], m["reason"]) for m in ended) == [
        ("logs", "other", "permission"), ("stats", "other", "permission")]
    assert {m["containerId"] for m in ended} == {name}
    await client.round_trip()
    client.backlog.clear()
    later = await client.expect_many("log", 3, 20)
    assert {m["host"] for m in later} == {"local"}
    assert gateway(server).upstream_counts() == {"logs": 1, "stats": 1}
    error = await subscribe(client, "logs", name, host="other")
    assert (error["code"], error["host"]) == ("PERMISSION_DENIED", "other")
