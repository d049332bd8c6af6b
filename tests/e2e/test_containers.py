"""/ws/containers end to end: real server, real engine, real busybox containers."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from helpers import (
    SECOND,
    Containers,
    RunningServer,
    WsClient,
    docker,
    eventually,
    make_token,
    scaled,
)
from openpanel_ws.gateways.containers import ContainersGateway
from openpanel_ws.server import GATEWAYS_KEY

pytestmark = pytest.mark.timeout(180)

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,9}Z$")


def gateway(server: RunningServer) -> ContainersGateway:
    gw = server.app[GATEWAYS_KEY]["containers"]
    assert isinstance(gw, ContainersGateway)
    return gw


async def connect(server: RunningServer, token: str | None = None) -> WsClient:
    return await server.connect("/ws/containers", auth=token or True)


async def subscribe_logs(client: WsClient, ref: str, **extra: Any) -> None:
    await client.send({"type": "subscribe_logs", "containerId": ref, **extra})
    ack = await client.expect("subscribed_logs", timeout=15)
    assert ack["containerId"] == ref


async def log_lines(client: WsClient, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Exactly the next `count` log messages (fails on timeout)."""
    out = []
    for _ in range(count):
        out.append(await client.expect("log", timeout=timeout))
    return out


async def quiet(client: WsClient, kind: str, seconds: float) -> list[dict[str, Any]]:
    return await client.quiet(seconds, kind)


async def engine_lines(name: str, stream: str = "stdout") -> list[tuple[str, str]]:
    """(timestamp, text) of every line the engine logged on `stream`, by the Docker CLI."""
    proc = await asyncio.create_subprocess_exec(
        "docker", "logs", "--timestamps", name, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == 0, err
    lines = []
    for row in (out if stream == "stdout" else err).decode().splitlines():
        ts, _, text = row.partition(" ")
        lines.append((ts, text))
    return lines


def same_instant(a: str, b: str) -> bool:
    """Engine timestamps compared to the nanosecond (the CLI may trim trailing zeros)."""
    from openpanel_ws.protocol import parse_timestamp_nanos

    return parse_timestamp_nanos(a) == parse_timestamp_nanos(b)


# --- logs ------------------------------------------------------------------------------


async def test_logs_stdout_and_stderr_in_order_with_their_own_timestamps(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run(
        "for i in $(seq 1 20); do echo out $i; echo err $i >&2; done; echo done; sleep 3600"
    )
    await containers.wait_logged(name, "done")
    client = await connect(server)
    await subscribe_logs(client, name, tail="all")
    got = await log_lines(client, 41)
    assert all(m["containerId"] == name for m in got)
    stdout = [m["data"] for m in got if m["stream"] == "stdout"]
    stderr = [m["data"] for m in got if m["stream"] == "stderr"]
    assert stdout == [f"out {i}" for i in range(1, 21)] + ["done"]
    assert stderr == [f"err {i}" for i in range(1, 21)]
    # The timestamp is the engine's for that very line, not the time of forwarding.
    own = {text: ts for ts, text in (await engine_lines(name)) + (await engine_lines(name, "stderr"))}
    for m in got:
        assert RFC3339_NANO.match(m["timestamp"]), m
        assert same_instant(m["timestamp"], own[m["data"]]), m
    assert await quiet(client, "log", 1.0) == []


async def test_logs_by_name_full_id_and_id_prefix_share_one_upstream(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("echo hello; sleep 3600")
    await containers.wait_logged(name, "hello")
    full = await containers.id_of(name)
    refs = [name, full, full[:12]]
    client = await connect(server)
    for ref in refs:
        await subscribe_logs(client, ref)
    got = [await client.expect("log", 15, where=lambda m, r=ref: m["containerId"] == r) for ref in refs]
    assert [m["data"] for m in got] == ["hello"] * 3
    assert gateway(server).upstream_counts()["logs"] == 1


async def test_logs_tail_is_exact(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("seq 1 150; sleep 3600")
    await containers.wait_logged(name, "150")
    client = await connect(server)
    await subscribe_logs(client, name, tail=5)
    assert [m["data"] for m in await log_lines(client, 5)] == ["146", "147", "148", "149", "150"]
    assert await quiet(client, "log", 1.5) == []

    other = await connect(server)  # default tail: the last 100 lines (late subscriber path)
    await subscribe_logs(other, name)
    assert [m["data"] for m in await log_lines(other, 100)] == [str(i) for i in range(51, 151)]
    assert await quiet(other, "log", 1.0) == []

    third = await connect(server)
    await subscribe_logs(third, name, tail=0)
    assert await quiet(third, "log", 1.5) == []

    fourth = await connect(server)
    await subscribe_logs(fourth, name, tail="all")
    assert [m["data"] for m in await log_lines(fourth, 150)] == [str(i) for i in range(1, 151)]
    assert await quiet(fourth, "log", 1.0) == []
    assert await quiet(client, "log", 0.2) == []


async def test_logs_since(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("seq 1 10; sleep 3600")
    await containers.wait_logged(name, "10")
    lines = await engine_lines(name)
    since = lines[6][0]  # the 7th line's own timestamp: inclusive
    client = await connect(server)
    await subscribe_logs(client, name, since=since, tail="all")
    assert [m["data"] for m in await log_lines(client, 4)] == ["7", "8", "9", "10"]
    assert await quiet(client, "log", 1.0) == []
    # unix seconds in the future: nothing yet
    later = await connect(server)
    await subscribe_logs(later, name, since=time.time() + 3600)
    assert await quiet(later, "log", 1.0) == []


async def test_logs_tty_container(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("echo one; printf 'two\\r\\n'; echo three; sleep 3600", options=["-t"])
    await containers.wait_logged(name, "three")
    client = await connect(server)
    await subscribe_logs(client, name)
    got = await log_lines(client, 3)
    assert [(m["stream"], m["data"]) for m in got] == [
        ("stdout", "one"), ("stdout", "two"), ("stdout", "three")]


async def test_logs_follow_new_lines_live(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    client = await connect(server)
    await subscribe_logs(client, name)
    await docker("exec", name, "sh", "-c", "echo live > /proc/1/fd/1")
    assert (await client.expect("log", 15))["data"] == "live"


async def test_logs_follow_restarts_with_no_gap_and_no_duplicate(
    server: RunningServer, containers: Containers
) -> None:
    # Every run prints a numbered line every 50 ms; the engine's own log is the truth.
    name = await containers.run(
        "n=$(cat /n 2>/dev/null || echo 0); echo run start $n; "
        "while :; do n=$((n+1)); echo $n > /n; echo line $n; sleep 0.05; done"
    )
    client = await connect(server)
    await subscribe_logs(client, name, tail="all")
    got: list[dict[str, Any]] = []

    async def read_run(runs: int) -> None:
        """Read into `got` until `runs` runs have started and the last printed 5 lines."""
        while True:
            starts = [i for i, m in enumerate(got) if m["data"].startswith("run start")]
            if len(starts) >= runs and len(got) - starts[-1] > 5:
                return
            got.append(await client.expect("log", 15))

    async def read_all() -> None:
        """Read into `got` until it holds every line the engine logged so far."""
        truth = await engine_lines(name)
        while len(got) < len(truth):
            got.append(await client.expect("log", 15))

    await read_run(1)
    await docker("restart", "-t", "0", name)
    await read_run(2)
    await docker("stop", "-t", "0", name)
    await read_all()  # stopped, and everything up to the stop delivered
    await docker("start", name)
    await read_run(3)
    await docker("restart", "-t", "0", name)
    await read_run(4)
    await docker("stop", "-t", "0", name)
    await read_all()
    truth = await engine_lines(name)
    assert sum(1 for _, text in truth if text.startswith("run start")) == 4
    assert [m["data"] for m in got] == [text for _, text in truth]
    assert all(same_instant(m["timestamp"], ts) for m, (ts, _) in zip(got, truth, strict=True))
    assert await quiet(client, "log", 1.0) == []


async def test_logs_of_a_stopped_container_then_its_next_run(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; "
                                "echo run $n; sleep 3600")
    await containers.wait_logged(name, "run 1")
    await docker("stop", "-t", "0", name)
    first = await connect(server)
    await subscribe_logs(first, name)
    assert (await first.expect("log", 15))["data"] == "run 1"
    late = await connect(server)  # history by a separate request, then the shared stream
    await subscribe_logs(late, name)
    assert (await late.expect("log", 15))["data"] == "run 1"
    # A `since` in the future: empty history, then the live lines (it shapes only its
    # own history, never the shared stream).
    future = await connect(server)
    await subscribe_logs(future, name, since=time.time() + 3600)
    await docker("start", name)
    assert (await first.expect("log", 20))["data"] == "run 2"
    assert (await late.expect("log", 20))["data"] == "run 2"
    assert (await future.expect("log", 20))["data"] == "run 2"
    for client in (first, late, future):
        assert await quiet(client, "log", 1.0) == []


async def test_logs_end_when_the_container_is_removed(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("echo hi; sleep 3600")
    await containers.wait_logged(name, "hi")
    client = await connect(server)
    await subscribe_logs(client, name)
    await client.send({"type": "subscribe_stats", "containerId": name})
    await client.expect("subscribed_stats", 15)
    await client.expect("log", 15)
    await docker("rm", "-f", name)
    ended = [await client.expect("subscription_ended", 20) for _ in range(2)]
    assert {(m["subscription"], m["containerId"], m["reason"]) for m in ended} == {
        ("logs", name, "container_removed"), ("stats", name, "container_removed")}
    await eventually(lambda: gateway(server).upstream_counts() == {"logs": 0, "stats": 0}, 10)
    # The connection stays healthy and the subscription is gone.
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.send({"type": "unsubscribe_logs", "containerId": name})
    assert (await client.expect("unsubscribed_logs"))["containerId"] == name


# --- errors and authorization ------------------------------------------------------------


async def test_unknown_container(server: RunningServer) -> None:
    client = await connect(server)
    for kind in ("subscribe_logs", "subscribe_stats"):
        await client.send({"type": kind, "containerId": "no-such-container-opws"})
        err = await client.expect("error", 15)
        assert err["code"] == "CONTAINER_NOT_FOUND"
        assert err["containerId"] == "no-such-container-opws"
    assert gateway(server).upstream_counts() == {"logs": 0, "stats": 0}


async def test_engine_unreachable_is_docker_unavailable(make_server: Any) -> None:
    server = await make_server(docker_host="unix:///tmp/opws-no-engine-here.sock")
    client = await connect(server)
    for kind in ("subscribe_logs", "subscribe_stats"):
        await client.send({"type": kind, "containerId": "web"})
        err = await client.expect("error", 15)
        assert (err["code"], err["containerId"]) == ("DOCKER_UNAVAILABLE", "web")
    assert gateway(server).upstream_counts() == {"logs": 0, "stats": 0}


async def test_containers_claim_scopes_access_without_leaking_existence(
    server: RunningServer, containers: Containers
) -> None:
    allowed = await containers.run("echo ok; sleep 3600", name=f"scoped-{int(time.time() * 1000)}")
    denied = await containers.run("echo secret; sleep 3600")
    await containers.wait_logged(allowed, "ok")
    token = make_token("viewer", roles=("viewer",), containers=["scoped-*"])
    client = await connect(server, token)
    for ref in (denied, await containers.id_of(denied), "scoped-does-not-exist", "nothing-at-all"):
        for kind in ("subscribe_logs", "subscribe_stats"):
            await client.send({"type": kind, "containerId": ref})
            err = await client.expect("error", 15)
            assert (err["code"], err["containerId"]) == ("PERMISSION_DENIED", ref)
            assert err["message"] == "Permission denied"
    await subscribe_logs(client, allowed)
    assert (await client.expect("log", 15))["data"] == "ok"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "subscribe_logs"}, "containerId"),
        ({"type": "subscribe_logs", "containerId": 42}, "containerId"),
        ({"type": "subscribe_logs", "containerId": "x", "tail": -1}, "tail"),
        ({"type": "subscribe_logs", "containerId": "x", "tail": "some"}, "tail"),
        ({"type": "subscribe_logs", "containerId": "x", "tail": True}, "tail"),
        ({"type": "subscribe_logs", "containerId": "x", "since": "yesterday"}, "since"),
        ({"type": "subscribe_logs", "containerId": "x", "since": -5}, "since"),
        ({"type": "subscribe_stats", "containerId": "x", "interval": 499}, "interval"),
        ({"type": "subscribe_stats", "containerId": "x", "interval": 60001}, "interval"),
        ({"type": "subscribe_stats", "containerId": "x", "interval": "fast"}, "interval"),
        ({"type": "unsubscribe_stats"}, "containerId"),
    ],
)
async def test_bad_input_is_invalid_message(
    server: RunningServer, message: dict[str, Any], field: str
) -> None:
    client = await connect(server)
    await client.send(message)
    err = await client.expect("error")
    assert (err["code"], err.get("field")) == ("INVALID_MESSAGE", field)
    assert gateway(server).upstream_counts() == {"logs": 0, "stats": 0}
    await client.send({"type": "ping"})
    await client.expect("pong")


# --- sharing -------------------------------------------------------------------------


async def test_forty_clients_share_one_upstream_and_release_it(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done")
    await containers.wait_logged(name, "tick 1")
    engine = server.services.hosts.default.engine
    clients = [await connect(server) for _ in range(40)]
    base = engine.open_streams
    for client in clients:
        await client.send({"type": "subscribe_logs", "containerId": name, "tail": 0})
        await client.send({"type": "subscribe_stats", "containerId": name, "interval": 1000})
    for client in clients:
        await client.expect("subscribed_logs", 20)
        await client.expect("subscribed_stats", 20)
    assert gateway(server).upstream_counts() == {"logs": 1, "stats": 1}
    # one logs + one stats stream (+ the shared events stream) once the histories are served
    await eventually(lambda: engine.open_streams - base <= 3, 20)
    firsts = [await c.expect("log", 15) for c in clients]
    stats = [await c.expect("stats", 15) for c in clients]
    assert all(s["stats"]["memory"]["usage"] > 0 for s in stats)
    # Everybody sees the same lines from then on.
    marks = {int(m["data"].split()[1]) for m in firsts}
    target = max(marks) + 3
    for client in clients:
        seen = await client.expect("log", 15, where=lambda m: m["data"] == f"tick {target}")
        assert seen["stream"] == "stdout"
    for client in clients[:20]:
        await client.close()
    # A window for a wrong release of the shared upstreams to show (there is no event
    # to await for "nothing happened").
    await asyncio.sleep(0.5 * SECOND)
    assert gateway(server).upstream_counts() == {"logs": 1, "stats": 1}
    for client in clients[20:]:
        await client.close()
    await eventually(lambda: gateway(server).upstream_counts() == {"logs": 0, "stats": 0}, 10)
    await eventually(lambda: engine.open_streams == 0, 10)


async def test_late_subscriber_history_joins_live_with_no_gap_or_duplicate(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("i=0; while :; do i=$((i+1)); echo $i; usleep 20000; done")
    await containers.wait_logged(name, "\n50\n")
    first = await connect(server)
    await subscribe_logs(first, name, tail=0)
    await first.expect("log", 15)
    late = await connect(server)
    await subscribe_logs(late, name, tail=30)
    late_lines = [int(m["data"]) for m in await late.expect_many("log", 61, 15)]
    first_lines = [int(m["data"]) for m in await first.expect_many("log", 61, 15)]
    assert len(late_lines) > 60
    assert late_lines == list(range(late_lines[0], late_lines[0] + len(late_lines)))
    assert first_lines == list(range(first_lines[0], first_lines[0] + len(first_lines)))


# --- stats ------------------------------------------------------------------------------


async def first_stats(client: WsClient, ref: str, interval: int = 1000) -> dict[str, Any]:
    await client.send({"type": "subscribe_stats", "containerId": ref, "interval": interval})
    ack = await client.expect("subscribed_stats", 15)
    assert ack["containerId"] == ref
    return await client.expect("stats", 15)


async def test_stats_shape_and_prompt_first_sample(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600", options=["--memory", "64m"])
    client = await connect(server)
    started = time.monotonic()
    msg = await first_stats(client, name, interval=10000)
    assert time.monotonic() - started < 5  # not a full interval
    assert msg["containerId"] == name
    assert RFC3339_NANO.match(msg["timestamp"])
    stats = msg["stats"]
    assert stats["cpu"]["usage"] == stats["cpu"]["percent"]
    assert stats["memory"]["limit"] == 64 * 1024 * 1024
    assert 0 < stats["memory"]["usage"] < stats["memory"]["limit"]
    assert stats["memory"]["percent"] == pytest.approx(
        stats["memory"]["usage"] / stats["memory"]["limit"] * 100, abs=0.01)
    assert set(stats["network"]) == {"rx_bytes", "tx_bytes"}
    assert set(stats["blkio"]) == {"read_bytes", "write_bytes"}
    assert stats["pids"] >= 1


@pytest.mark.serial  # measures CPU: needs the machine to itself
async def test_stats_cpu_of_a_busy_loop_under_half_a_cpu(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("while :; do :; done", options=["--cpus", "0.5"])
    client = await connect(server)
    await first_stats(client, name)
    samples = [m["stats"]["cpu"]["percent"] for m in await client.expect_many("stats", 5, 20)]
    assert len(samples) >= 3
    samples.sort()
    median = samples[len(samples) // 2]
    assert 35 <= median <= 65, samples


def cli_bytes(text: str) -> float:
    units = {"B": 1, "kB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 1024**2, "GB": 1e9, "GiB": 1024**3}
    match = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip())
    assert match, text
    return float(match.group(1)) * units[match.group(2)]


@pytest.mark.serial  # compares CPU percentages taken moments apart
async def test_stats_match_docker_stats_no_stream(server: RunningServer, containers: Containers) -> None:
    name = await containers.run(
        "dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; while :; do :; done",
        options=["--cpus", "0.5", "--memory", "128m"],
    )
    client = await connect(server)
    await first_stats(client, name)
    cli = json.loads(await docker("stats", "--no-stream", "--format", "{{json .}}", name))
    ours = (await client.expect("stats", 10))["stats"]
    cli_used, cli_limit = (cli_bytes(p) for p in cli["MemUsage"].split("/"))
    assert ours["memory"]["limit"] == cli_limit
    assert abs(ours["memory"]["usage"] - cli_used) <= max(2 * 1024**2, 0.1 * cli_used)
    assert abs(ours["memory"]["percent"] - float(cli["MemPerc"].rstrip("%"))) < 2
    assert abs(ours["cpu"]["percent"] - float(cli["CPUPerc"].rstrip("%"))) < 15
    assert ours["pids"] == int(cli["PIDs"])
    rx = cli_bytes(cli["NetIO"].split("/")[0])
    assert abs(ours["network"]["rx_bytes"] - rx) <= max(1024, 0.1 * rx)


async def test_stats_interval_counts(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    clients = {interval: await connect(server) for interval in (500, 1000, 2000, 5000)}
    for interval, client in clients.items():
        await first_stats(client, name, interval)
    counts = {}
    # The window is the measurement (samples per 10 s), so it is not scaled.
    results = await asyncio.gather(*(c.collect(10.0, "stats") for c in clients.values()))
    for interval, got in zip(clients, results, strict=True):
        counts[interval] = len(got)
    # The engine samples once a second: 500 ms gets every sample.
    assert 7 <= counts[500] <= 12, counts
    assert 7 <= counts[1000] <= 12, counts
    assert 4 <= counts[2000] <= 6, counts
    assert 1 <= counts[5000] <= 3, counts
    assert gateway(server).upstream_counts()["stats"] == 1


async def test_unsubscribe_stops_and_is_idempotent(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("while :; do echo x; sleep 0.2; done")
    client = await connect(server)
    await first_stats(client, name)
    await subscribe_logs(client, name)
    await client.expect("log", 15)
    for kind in ("unsubscribe_stats", "unsubscribe_logs"):
        for _ in range(2):
            await client.send({"type": kind, "containerId": name})
            ack = await client.expect(kind.replace("unsubscribe", "unsubscribed"), 10)
            assert ack["containerId"] == name
    client.backlog.clear()  # what arrived before the acks
    assert await quiet(client, None, 3.0) == []  # type: ignore[arg-type]
    assert gateway(server).upstream_counts() == {"logs": 0, "stats": 0}
    await client.send({"type": "unsubscribe_logs", "containerId": "never-subscribed"})
    assert (await client.expect("unsubscribed_logs"))["containerId"] == "never-subscribed"


async def test_stats_stop_with_the_container_and_resume_on_start(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("sleep 3600")
    client = await connect(server)
    await first_stats(client, name)
    engine = server.services.hosts.default.engine
    streaming = engine.open_streams
    await docker("stop", "-t", "0", name)
    # The stats stream of the stopped container ends; then the samples it sent are in.
    await eventually(lambda: engine.open_streams < streaming, 10, what="the stats stream ended")
    await client.round_trip()
    client.backlog.clear()
    assert await quiet(client, "stats", 3.0) == []
    await docker("start", name)
    msg = await client.expect("stats", 20)
    assert msg["stats"]["memory"]["usage"] > 0


async def test_stats_of_a_stopped_container_wait_for_start(
    server: RunningServer, containers: Containers
) -> None:
    name = await containers.run("sleep 3600")
    await docker("stop", "-t", "0", name)
    client = await connect(server)
    base = server.services.hosts.default.engine.open_streams
    await client.send({"type": "subscribe_stats", "containerId": name})
    await client.expect("subscribed_stats", 15)
    assert await quiet(client, "stats", 3.0) == []
    assert gateway(server).upstream_counts()["stats"] == 1
    assert server.services.hosts.default.engine.open_streams <= base + 1  # only the events stream
    await docker("start", name)
    await client.expect("stats", 20)
