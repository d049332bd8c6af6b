"""A host that hangs or refuses costs the others nothing (docs/protocol.md "A host that is down
or hangs"), end to end: the real local engine, engine2 over TLS behind a `HungProxy` (it
accepts and never answers), and engine2 over TLS and SSH with a wrong CA, an expired client
certificate and an unknown or changed host key (tests/hosts_support.py, docs/hosts.md
"The test hosts").

A local operation that waited on the hung host would take at least that host's engine
timeout; every local budget below is a third of it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from helpers import (
    Containers,
    RunningServer,
    eventually,
    make_token,
    scaled,
    unique_name,
)
from hosts_support import (
    Engine2Containers,
    HostsDescriptor,
    HungProxy,
    docker2,
    local_host,
    ssh_host,
    tls_host,
)

MakeServer = Callable[..., Awaitable[RunningServer]]
Msg = dict[str, Any]

HUNG_TIMEOUT = scaled(20.0)  # the hung host's engine timeout
LOCAL_BUDGET = HUNG_TIMEOUT / 3  # what any local operation may take meanwhile
COUNTER = "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.1; done"


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token()}"}


async def get_json(server: RunningServer, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path, headers=bearer()) as r:
        return r.status, await r.json()


async def host_rows(server: RunningServer) -> dict[str, Msg]:
    status, rows = await get_json(server, "/api/hosts")
    assert status == 200, rows
    return {row["id"]: row for row in rows}


async def within(budget: float, what: str, step: Awaitable[Any]) -> Any:
    """`step`'s result; fails naming `what` if it takes longer than `budget` (already scaled)."""
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(step, budget)
    except TimeoutError:
        raise AssertionError(f"{what} took more than {budget:.1f}s while a host hangs") from None
    finally:
        print(f"[hung host] {what}: {time.monotonic() - t0:.3f}s")


async def hung_server(make_server: MakeServer, proxy: HungProxy, timeout: float) -> RunningServer:
    return await make_server(hosts=(local_host(), tls_host("hung", url=proxy.url, timeout=timeout)))


def numbers(messages: list[Msg]) -> list[int]:
    return [int(m["data"].strip().removeprefix("line-")) for m in messages
            if m.get("type") == "log" and m["data"].strip().startswith("line-")]


# --- a hung host delays nothing else ---------------------------------------------------


async def test_start_up_and_readyz_are_not_delayed_by_a_hung_host(
        make_server: MakeServer, hung_proxy: HungProxy) -> None:
    t0 = time.monotonic()
    server = await within(LOCAL_BUDGET, "start-up", hung_server(make_server, hung_proxy, HUNG_TIMEOUT))

    async def ready() -> bool:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as r:
            return r.status == 200

    await eventually(ready, LOCAL_BUDGET / scaled(1), what="/readyz ready")
    assert time.monotonic() - t0 < LOCAL_BUDGET
    rows = await within(LOCAL_BUDGET, "GET /api/hosts", host_rows(server))
    assert rows["local"]["state"] == "up"
    assert rows["hung"]["state"] == "connecting"  # its first probe is still waiting
    assert hung_proxy.accepted >= 1


async def test_local_logs_stats_and_events_flow_while_a_host_hangs(
        make_server: MakeServer, hung_proxy: HungProxy, containers: Containers) -> None:
    server = await hung_server(make_server, hung_proxy, HUNG_TIMEOUT)
    name = await containers.run(COUNTER)
    # A subscriber of the hung host, waiting on it the whole time.
    waiting = await server.connect("/ws/containers", auth=True)
    await waiting.send({"type": "subscribe_logs", "containerId": "anything", "host": "hung"})
    events = await server.connect("/ws/logs", auth=True)
    await within(LOCAL_BUDGET, "events stream of local",
                 wait_connected(server, "local"))

    client = await server.connect("/ws/containers", auth=True)
    await client.send({"type": "subscribe_logs", "containerId": name, "tail": 0})
    ack = await within(LOCAL_BUDGET, "subscribed_logs", client.expect("subscribed_logs", LOCAL_BUDGET))
    assert ack["host"] == "local"
    line = await within(LOCAL_BUDGET, "a local log line", client.expect("log", LOCAL_BUDGET))
    assert line["host"] == "local" and line["containerId"] == name
    await client.send({"type": "subscribe_stats", "containerId": name})
    stats = await within(LOCAL_BUDGET, "local stats", client.expect("stats", LOCAL_BUDGET))
    assert stats["host"] == "local"

    started = unique_name("ophung-ev")
    await containers.run("true", name=started)
    event = await within(LOCAL_BUDGET, "a local docker_event", events.expect(
        "docker_event", LOCAL_BUDGET,
        where=lambda m: m["event"].get("Actor", {}).get("Attributes", {}).get("name") == started))
    assert event["host"] == "local"
    # All of that happened while the hung host's subscriber was still waiting for its answer
    # (DOCKER_UNAVAILABLE at its timeout: test_subscribe_on_a_hung_host_...).
    assert [m for m in await waiting.collect(0.05) if m["type"] == "error"] == []
    assert hung_proxy.connections >= 1


async def test_container_list_is_not_delayed_by_a_hung_host(
        make_server: MakeServer, hung_proxy: HungProxy, containers: Containers) -> None:
    timeout = scaled(9.0)
    server = await hung_server(make_server, hung_proxy, timeout)
    name = await containers.run()
    hung = server.services.hosts.get("hung")
    assert hung is not None
    await eventually(lambda: hung.status.state.value == "down", timeout / scaled(1) + 5,
                     what="the hung host down")
    status, body = await within(timeout / 3, "GET /api/containers",
                                get_json(server, "/api/containers"))
    assert status == 200, body
    assert any(r["name"] == name and r["host"] == "local" for r in body["containers"])
    assert [u["host"] for u in body.get("unavailable", [])] == ["hung"]


async def wait_connected(server: RunningServer, host_id: str) -> None:
    host = server.services.hosts.get(host_id)
    assert host is not None
    assert await host.events.wait_connected(LOCAL_BUDGET)


# --- the hung host's own subscribers -----------------------------------------------------


async def test_subscribe_on_a_hung_host_is_docker_unavailable_within_its_timeout(
        make_server: MakeServer, hung_proxy: HungProxy, engine2_containers: Engine2Containers) -> None:
    timeout = scaled(2.0)
    server = await hung_server(make_server, hung_proxy, timeout)
    name = await engine2_containers.run(COUNTER)
    client = await server.connect("/ws/containers", auth=True)
    t0 = time.monotonic()
    await client.send({"type": "subscribe_logs", "containerId": name, "host": "hung"})
    error = await client.expect("error", timeout + scaled(3))
    took = time.monotonic() - t0
    print(f"[hung host] DOCKER_UNAVAILABLE after {took:.2f}s (engine timeout {timeout:.1f}s)")
    assert error == {**error, "code": "DOCKER_UNAVAILABLE", "message": "Docker engine unavailable",
                     "containerId": name, "host": "hung"}
    assert took < timeout + scaled(2)


async def test_a_host_that_hangs_mid_stream_resumes_with_no_gap_and_no_duplicate(
        make_server: MakeServer, hung_proxy: HungProxy, engine2_containers: Engine2Containers) -> None:
    hung_proxy.release()
    timeout = scaled(2.0)
    server = await hung_server(make_server, hung_proxy, timeout)
    host = server.services.hosts.get("hung")
    assert host is not None
    host.monitor.up_interval = 0.5  # probe often: the hang is noticed by the next probe
    name = await engine2_containers.run(COUNTER)
    await eventually(lambda: host.up, 20, what="the host behind the proxy up")
    client = await server.connect("/ws/containers", auth=True)
    await client.send({"type": "subscribe_logs", "containerId": name, "host": "hung", "tail": "all"})
    await client.expect("subscribed_logs", 10)
    got: list[Msg] = [await client.expect("log", 10) for _ in range(5)]

    hung_proxy.hang()
    t0 = time.monotonic()
    while True:  # the lines already in flight, then the outage
        msg = await client.expect(None, 1 + timeout + scaled(5))
        if msg["type"] == "error":
            break
        got.append(msg)
    print(f"[hung host] mid-stream hang reported after {time.monotonic() - t0:.2f}s")
    assert msg == {**msg, "code": "DOCKER_UNAVAILABLE", "containerId": name, "host": "hung"}
    assert time.monotonic() - t0 < 1 + timeout + scaled(3)
    assert host.status.state.value == "down"

    hung_proxy.release()
    last = int((await docker2("logs", "--tail", "1", name)).strip().removeprefix("line-"))
    while not numbers(got) or numbers(got)[-1] < last:
        msg = await client.expect(None, 20)
        assert msg["type"] == "log", msg  # no second error once it answers again
        got.append(msg)
    seen = numbers(got)
    assert seen == list(range(seen[0], seen[-1] + 1)), "a gap or a duplicate across the hang"
    assert seen[0] == 0
    assert all(m["host"] == "hung" for m in got)
    await eventually(lambda: host.up, 20, what="the host up again")


# --- refusals: one clear line, host down ------------------------------------------------

REFUSALS = {
    # host id: (words the one line must have, how the host is configured)
    "wrongca": (r"certificate verify failed|unknown authority|unable to get local issuer",
                lambda h: tls_host("wrongca", certs=h.wrong_ca)),
    "expired": (r"client certificate", lambda h: tls_host("expired", certs=h.expired)),
    "unknownkey": (r"host key.*known_hosts_empty",
                   lambda h: ssh_host("unknownkey", known_hosts=h.known_hosts_empty)),
    "changedkey": (r"host key.*known_hosts_mismatch",
                   lambda h: ssh_host("changedkey", known_hosts=h.known_hosts_mismatch)),
}


async def test_wrong_ca_expired_certificate_and_unknown_host_key_are_one_clear_line_and_down(
        make_server: MakeServer, hosts_setup: HostsDescriptor,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    hosts = (local_host(), *(make(hosts_setup) for _, make in REFUSALS.values()))
    server = await make_server(hosts=hosts)

    async def all_down() -> bool:
        rows = await host_rows(server)
        return all(rows[h]["state"] == "down" for h in REFUSALS)

    await eventually(all_down, 20, what="every refused host down")
    await asyncio.sleep(scaled(3))  # retries back off from 0.5 s: several have run by now
    rows = await host_rows(server)
    assert rows["local"]["state"] == "up"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(REFUSALS), warnings  # nothing else: one line per refused host
    for host_id, (words, _) in REFUSALS.items():
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING
                 and re.search(rf"\b{host_id}\b", r.getMessage())]
        assert len(lines) == 1, (host_id, [r.getMessage() for r in lines])
        text = lines[0].getMessage()
        assert "\n" not in text and lines[0].exc_info is None, text
        assert not re.search(r"object has no attribute|Traceback|\w+Error'", text), text
        assert re.search(words, text, re.IGNORECASE), (host_id, text)
        assert re.search(words, rows[host_id]["error"], re.IGNORECASE), rows[host_id]
        print(f"[refused] {text}")
