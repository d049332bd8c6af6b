"""`/ws/metrics` end to end: a real WebSocket client against the real server.

The metrics gateway needs no Docker engine, so these tests start their own server
instead of the engine-gated `server` fixture. Timing assertions are deliberately loose:
the machine is shared with other test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import (
    SECOND,
    RunningServer,
    WsClient,
    deadline,
    eventually,
    make_token,
    scaled,
    start_server,
)
from openpanel_ws.gateways.metrics import MetricsGateway
from openpanel_ws.protocol import parse_timestamp
from openpanel_ws.server import GATEWAYS_KEY

PATH = "/ws/metrics"


@pytest.fixture
async def srv() -> AsyncIterator[RunningServer]:
    server = await start_server()
    try:
        yield server
    finally:
        await server.stop()


def gateway(server: RunningServer) -> MetricsGateway:
    gw = server.app[GATEWAYS_KEY]["metrics"]
    assert isinstance(gw, MetricsGateway)
    return gw


async def subscribe(client: WsClient, interval: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "subscribe"}
    if interval is not None:
        msg["interval"] = interval
    await client.send(msg)
    return await client.expect("subscribed", timeout=10)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- host truth, read independently of psutil ----------------------------------------


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def net_dev(include_virtual: bool) -> tuple[int, int]:
    virtual = set(os.listdir("/sys/devices/virtual/net"))
    rx = tx = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, data = line.partition(":")
        name = name.strip()
        if name == "lo" or (name in virtual and not include_virtual):
            continue
        fields = data.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


# --- schema ----------------------------------------------------------------------------


async def test_schema_types_and_prompt_first_sample(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    started = time.monotonic()
    ack = await subscribe(client, 10000)
    assert ack == {"type": "subscribed", "interval": 10000}
    msg = await client.expect("metrics", timeout=8)
    # Promptly: well under the 10 s interval, even on a loaded machine.
    assert time.monotonic() - started < 5.0

    assert set(msg) == {"type", "timestamp", "system"}
    assert msg["timestamp"].endswith("Z")
    assert abs(parse_timestamp(msg["timestamp"]) - time.time()) < 30
    system = msg["system"]
    assert {"cpu", "memory", "disk", "network"} <= set(system)

    cpu = system["cpu"]
    assert isinstance(cpu["usage"], float) and 0.0 <= cpu["usage"] <= 100.0
    assert is_int(cpu["cores"]) and cpu["cores"] == psutil.cpu_count(logical=True)
    for key in ("memory", "disk"):
        part = system[key]
        for name in ("total", "used", "free"):
            assert is_int(part[name]) and part[name] >= 0, (key, name)
        assert isinstance(part["percent"], float) and 0.0 <= part["percent"] <= 100.0
        assert part["total"] > 0
    net = system["network"]
    assert is_int(net["rx_bytes"]) and is_int(net["tx_bytes"])
    assert net["rx_bytes"] >= 0 and net["tx_bytes"] >= 0

    # Additive extras (docs/metrics.md).
    assert len(cpu["perCore"]) == cpu["cores"]
    assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in cpu["perCore"])
    assert len(cpu["loadAverage"]) == 3
    assert is_int(net["rx_rate"]) and is_int(net["tx_rate"])
    swap = system["swap"]
    assert swap["used"] + swap["free"] == swap["total"]
    assert is_int(system["uptime"]) and system["uptime"] > 0


async def test_values_agree_with_proc_and_statvfs(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    rx0, tx0 = net_dev(include_virtual=False)
    await subscribe(client, 60000)
    msg = await client.expect("metrics", timeout=8)
    rx1, tx1 = net_dev(include_virtual=False)
    info = meminfo()
    st = os.statvfs("/")
    system = msg["system"]

    mem = system["memory"]
    assert mem["total"] == info["MemTotal"]
    assert mem["used"] + mem["free"] == mem["total"]
    # free = MemAvailable, which moves while other processes run: loose bound.
    assert abs(mem["free"] - info["MemAvailable"]) < 0.05 * mem["total"]
    assert mem["percent"] == pytest.approx(mem["used"] / mem["total"] * 100, abs=0.1)

    disk = system["disk"]
    assert disk["total"] == st.f_blocks * st.f_frsize
    assert abs(disk["free"] - st.f_bavail * st.f_frsize) < 0.02 * disk["total"]
    assert abs(disk["used"] - (st.f_blocks - st.f_bfree) * st.f_frsize) < 0.02 * disk["total"]
    # like df: reserved blocks are in neither used nor free
    assert disk["used"] + disk["free"] <= disk["total"]
    assert disk["percent"] == pytest.approx(disk["used"] / (disk["used"] + disk["free"]) * 100, abs=0.1)

    # Counters only grow: the sample was taken between the two reads.
    net = system["network"]
    assert rx0 <= net["rx_bytes"] <= rx1
    assert tx0 <= net["tx_bytes"] <= tx1


async def test_disk_path_and_virtual_interfaces_are_configurable(tmp_path: Path) -> None:
    server = await start_server(metrics_disk_path=str(tmp_path), metrics_include_virtual_interfaces=True)
    try:
        # Virtual interfaces (veth*) vanish with their containers, and other tests run
        # containers meanwhile: a sum can then shrink between two reads. Such a window
        # says nothing about us, so try again (a few times) until the interface set holds.
        for attempt in range(5):
            client = await server.connect(PATH, auth=True)
            names0 = set(os.listdir("/sys/class/net"))
            rx0, tx0 = net_dev(include_virtual=True)
            await subscribe(client, 60000)
            msg = await client.expect("metrics", timeout=8)
            rx1, tx1 = net_dev(include_virtual=True)
            if set(os.listdir("/sys/class/net")) == names0 or attempt == 4:
                break
            await client.close()
        st = os.statvfs(tmp_path)
        assert msg["system"]["disk"]["total"] == st.f_blocks * st.f_frsize
        net = msg["system"]["network"]
        assert rx0 <= net["rx_bytes"] <= rx1
        assert tx0 <= net["tx_bytes"] <= tx1
    finally:
        await server.stop()


# --- CPU -------------------------------------------------------------------------------

BUSY = """
import os, time
os.nice(10)  # load every core, yet yield to the other test runs sharing this machine
end = time.monotonic() + float(os.environ["BUSY_SECONDS"])
while time.monotonic() < end:
    pass
"""


@contextlib.asynccontextmanager
async def busy_cores(seconds: float) -> AsyncIterator[None]:
    """One busy process per logical CPU, bounded in time even if the test dies."""
    env = {**os.environ, "BUSY_SECONDS": str(seconds)}
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", BUSY, env=env)
             for _ in range(psutil.cpu_count(logical=True) or 1)]
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), scaled(10))


async def wait_for_usage(client: WsClient, predicate: Any, timeout: float) -> float:
    by = deadline(timeout)
    while True:
        if time.monotonic() >= by:
            raise AssertionError("CPU usage never reached the expected range")
        msg = await client.recv_by(by)
        if msg["type"] != "metrics":
            continue
        usage: float = msg["system"]["cpu"]["usage"]
        if predicate(usage):
            return usage


@pytest.mark.serial  # loads every core and measures host CPU
async def test_cpu_rises_under_load_and_falls_back(srv: RunningServer) -> None:
    # Two samplers with different intervals: neither may disturb the other's baseline.
    fast = await srv.connect(PATH, auth=True)
    slow = await srv.connect(PATH, auth=True)
    await subscribe(fast, 500)
    await subscribe(slow, 700)
    await fast.expect("metrics", timeout=5)
    await slow.expect("metrics", timeout=5)
    assert gateway(srv).sampler_count == 2

    async with busy_cores(40):
        loaded_fast = await wait_for_usage(fast, lambda u: u > 80.0, timeout=25)
        loaded_slow = await wait_for_usage(slow, lambda u: u > 80.0, timeout=25)
    loaded = min(loaded_fast, loaded_slow)
    # Drop what queued up during the load, then the value must fall clearly.
    await fast.round_trip()
    fast.backlog.clear()
    fell = await wait_for_usage(fast, lambda u: u < loaded - 20.0, timeout=30)
    assert fell < loaded - 20.0


# --- intervals -------------------------------------------------------------------------


def gaps(messages: list[dict[str, Any]]) -> list[float]:
    times = [parse_timestamp(m["timestamp"]) for m in messages]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_interval_is_respected(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    await subscribe(client, 500)
    await client.expect("metrics", timeout=5)
    samples = await client.collect(4.0, "metrics")
    # ~8 at 500 ms; loose bounds for a loaded machine.
    assert 5 <= len(samples) <= 11, len(samples)
    assert 0.35 <= statistics.median(gaps(samples)) <= 0.8


async def test_default_interval_is_2000(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    ack = await subscribe(client)
    assert ack["interval"] == 2000
    await client.expect("metrics", timeout=5)
    samples = await client.collect(4.5, "metrics")
    assert 1 <= len(samples) <= 3, len(samples)
    gw = gateway(srv)
    assert gw.sampler(2000) is not None and gw.sampler_count == 1
    # `interval: null` is the same as leaving it out.
    await client.send({"type": "subscribe", "interval": None})
    assert (await client.expect("subscribed"))["interval"] == 2000


@pytest.mark.parametrize(
    "bad", ["499", "60001", "0", "-1000", '"1000"', "true", "false", "1000.5", "[]", "{}", '"abc"',
            "1" + "0" * 30]
)
async def test_bad_interval_is_rejected_and_changes_nothing(srv: RunningServer, bad: str) -> None:
    """`bad` is raw JSON text, so values no Python encoder would produce get through."""
    client = await srv.connect(PATH, auth=True)
    gw = gateway(srv)
    await client.send(f'{{"type": "subscribe", "interval": {bad}}}')
    err = await client.expect("error")
    assert err["code"] == "INVALID_MESSAGE" and err["field"] == "interval"
    assert "interval" in err["message"]
    assert gw.sampler_count == 0

    await subscribe(client, 1000)
    await client.expect("metrics", timeout=5)
    await client.send(f'{{"type": "subscribe", "interval": {bad}}}')
    err = await client.expect("error")
    assert err["code"] == "INVALID_MESSAGE" and err["field"] == "interval"
    # still subscribed at 1000 ms, still receiving
    assert gw.sampler_count == 1 and gw.sampler(1000) is not None
    await client.expect("metrics", timeout=5)


async def test_resubscribe_replaces_the_interval(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    gw = gateway(srv)
    await subscribe(client, 500)
    await client.expect("metrics", timeout=5)
    ack = await subscribe(client, 1500)
    assert ack["interval"] == 1500
    await eventually(lambda: gw.sampler_count == 1 and gw.sampler(1500) is not None)
    assert gw.sampler(500) is None
    await client.round_trip()  # the 500 ms samples sent before the new sampler took over
    client.backlog.clear()
    samples = await client.collect(4.0, "metrics")
    # 1500 ms cadence now, not 500 (which would give ~8)
    assert 1 <= len(samples) <= 4, len(samples)

    # Same interval again: acknowledged, one sampler, a sample follows the ack promptly.
    await client.send({"type": "subscribe", "interval": 1500})
    first = await client.recv(timeout=5)
    while first["type"] == "metrics":  # a tick may have been in flight before the ack
        first = await client.recv(timeout=5)
    assert first == {"type": "subscribed", "interval": 1500}
    await client.expect("metrics", timeout=3)
    assert gw.sampler_count == 1 and gw.samplers_started == 2


async def test_unsubscribe_stops_samples_and_is_idempotent(srv: RunningServer) -> None:
    client = await srv.connect(PATH, auth=True)
    gw = gateway(srv)
    await client.send({"type": "unsubscribe"})
    assert await client.expect("unsubscribed") == {"type": "unsubscribed"}

    await subscribe(client, 500)
    await client.expect("metrics", timeout=5)
    await client.send({"type": "unsubscribe"})
    await client.expect("unsubscribed")
    after = await client.quiet(1.5)
    assert [m for m in after if m["type"] == "metrics"] == []
    assert gw.sampler_count == 0
    await client.send({"type": "unsubscribe"})
    await client.expect("unsubscribed")

    # subscribing again works
    await subscribe(client, 500)
    await client.expect("metrics", timeout=5)


async def test_disconnect_releases_the_sampler(srv: RunningServer) -> None:
    gw = gateway(srv)
    a = await srv.connect(PATH, auth=True)
    b = await srv.connect(PATH, auth=True)
    await subscribe(a, 800)
    await subscribe(b, 800)
    assert gw.sampler_count == 1 and gw.subscriber_count == 2
    task = gw.sampler(800).task  # type: ignore[union-attr]
    await a.close()
    await eventually(lambda: gw.subscriber_count == 1)
    assert gw.sampler_count == 1
    await b.close()
    await eventually(lambda: gw.sampler_count == 0)
    assert task is not None
    await eventually(lambda: task.done())


async def test_late_joiner_of_a_slow_interval_gets_a_sample_promptly(srv: RunningServer) -> None:
    first = await srv.connect(PATH, auth=True)
    await subscribe(first, 30000)
    await first.expect("metrics", timeout=5)
    # The shared sample ages past the fresh window: the time is what is under test.
    await asyncio.sleep(1.5 * SECOND)
    late = await srv.connect(PATH, auth=True)
    started = time.monotonic()
    await subscribe(late, 30000)
    msg = await late.expect("metrics", timeout=5)
    assert time.monotonic() - started < 5
    assert parse_timestamp(msg["timestamp"]) > time.time() - 5
    assert gateway(srv).sampler_count == 1


async def test_many_subscribers_share_one_sampler(srv: RunningServer) -> None:
    gw = gateway(srv)
    clients: list[WsClient] = []
    for _ in range(5):
        clients += await asyncio.gather(*(srv.connect(PATH, auth=True) for _ in range(20)))
    await asyncio.gather(*(subscribe(c, 1000) for c in clients))
    assert gw.sampler_count == 1 and gw.subscriber_count == 100
    assert gw.samplers_started == 1
    sampler = gw.sampler(1000)
    assert sampler is not None

    taken = gw.samples_taken
    ticks = sampler.ticks
    await eventually(lambda: sampler.ticks >= ticks + 3, timeout=15)
    # One reading per tick for all 100, plus at most a few for late joiners.
    assert gw.samples_taken - taken <= (sampler.ticks - ticks) + 3

    # Every subscriber got the same sample (same bytes decode to equal objects).
    await asyncio.gather(*(c.round_trip(10) for c in clients))  # every sample sent so far is in
    per_client = [[m for m in c.backlog if m["type"] == "metrics"] for c in clients]
    by_stamp: list[dict[str, dict[str, Any]]] = [{m["timestamp"]: m for m in msgs} for msgs in per_client]
    common = set(by_stamp[0]).intersection(*(set(d) for d in by_stamp[1:]))
    assert common, "no sample reached all 100 subscribers"
    stamp = max(common)
    reference = by_stamp[0][stamp]
    assert all(d[stamp] == reference for d in by_stamp)

    await asyncio.gather(*(c.close() for c in clients))
    await eventually(lambda: gw.sampler_count == 0, timeout=10)


async def test_server_stop_releases_samplers_and_bad_disk_path_reports_zeros() -> None:
    server = await start_server(metrics_disk_path="/nonexistent/openpanel-ws-metrics")
    stopped = False
    try:
        gw = gateway(server)
        a = await server.connect(PATH, auth=True)
        b = await server.connect(PATH, auth=True)
        await subscribe(a, 500)
        await subscribe(b, 900)
        msg = await a.expect("metrics", timeout=5)
        assert msg["system"]["disk"] == {"total": 0, "used": 0, "free": 0, "percent": 0.0}
        assert msg["system"]["memory"]["total"] > 0  # the rest of the sample is unaffected
        tasks = [s.task for s in (gw.sampler(500), gw.sampler(900)) if s is not None]
        assert len(tasks) == 2
        await server.stop()
        stopped = True
        assert all(t is not None and t.done() for t in tasks)
        assert gw.sampler_count == 0
    finally:
        if not stopped:
            await server.stop()


# --- hosts ---------------------------------------------------------------------------


async def test_metrics_of_a_host_on_this_machine_and_not_of_a_remote_one(tmp_path: Path) -> None:
    from openpanel_ws.engine.target import EngineTarget
    from openpanel_ws.hosts.config import HostConfig

    hosts = (HostConfig("local", EngineTarget("unix:///var/run/docker.sock")),
             HostConfig("edge", EngineTarget(f"unix://{tmp_path}/docker.sock")),
             HostConfig("remote", EngineTarget("tcp://127.0.0.1:1"), timeout=1.0))
    server = await start_server(hosts=hosts)
    try:
        client = await server.connect(PATH, auth=True)
        await client.send({"type": "subscribe", "interval": 1000, "host": "remote"})
        error = await client.expect("error", 10)
        assert error == {"type": "error", "code": "INVALID_MESSAGE",
                         "message": "Host metrics are not available for remote host 'remote'",
                         "field": "host", "host": "remote"}
        assert client.backlog == [] and gateway(server).subscriber_count == 0
        await client.send({"type": "subscribe", "interval": 1000, "host": "nope"})
        error = await client.expect("error", 10)
        assert (error["code"], error["field"], error["host"]) == ("INVALID_MESSAGE", "host", "nope")
        # A host on this machine (a unix socket, even one that does not answer) has the
        # machine's metrics.
        for host_id in ("local", "edge"):
            await client.send({"type": "subscribe", "interval": 1000, "host": host_id})
            assert (await client.expect("subscribed", 10))["interval"] == 1000
            assert "system" in await client.expect("metrics", 10)
        routed = await server.connect("/hosts/remote/ws/metrics", auth=True)
        await routed.send({"type": "subscribe"})
        error = await routed.expect("error", 10)
        assert (error["code"], error["field"], error["host"]) == ("INVALID_MESSAGE", "host", "remote")
        routed = await server.connect("/hosts/edge/ws/metrics", auth=True)
        assert await subscribe(routed, 1000) == {"type": "subscribed", "interval": 1000}
        await routed.expect("metrics", 10)
        await routed.send({"type": "subscribe", "host": "local"})
        error = await routed.expect("error", 10)
        assert (error["code"], error["field"]) == ("INVALID_MESSAGE", "host")
        # Out of the token's hosts: refused like any other request there.
        scoped = await server.connect("/ws/metrics", auth=make_token("ops", hosts=["edge"]))
        await scoped.send({"type": "subscribe", "host": "local"})
        error = await scoped.expect("error", 10)
        assert (error["code"], error["host"]) == ("PERMISSION_DENIED", "local")
    finally:
        await server.stop()
