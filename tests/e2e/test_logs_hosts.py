"""`/ws/logs` across hosts end to end: real server, real engine, real containers.

Until a second engine is part of the test set-up, the second host is a second id on the
same local socket: each engine event then arrives once per host id, each naming its own
`host` (the duplicate-id case). A host whose socket does not exist is down from the start;
a unix socket the test opens (a byte pipe to the real engine) and removes flips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from helpers import (
    Containers,
    RunningServer,
    WsClient,
    deadline,
    eventually,
    make_settings,
    make_token,
    scaled,
    unique_name,
)
from openpanel_ws.hosts.config import hosts_from_env

MakeServer = Callable[..., Awaitable[RunningServer]]
Msg = dict[str, Any]
ENGINE = make_settings().docker_host  # the local socket's URL
ENGINE_SOCKET = ENGINE.removeprefix("unix://")


def two_hosts(second: str = "other", url: str = ENGINE) -> Any:
    return hosts_from_env(f"local={ENGINE},{second}={url}")


def events_of(messages: list[Msg], name: str) -> list[Msg]:
    """The `docker_event` messages (whole) about container `name`."""
    return [m for m in messages if m.get("type") == "docker_event"
            and m["event"].get("Actor", {}).get("Attributes", {}).get("name") == name]


def seen(messages: list[Msg], name: str) -> list[tuple[str, str]]:
    """(host, action) of each create/start/die/destroy event of container `name`."""
    return [(m["host"], m["event"]["Action"]) for m in events_of(messages, name)
            if m["event"]["Action"] in {"create", "start", "die", "destroy"}]


async def read_until(client: WsClient, done: Callable[[list[Msg]], bool],
                     timeout: float = 30.0, settle: float = 0.0) -> list[Msg]:
    """What the client receives until `done(all so far)` (within `timeout`, scaled), then
    `settle` s more."""
    got: list[Msg] = []
    by = deadline(timeout)
    while not done(got):
        if time.monotonic() >= by:
            raise AssertionError(f"condition not met in {scaled(timeout)}s; last: {got[-5:]}")
        with contextlib.suppress(TimeoutError):
            got.append(await client.recv_by(by))
    if settle:
        got += await client.quiet(settle)
    return got


async def hears(server: RunningServer, path: str = "/ws/logs", **claims: Any) -> WsClient:
    """A logs client, once the streams of the hosts it hears from are open."""
    client = await server.connect(path, auth=make_token(**claims) if claims else True)
    for host in server.services.hosts:
        if host.events.listener_count and host.status.state.value != "down":
            assert await host.events.wait_connected(20)
    return client


async def test_every_host_the_principal_may_see_each_event_once_per_host(
        make_server: MakeServer, containers: Containers) -> None:
    server = await make_server(hosts=two_hosts())
    both = await hears(server)
    route = await hears(server, "/hosts/other/ws/logs")
    local_only = await hears(server, hosts=["local"])
    name = unique_name("ophosts")
    await containers.run("true", name=name)
    full = [("local", a) for a in ("create", "start", "die")]
    full_other = [("other", a) for a in ("create", "start", "die")]

    got = await read_until(both, lambda ms: {("local", "die"), ("other", "die")} <= set(seen(ms, name)),
                           settle=1.0)
    assert sorted(seen(got, name)) == sorted(full + full_other)  # once per host id
    lines = [m for m in got if m.get("type") == "system_log" and name in m["message"]]
    assert sorted({(m["host"], m["source"]) for m in lines}) == [("local", "docker"), ("other", "docker")]
    assert len(lines) == 6  # created, started, exited: once per host
    got = await read_until(route, lambda ms: ("other", "die") in seen(ms, name), settle=1.0)
    assert seen(got, name) == full_other  # the host's own route: that host only
    got = await read_until(local_only, lambda ms: ("local", "die") in seen(ms, name), settle=1.0)
    assert seen(got, name) == full  # the hosts claim: only the hosts it allows
    assert {m.get("host") for m in got if m.get("type") in {"docker_event", "host_status"}} == {"local"}
    for host in server.services.hosts:
        assert host.events.listener_count == 1 and host.events.streams_opened == 1


async def test_a_host_route_out_of_scope_authenticates_and_hears_nothing(
        make_server: MakeServer, containers: Containers) -> None:
    server = await make_server(hosts=two_hosts())
    watcher = await hears(server)
    outside = await hears(server, "/hosts/other/ws/logs", hosts=["local"])
    unknown = await hears(server, "/hosts/nowhere/ws/logs")
    name = unique_name("ophosts-out")
    await containers.run("true", name=name)
    await read_until(watcher, lambda ms: {("local", "die"), ("other", "die")} <= set(seen(ms, name)))
    assert await outside.quiet(1.0) == []  # no event, line or host_status of that host
    await outside.send({"type": "subscribe", "filters": {}})
    denied = await outside.expect("error")
    assert (denied["code"], denied["message"], denied["host"]) == (
        "PERMISSION_DENIED", "Permission denied", "other")
    await outside.send({"type": "subscribe", "since": 0})
    assert (await outside.expect("error"))["code"] == "PERMISSION_DENIED"
    assert await unknown.quiet(0.5) == []
    await unknown.send({"type": "subscribe"})
    error = await unknown.expect("error")
    assert (error["code"], error["field"], error["host"]) == ("INVALID_MESSAGE", "host", "nowhere")
    assert error["message"] == "Unknown host 'nowhere'"
    route = await hears(server, "/hosts/other/ws/logs")
    await route.send({"type": "subscribe", "host": "local"})  # contradicts the route
    error = await route.expect("error")
    assert (error["code"], error["field"]) == ("INVALID_MESSAGE", "host")


async def test_since_replays_every_host_merged_by_time(
        make_server: MakeServer, containers: Containers) -> None:
    server = await make_server(hosts=two_hosts())
    watcher = await hears(server)  # keeps both streams open meanwhile
    start = time.time()
    name = unique_name("ophosts-since")
    await containers.run("true", name=name)
    await read_until(watcher, lambda ms: {("local", "die"), ("other", "die")} <= set(seen(ms, name)))
    late = await hears(server)
    await late.send({"type": "subscribe", "since": start - 1, "filters": {"container": [name]}})
    ack = await late.expect("subscribed", timeout=20)
    assert ack["replayed"] >= 6
    got = await read_until(late, lambda ms: len(events_of(ms, name)) >= ack["replayed"], settle=1.0)
    replayed = events_of(got, name)
    assert len(replayed) == ack["replayed"]  # nothing twice
    nanos = [m["event"]["timeNano"] for m in replayed]
    assert nanos == sorted(nanos)  # merged by time across hosts
    assert sorted(seen(got, name)) == sorted(
        (h, a) for h in ("local", "other") for a in ("create", "start", "die"))
    keys = [(m["host"], m["event"]["timeNano"], m["event"]["Action"]) for m in replayed]
    assert len(keys) == len(set(keys))


class EnginePipe:
    """A unix socket at `path` that pipes every connection to the real engine's socket:
    an engine that appears when opened and vanishes (connections cut) when closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(ENGINE_SOCKET)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self.path.unlink(missing_ok=True)


def statuses(messages: list[Msg], host: str) -> list[str]:
    return [m["state"] for m in messages if m.get("type") == "host_status" and m["host"] == host]


def gateway_lines(messages: list[Msg], host: str) -> list[Msg]:
    return [m for m in messages if m.get("type") == "system_log" and m["source"] == "gateway"
            and m.get("host") == host]


async def test_host_status_follows_a_host_going_down_and_up(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    socket = tmp_path / "flaky.sock"
    server = await make_server(hosts=two_hosts("flaky", f"unix://{socket}"))
    flaky = server.services.hosts.get("flaky")
    assert flaky is not None
    flaky.events.backoff_initial, flaky.events.backoff_max = 0.1, 0.5
    client = await server.connect("/ws/logs", auth=True)
    # Right after `authenticated`: one host_status per visible host that is not up.
    first = await client.expect("host_status", timeout=5, where=lambda m: m["host"] == "flaky")
    assert first["state"] in {"connecting", "down"}
    got = [first]
    if first["state"] != "down":
        got += await read_until(client, lambda ms: "down" in statuses(ms, "flaky"))
    down = next(m for m in got if m.get("type") == "host_status" and m["state"] == "down")
    assert down["error"] and down["timestamp"].endswith("Z")
    got += await read_until(client, lambda ms: bool(gateway_lines(ms, "flaky")))
    lost = gateway_lines(got, "flaky")[0]
    assert lost["level"] == "error" and lost["message"].startswith("Docker engine connection lost")
    assert "down" not in statuses(got, "local")  # the other host is fine
    local_only = await server.connect("/ws/logs", auth=make_token(hosts=["local"]))
    # A client arriving while the host is down is told at once.
    late = await hears(server)
    assert (await late.expect("host_status", where=lambda m: m["host"] == "flaky"))["state"] == "down"
    assert (await late.expect("system_log", where=lambda m: m["source"] == "gateway"))["host"] == "flaky"

    pipe = EnginePipe(socket)
    await pipe.open()
    try:
        got = await read_until(client, lambda ms: "up" in statuses(ms, "flaky")
                               and any(m["level"] == "info" for m in gateway_lines(ms, "flaky")),
                               timeout=30)
        assert [m["message"] for m in gateway_lines(got, "flaky")] == ["Docker engine connection restored"]
        name = unique_name("ophosts-flaky")
        await containers.run("true", name=name)
        await read_until(client, lambda ms: ("flaky", "die") in seen(ms, name))
    finally:
        t0 = time.monotonic()
        await pipe.close()
    # A broken events stream is down at once, not at the next probe.
    got = await read_until(client, lambda ms: "down" in statuses(ms, "flaky")
                           and any(m["level"] == "error" for m in gateway_lines(ms, "flaky")),
                           timeout=5)
    assert time.monotonic() - t0 < 5
    assert [m for m in await local_only.quiet(0.5) if m.get("host") == "flaky"] == []


async def test_reauth_without_a_host_stops_its_events(
        make_server: MakeServer, containers: Containers) -> None:
    server = await make_server(hosts=two_hosts())
    client = await hears(server)
    await client.send({"type": "auth", "token": make_token(hosts=["local"])})
    await client.expect("authenticated")
    other = server.services.hosts.get("other")
    assert other is not None
    await eventually(lambda: other.events.listener_count == 0,
                     what="nobody hears from `other`: its stream is closed")
    name = unique_name("ophosts-reauth")
    await containers.run("true", name=name)
    got = await read_until(client, lambda ms: ("local", "die") in seen(ms, name), settle=1.0)
    assert {m["host"] for m in got if m.get("type") == "docker_event"} == {"local"}
    await client.send({"type": "auth", "token": make_token()})  # every host again
    await client.expect("authenticated")
    later = unique_name("ophosts-reauth2")
    await containers.run("true", name=later)
    await read_until(client, lambda ms: {("local", "die"), ("other", "die")} <= set(seen(ms, later)))
    assert other.events.listener_count == 1


async def test_machine_log_lines_go_to_hosts_on_this_machine_only(
        make_server: MakeServer, tmp_path: Path) -> None:
    path = tmp_path / "syslog"
    path.write_text("")
    server = await make_server(hosts=two_hosts("remote", "tcp://127.0.0.1:9"),
                               host_log_files=[str(path)])
    plain = await server.connect("/ws/logs", auth=True)
    local = await server.connect("/hosts/local/ws/logs", auth=True)
    remote = await server.connect("/hosts/remote/ws/logs", auth=True)
    remote_only = await server.connect("/ws/logs", auth=make_token(hosts=["remote"]))
    await asyncio.to_thread(path.write_text, "kernel: a machine line\n")
    for client in (plain, local):
        line = await client.expect("system_log", timeout=15, where=lambda m: m["source"] == "syslog")
        assert line["message"] == "kernel: a machine line" and "host" not in line
    for client in (remote, remote_only):
        assert [m for m in await client.quiet(1.0) if m.get("source") == "syslog"] == []


async def test_a_replay_names_the_host_that_cannot_answer_and_keeps_the_others(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    server = await make_server(hosts=two_hosts("gone", f"unix://{tmp_path}/gone.sock"))
    client = await server.connect("/ws/logs", auth=True)
    await client.expect("host_status", timeout=15,
                        where=lambda m: m["host"] == "gone" and m["state"] == "down")
    local = server.services.hosts.get("local")
    assert local is not None and await local.events.wait_connected(20)
    start = time.time()
    name = unique_name("ophosts-gone")
    await containers.run("true", name=name)
    await read_until(client, lambda ms: ("local", "die") in seen(ms, name))
    late = await server.connect("/ws/logs", auth=True)
    await late.send({"type": "subscribe", "since": start - 1, "filters": {"container": [name]}})
    got = await read_until(late, lambda ms: any(m.get("type") == "subscribed" for m in ms), timeout=20)
    errors = [m for m in got if m.get("type") == "error"]
    assert [(e["code"], e["host"]) for e in errors] == [("DOCKER_UNAVAILABLE", "gone")]
    assert errors[0]["message"].startswith("Cannot replay events: Docker engine unavailable")
    assert got.index(errors[0]) < got.index(next(m for m in got if m.get("type") == "subscribed"))
    got += await read_until(late, lambda ms: ("local", "die") in seen(ms, name))
    assert seen(got, name) == [("local", a) for a in ("create", "start", "die")]
    # Only that host: nothing answers, so nothing is acknowledged.
    route = await server.connect("/hosts/gone/ws/logs", auth=True)
    await route.send({"type": "subscribe", "since": start - 1})
    error = await route.expect("error", timeout=20)
    assert (error["code"], error["host"]) == ("DOCKER_UNAVAILABLE", "gone")
    assert [m for m in await route.quiet(0.5) if m.get("type") == "subscribed"] == []
