"""`/ws/logs` end to end: real server, real engine, real containers.

Other engineers' tests create containers on the same engine at the same time, so every
assertion looks only at events of containers this test created (by name).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    Containers,
    RunningServer,
    WsClient,
    deadline,
    docker,
    eventually,
    scaled,
    unique_name,
)
from openpanel_ws.server import GATEWAYS_KEY

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parents[2]
ENGINE_STATE = Path(os.environ.get("OPENPANEL_WS_ENGINE_STATE", "/var/tmp/openpanel-ws-engine"))
MakeServer = Callable[..., Awaitable[RunningServer]]
Msg = dict[str, Any]


async def sh_docker(*args: str, check: bool = True) -> str:
    # Awaited: the server under test shares this event loop.
    return await docker(*args, check=check)


async def read_until(client: WsClient, done: Callable[[list[Msg]], bool], timeout: float = 30.0,
                     settle: float = 0.0) -> list[Msg]:
    """Everything the client receives until `done(all so far)`, then `settle` s more."""
    got: list[Msg] = []
    by = deadline(timeout)
    while not done(got):
        if time.monotonic() >= by:
            raise AssertionError(f"condition not met in {scaled(timeout)}s; last: {got[-5:]}")
        try:
            got.append(await client.recv_by(by))
        except TimeoutError:
            continue
    if settle:  # nothing (more) may follow: a window, scaled
        got += await client.quiet(settle)
    return got


def rotate_then_write_old(path: Path, to: Path, text: str) -> None:
    """logrotate's default: rename, while the writer keeps its old file open and writes."""
    with open(path, "a", encoding="utf-8") as old:
        os.rename(path, to)
        old.write(text)


def events_of(messages: list[Msg], name: str) -> list[Msg]:
    return [m["event"] for m in messages if m.get("type") == "docker_event"
            and m["event"].get("Actor", {}).get("Attributes", {}).get("name") == name]


def actions_of(messages: list[Msg], name: str, kind: str = "container") -> list[str]:
    return [e["Action"] for e in events_of(messages, name) if e["Type"] == kind]


def lines_about(messages: list[Msg], text: str, source: str = "docker") -> list[Msg]:
    return [m for m in messages if m.get("type") == "system_log" and m["source"] == source
            and text in m["message"]]


async def logs_client(server: RunningServer) -> WsClient:
    client = await server.connect("/ws/logs", auth=True)
    assert await server.services.hosts.default.events.wait_connected(20)
    return client


# --- events -------------------------------------------------------------------------


async def test_container_lifecycle_in_order_with_attributes(
        server: RunningServer, containers: Containers) -> None:
    client = await logs_client(server)
    name = unique_name("oplogs")
    await containers.run("sleep 0.3; exit 3", name=name)
    got = await read_until(client, lambda ms: "die" in actions_of(ms, name))
    await sh_docker("rm", name)
    got += await read_until(client, lambda ms: "destroy" in actions_of(ms, name), settle=0.5)

    lifecycle = [a for a in actions_of(got, name) if a in {"create", "start", "die", "destroy"}]
    assert lifecycle == ["create", "start", "die", "destroy"]
    container_id = events_of(got, name)[0]["Actor"]["ID"]
    for event in events_of(got, name):
        assert event["Actor"]["ID"] == container_id
        assert event["Actor"]["Attributes"]["image"] == "openpanel-ws-test:busybox"
        assert {"Type", "Action", "Actor", "scope", "time", "timeNano"} <= event.keys()
    message = next(m for m in got if m.get("type") == "docker_event" and m["event"]["Action"] == "die"
                   and m["event"]["Actor"]["ID"] == container_id)
    nanos = message["event"]["timeNano"]
    assert message["timestamp"].endswith(f".{nanos % 10**9:09d}Z")
    assert message["event"]["Actor"]["Attributes"]["exitCode"] == "3"

    died = lines_about(got, f"Container {name} died")
    assert len(died) == 1
    assert died[0]["level"] == "warning" and "exit code 3" in died[0]["message"]
    assert died[0]["timestamp"] == message["timestamp"]
    for word in ("created", "started", "removed"):
        assert [m["level"] for m in lines_about(got, f"Container {name} {word}")] == ["info"]


async def test_oom_kill_is_an_error_line(server: RunningServer, containers: Containers) -> None:
    client = await logs_client(server)
    name = unique_name("oplogs-oom")
    await containers.run("tail /dev/zero", name=name, options=["--memory", "16m"])
    got = await read_until(client, lambda ms: bool(lines_about(ms, f"Container {name} was killed")),
                           timeout=60)
    assert "oom" in actions_of(got, name)
    line = lines_about(got, f"Container {name} was killed")[0]
    assert line["level"] == "error" and "out of memory" in line["message"]


async def test_thirty_clients_each_get_a_start_exactly_once_from_one_stream(
        server: RunningServer, containers: Containers) -> None:
    hub = server.services.hosts.default.events
    clients = [await server.connect("/ws/logs", auth=True) for _ in range(30)]
    assert await hub.wait_connected(20)
    name = unique_name("oplogs-30")
    await containers.run("sleep 60", name=name)

    async def starts(client: WsClient) -> list[str]:
        got = await read_until(client, lambda ms: "start" in actions_of(ms, name), timeout=60, settle=1.5)
        return [a for a in actions_of(got, name) if a == "start"]

    results = await asyncio.gather(*(starts(c) for c in clients))
    assert results == [["start"]] * 30
    assert hub.streams_opened == 1  # one engine events stream for all 30 clients
    assert hub.listener_count == 1


async def test_nothing_before_auth(server: RunningServer, containers: Containers) -> None:
    client = await server.connect("/ws/logs")
    name = unique_name("oplogs-noauth")
    await containers.run("true", name=name)
    assert await client.quiet(2.0) == []
    assert server.services.hosts.default.events.listener_count == 0  # no stream opened for it either
    await client.send({"type": "subscribe", "filters": {}})
    assert (await client.expect("error"))["code"] == "AUTH_REQUIRED"
    await client.auth()
    later = unique_name("oplogs-afterauth")
    await containers.run("true", name=later)
    got = await read_until(client, lambda ms: "start" in actions_of(ms, later))
    assert events_of(got, name) == []  # nothing from before authentication is replayed


async def test_stream_is_shared_and_closed_when_the_last_client_leaves(server: RunningServer) -> None:
    hub, engine = server.services.hosts.default.events, server.services.hosts.default.engine
    a = await logs_client(server)
    b = await logs_client(server)
    assert hub.listener_count == 1 and engine.open_streams == 1
    await a.close()
    await eventually(lambda: server.connections() == 1, what="the server saw the close")
    assert hub.running and engine.open_streams == 1
    # Another gateway (e.g. containers) holding the hub keeps the stream open.
    other: list[Msg] = []
    hub.add_listener(other.append)
    await b.close()
    await eventually(lambda: hub.listener_count == 1, timeout=10)
    assert hub.running and engine.open_streams == 1
    hub.remove_listener(other.append)
    await eventually(lambda: not hub.running and engine.open_streams == 0, timeout=10)
    gateway = server.app[GATEWAYS_KEY]["logs"]
    assert len(gateway.clients) == 0  # nothing kept for clients that left


async def test_unreachable_engine_is_reported_to_every_client(
        make_server: MakeServer, tmp_path: Path) -> None:
    server = await make_server(docker_host=f"unix://{tmp_path}/no-engine.sock")
    first = await server.connect("/ws/logs", auth=True)
    line = await first.expect("system_log", timeout=15)
    assert line["source"] == "gateway" and line["level"] == "error"
    assert line["message"].startswith("Docker engine connection lost")
    # A client arriving while the engine is away is told at once, not at the next change.
    second = await server.connect("/ws/logs", auth=True)
    late = await second.expect("system_log", timeout=5)
    assert (late["source"], late["level"]) == ("gateway", "error")
    await first.close()
    await second.close()
    await eventually(lambda: not server.services.hosts.default.events.running, timeout=10)


# --- subscribe filters --------------------------------------------------------------


async def test_subscribe_filters_narrow_one_client_only(
        server: RunningServer, containers: Containers) -> None:
    narrow = await logs_client(server)
    everything = await logs_client(server)
    mine, other = unique_name("oplogs-f1"), unique_name("oplogs-f2")
    await narrow.send({"type": "subscribe",
                       "filters": {"container": [mine], "event": ["start", "die"]}})
    ack = await narrow.expect("subscribed")
    assert ack["filters"] == {"container": [mine], "event": ["die", "start"]}
    # What arrived before the acknowledgement came unfiltered (the engine is shared: other
    # tests' containers come and go meanwhile); from here on only the filter decides.
    narrow.backlog.clear()
    # Bad input: a clear error naming the field, and the filter stays as it was.
    await narrow.send({"type": "subscribe", "filters": {"colour": ["red"]}})
    error = await narrow.expect("error")
    assert error["code"] == "INVALID_MESSAGE" and error["field"] == "filters.colour"
    await narrow.send({"type": "subscribe", "filters": {"type": 5}})
    assert (await narrow.expect("error"))["field"] == "filters.type"

    await containers.run("true", name=other)
    await containers.run("true", name=mine)
    got_all = await read_until(everything, lambda ms: "die" in actions_of(ms, mine)
                               and "die" in actions_of(ms, other))
    got = await read_until(narrow, lambda ms: "die" in actions_of(ms, mine), settle=1.0)
    assert actions_of(got, mine) == ["start", "die"]
    assert events_of(got, other) == []
    assert {m["event"]["Action"] for m in got if m.get("type") == "docker_event"} <= {"start", "die"}
    assert lines_about(got, f"Container {mine} started")  # derived lines follow the filter
    assert not lines_about(got, f"Container {mine} created")
    assert "create" in actions_of(got_all, mine) and "start" in actions_of(got_all, other)

    await narrow.send({"type": "subscribe"})  # no filters: everything again
    assert (await narrow.expect("subscribed"))["filters"] == {}
    third = unique_name("oplogs-f3")
    await containers.run("true", name=third)
    got = await read_until(narrow, lambda ms: "die" in actions_of(ms, third))
    assert actions_of(got, third)[:2] == ["create", "start"]


async def test_since_replays_missed_events_once_then_live(
        server: RunningServer, containers: Containers) -> None:
    watcher = await logs_client(server)  # keeps the shared stream open meanwhile
    start = time.time()
    name = unique_name("oplogs-since")
    await containers.run("true", name=name)
    await read_until(watcher, lambda ms: "die" in actions_of(ms, name))
    # A client that was away (e.g. cut off as a slow consumer) resumes with `since`.
    late = await logs_client(server)
    await late.send({"type": "subscribe", "since": "not a time"})
    error = await late.expect("error")
    assert error["code"] == "INVALID_MESSAGE" and error["field"] == "since"
    await late.send({"type": "subscribe", "since": start - 1, "filters": {"container": [name]}})
    ack = await late.expect("subscribed", timeout=20)
    assert ack["since"] == start - 1 and ack["replayed"] >= 3
    await sh_docker("rm", name)
    got = await read_until(late, lambda ms: "destroy" in actions_of(ms, name), settle=1.0)
    actions = [a for a in actions_of(got, name) if a in {"create", "start", "die", "destroy"}]
    assert actions == ["create", "start", "die", "destroy"]  # replayed once, then live
    assert lines_about(got, f"Container {name} created")  # readable lines replay too


# --- host log files -----------------------------------------------------------------


async def test_host_log_file_tailing_survives_rotation(make_server: MakeServer, tmp_path: Path) -> None:
    path = tmp_path / "syslog"
    path.write_text("an old line that must not be sent\n")
    missing = tmp_path / "later.log"
    server = await make_server(host_log_files=[str(path), str(missing)])
    clients = [await logs_client(server) for _ in range(2)]

    def append(target: Path, text: str) -> None:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text)

    async def expect_line(text: str) -> list[Msg]:
        return [await c.expect("system_log", timeout=15, where=lambda m: m["message"] == text)
                for c in clients]

    append(path, "kernel: ERROR something broke\n")
    for msg in await expect_line("kernel: ERROR something broke"):
        assert msg["source"] == "syslog" and msg["level"] == "error"
        assert msg["timestamp"].endswith("Z")
    append(path, "sshd: warning: weak key\nplain info line\n")
    assert [m["level"] for m in await expect_line("sshd: warning: weak key")] == ["warning"] * 2
    assert [m["level"] for m in await expect_line("plain info line")] == ["info"] * 2

    # logrotate default: rename, then a new file under the old name.
    await asyncio.to_thread(rotate_then_write_old, path, tmp_path / "syslog.1",
                            "written to the old file during rotation\n")
    path.write_text("first line of the new file\n")
    await expect_line("written to the old file during rotation")
    await expect_line("first line of the new file")
    # copytruncate: same file, cut to zero, written again.
    path.write_text("after truncation\n")
    await expect_line("after truncation")
    # A configured file that appears later is read from its start.
    missing.write_text("hello from a new file\n")
    for msg in await expect_line("hello from a new file"):
        assert msg["source"] == "later.log"
    leftovers = [m for c in clients for m in await c.quiet(0.8, "system_log")
                 if m["source"] in {"syslog", "later.log"}]
    assert leftovers == []  # each line exactly once, the old line never


# --- engine restart -----------------------------------------------------------------


def _restart_blocker() -> str | None:
    """Why this engine may not be restarted here (None: it may)."""
    marker, pidfile = ENGINE_STATE / "started-by-openpanel-ws", ENGINE_STATE / "dockerd.pid"
    if not marker.exists():
        return f"the Docker engine was not started by scripts/ensure-docker.sh (no {marker})"
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return f"no running dockerd recorded in {pidfile}"
    if comm != "dockerd":
        return f"pid {pid} in {pidfile} is {comm!r}, not dockerd"
    if os.geteuid() != 0:
        return "restarting dockerd needs root"
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _ensure_engine() -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], check=True,
                   capture_output=True, timeout=180)


@pytest.mark.serial  # restarts the shared engine
async def test_engine_restart_loses_nothing_and_repeats_nothing(
        make_server: MakeServer, containers: Containers) -> None:
    blocker = _restart_blocker()
    if blocker is not None:
        if IN_CI:
            pytest.fail(f"CI must run the engine-restart test: {blocker}")
        pytest.skip(blocker)
    server = await make_server()
    hub = server.services.hosts.default.events
    # Production backoff tops out at 5 s; 2 s keeps the test short while leaving a
    # window in which the engine is back but the stream is not (the `since` replay).
    hub.backoff_initial, hub.backoff_max = 1.0, 2.0
    status: list[tuple[bool, int]] = []
    hub.add_status_listener(lambda up, _detail: status.append((up, time.time_ns())))
    clients = [await logs_client(server) for _ in range(5)]
    seen: dict[WsClient, list[Msg]] = {c: [] for c in clients}
    before, during = unique_name("oplogs-before"), unique_name("oplogs-during")
    await sh_docker("create", "--name", before, "openpanel-ws-test:busybox", "true")
    containers.names.append(before)
    # Running across the restart; exits at once on SIGTERM so dockerd's shutdown is quick.
    await containers.run("trap 'exit 0' TERM; while :; do sleep 0.2; done", name=during)
    for c in clients:
        seen[c] += await read_until(c, lambda ms: "create" in actions_of(ms, before)
                                    and "start" in actions_of(ms, during))

    pid = int((ENGINE_STATE / "dockerd.pid").read_text().strip())
    timeline: dict[str, float] = {}
    down = unique_name("oplogs-down")
    after = unique_name("oplogs-after")
    try:
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        await eventually(lambda: not _alive(pid), 60, step=0.1, what="dockerd exiting")
        timeline["dockerd exited"] = round(time.monotonic() - t0, 2)
        # An event attempted while the engine is down is refused by the engine itself.
        containers.names.append(down)
        refused = await asyncio.to_thread(
            subprocess.run, ["docker", "create", "--name", down, "openpanel-ws-test:busybox", "true"],
            capture_output=True, text=True)
        await asyncio.to_thread(_ensure_engine)
        timeline["engine answers"] = round(time.monotonic() - t0, 2)
        # The event right after the engine returns, likely before the hub has reconnected.
        await sh_docker("create", "--name", after, "openpanel-ws-test:busybox", "true")
        containers.names.append(after)
        timeline["created after"] = round(time.monotonic() - t0, 2)
    finally:
        if not await asyncio.to_thread(lambda: subprocess.run(
                ["docker", "version"], capture_output=True, timeout=20).returncode == 0):
            await asyncio.to_thread(_ensure_engine)

    assert refused.returncode != 0, "docker create succeeded while dockerd was down"
    rest = await asyncio.gather(*(read_until(c, lambda ms: "create" in actions_of(ms, after)
                                             and bool(lines_about(ms, "restored", "gateway")),
                                             timeout=60, settle=1.5) for c in clients))
    for c, got in zip(clients, rest, strict=True):
        seen[c] += got
    timeline["all delivered"] = round(time.monotonic() - t0, 2)
    assert [up for up, _ in status] == [False, True]
    restored_ns = status[1][1]
    for got in seen.values():
        assert actions_of(got, after).count("create") == 1
        assert actions_of(got, before).count("create") == 1  # never repeated by the resume
        assert events_of(got, down) == []
        keys = [(m["event"]["timeNano"], m["event"]["Type"], m["event"]["Action"],
                 m["event"]["Actor"]["ID"]) for m in got if m["type"] == "docker_event"]
        assert len(keys) == len(set(keys)), "an event was delivered twice"
        gateway = [(m["level"], m["message"]) for m in got if m.get("type") == "system_log"
                   and m["source"] == "gateway"]
        assert [level for level, _ in gateway] == ["error", "info"]
        assert gateway[0][1].startswith("Docker engine connection lost")
        assert gateway[1][1] == "Docker engine connection restored"
    first = next(iter(seen.values()))
    event_ns = events_of(first, after)[0]["timeNano"]
    order = [f"{m['event']['Action']}" if m["type"] == "docker_event" else "LOST"
             for m in first if (m["type"] == "docker_event" and m["event"]["Actor"]["Attributes"]
                                .get("name") == during) or lines_about([m], "lost", "gateway")]
    print(f"\n[engine restart] timeline (s): {timeline}; "
          f"create while down: rc={refused.returncode} {refused.stderr.strip()[:70]!r}; "
          f"stream restored {(restored_ns - event_ns) / 1e6:+.0f} ms after the 'after' create "
          f"({'delivered by the since replay' if restored_ns > event_ns else 'delivered live'}); "
          f"'during' container, in stream order with the lost line: {order}; "
          f"streams opened={hub.streams_opened}, duplicates dropped={hub.duplicates_dropped}")
