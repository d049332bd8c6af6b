"""Merged events of three hosts on one `/ws/logs` (docs/protocol.md "The `host` field"): the
local engine (`local`, unix socket), engine2 over TCP + TLS (`tls`) and engine2 through the
test sshd (`ssh`), each event with its `host`, and none lost or repeated while engine2
restarts (tests/hosts_support.py, docs/hosts.md "The test hosts").

`tls` and `ssh` are two hosts on one engine: each of engine2's events arrives twice, once
under each id, which is what lets one restart cover both transports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from helpers import TEST_IMAGE, Containers, RunningServer, WsClient, deadline, docker, scaled, unique_name
from hosts_support import Engine2Containers, docker2, local_host, restart_engine2, ssh_host, tls_host

MakeServer = Callable[..., Awaitable[RunningServer]]
Msg = dict[str, Any]
HOSTS = ("local", "tls", "ssh")
ENGINE2 = ("tls", "ssh")
CREATE_GAP = 0.2  # seconds between two creates of one engine: pacing, not a wait for anything


def creates(messages: list[Msg]) -> dict[tuple[str, str], int]:
    """(host, container name) -> how many `create` events arrived."""
    out: dict[tuple[str, str], int] = {}
    for m in messages:
        if m.get("type") != "docker_event":
            continue
        event = m["event"]
        if event.get("Type") == "container" and event.get("Action") == "create":
            key = (m["host"], event.get("Actor", {}).get("Attributes", {}).get("name", ""))
            out[key] = out.get(key, 0) + 1
    return out


async def read_until(client: WsClient, done: Callable[[list[Msg]], bool], got: list[Msg],
                     timeout: float) -> None:
    by = deadline(timeout)
    while not done(got):
        if time.monotonic() >= by:
            raise AssertionError(f"not met in {scaled(timeout)}s; last: {got[-5:]}")
        try:
            got.append(await client.recv_by(by))
        except TimeoutError:
            continue


async def fanin_server(make_server: MakeServer) -> RunningServer:
    server = await make_server(hosts=(local_host(), tls_host("tls"), ssh_host("ssh")))
    for host_id in HOSTS:
        host = server.services.hosts.get(host_id)
        assert host is not None
        host.events.backoff_initial, host.events.backoff_max = 0.5, 1.0
    return server


async def logs_clients(server: RunningServer, count: int) -> list[WsClient]:
    clients = [await server.connect("/ws/logs", auth=True) for _ in range(count)]
    for host_id in HOSTS:
        host = server.services.hosts.get(host_id)
        assert host is not None
        assert await host.events.wait_connected(scaled(20)), f"events of {host_id}"
    return clients


async def create_on(where: str, name: str, containers: Containers,
                    engine2: Engine2Containers) -> bool:
    """`docker create` on the local engine or engine2; False if the engine refused it."""
    run = docker if where == "local" else docker2
    out = await run("create", "--name", name, TEST_IMAGE, "true", check=False, merge_stderr=True)
    (containers if where == "local" else engine2).names.append(name)
    return "Error" not in out and "Cannot connect" not in out


async def test_events_of_three_hosts_each_with_its_host(
        make_server: MakeServer, containers: Containers,
        engine2_containers: Engine2Containers) -> None:
    server = await fanin_server(make_server)
    client, = await logs_clients(server, 1)
    local, remote = unique_name("opfan-l"), unique_name("opfan-r")
    assert await create_on("local", local, containers, engine2_containers)
    assert await create_on("engine2", remote, containers, engine2_containers)
    want = {("local", local): 1, ("tls", remote): 1, ("ssh", remote): 1}
    got: list[Msg] = []
    await read_until(client, lambda ms: all(creates(ms).get(k) for k in want), got, 20)
    got += await client.quiet(1.0)
    seen = {k: v for k, v in creates(got).items() if k[1] in (local, remote)}
    assert seen == want  # each once, each under its own host, none under another


@pytest.mark.serial  # restarts engine2, which only this test may do
async def test_no_event_lost_or_repeated_while_engine2_restarts(
        make_server: MakeServer, containers: Containers,
        engine2_containers: Engine2Containers) -> None:
    server = await fanin_server(make_server)
    clients = await logs_clients(server, 3)
    seen: dict[WsClient, list[Msg]] = {c: [] for c in clients}
    made: list[tuple[str, str]] = []  # (engine, name) the engine accepted
    refused: list[str] = []
    stop = asyncio.Event()

    async def keep_creating(where: str) -> None:
        i = 0
        while not stop.is_set():
            name = unique_name(f"opfan-{where[:2]}{i}")
            i += 1
            if await create_on(where, name, containers, engine2_containers):
                made.append((where, name))
            else:
                refused.append(name)
            await asyncio.sleep(CREATE_GAP)

    async def drain(client: WsClient) -> None:
        while not stop.is_set():
            try:
                seen[client].append(await client.recv(0.5))
            except TimeoutError:
                continue

    drains = [asyncio.create_task(drain(c)) for c in clients]
    makers = [asyncio.create_task(keep_creating(w)) for w in ("local", "engine2")]
    try:
        await asyncio.sleep(scaled(2))
        t0 = time.monotonic()
        await asyncio.to_thread(restart_engine2)
        restarted = time.monotonic() - t0
        # Right after engine2 answers, before the hubs reconnect: the `since` replay's case.
        after = unique_name("opfan-after")
        assert await create_on("engine2", after, containers, engine2_containers)
        made.append(("engine2", after))
        await asyncio.sleep(scaled(3))
    finally:
        stop.set()
        for task in makers:
            await task
        for task in drains:
            await task
    want: dict[tuple[str, str], int] = {}
    for where, name in made:
        for host_id in (("local",) if where == "local" else ENGINE2):
            want[(host_id, name)] = 1
    for client in clients:
        await read_until(client, lambda ms: all(creates(ms).get(k) for k in want),
                         seen[client], 30)
        seen[client] += await client.quiet(1.0)
        ours = {k: v for k, v in creates(seen[client]).items() if k[1].startswith("opfan-")}
        missing = sorted(set(want) - set(ours))
        repeated = sorted(k for k, v in ours.items() if v > 1)
        assert not missing and not repeated, (missing, repeated)
        assert set(ours) == set(want)
        states = [(m["host"], m["state"]) for m in seen[client] if m.get("type") == "host_status"]
        for host_id in ENGINE2:
            assert (host_id, "down") in states and states.index((host_id, "down")) < max(
                i for i, s in enumerate(states) if s == (host_id, "up")), states
        assert ("local", "down") not in states, states
    local_during = sum(1 for w, _ in made if w == "local")
    print(f"\n[fan-in] engine2 restart {restarted:.1f}s; created {len(made)} "
          f"({local_during} local), refused while down {len(refused)}")
    assert refused, "no create was attempted while engine2 was down"

