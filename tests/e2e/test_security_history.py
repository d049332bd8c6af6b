"""Hostile subscribers of /ws/containers history (issue 27, items 1 and 4), end to end.

The probe of the issue, shrunk to fit a CI budget: a container that printed 200,000
lines (the report used 2,000,000; the effect is the same, ten times smaller), three
subscribers asking `tail: "all"` that never read, and one that does. Every test prints
the gateway process's RSS and CPU before and after (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import (
    ConnectionClosed,
    Containers,
    RunningServer,
    WsClient,
    docker,
    eventually,
    make_token,
    scaled,
)
from openpanel_ws.outbound.frames import OP_TEXT, masked_frame
from openpanel_ws.protocol import parse_timestamp_nanos
from openpanel_ws.ratelimit import RateLimit
from openpanel_ws.server import CLIENTS_KEY, GATEWAYS_KEY

pytestmark = pytest.mark.timeout(120)

LINES = 200_000
MiB = 1024 * 1024
SAMPLE_PERIOD = 0.02  # RSS sampling (a period, not a wait for anything)


def rss() -> int:
    with open("/proc/self/status") as status:
        for row in status:
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Peak:
    """The highest RSS seen, sampled every 20 ms while it runs."""

    def __init__(self) -> None:
        self.value = rss()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.value = max(self.value, rss())
            await asyncio.sleep(SAMPLE_PERIOD)

    def __enter__(self) -> Peak:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.value = max(self.value, rss())


class RawSubscriber:
    """A raw socket that upgrades, authenticates, subscribes, then never reads (asyncio
    stops reading from the kernel once its small buffer is full)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, message: dict[str, Any]) -> RawSubscriber:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/containers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode())
        await reader.readuntil(b"\r\n\r\n")
        for sent in ({"type": "auth", "token": make_token()}, message):
            writer.write(masked_frame(OP_TEXT, json.dumps(sent).encode()))
        await writer.drain()
        return cls(reader, writer)

    async def close_code(self, timeout: float) -> int | None:
        """Read up to the server's Close frame: its code (None: the socket ended first)."""
        data = bytearray()
        try:
            async with asyncio.timeout(scaled(timeout)):
                while chunk := await self.reader.read(1 << 20):
                    data += chunk
                    code = _close_code(data)
                    if code is not None:
                        return code
            return None
        finally:
            self.writer.close()


def _close_code(data: bytearray) -> int | None:
    """The code of the Close frame among the complete frames of `data`, if any."""
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[i + 2:i + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[i + 2:i + 10], "big"), 10
        if i + head + n > len(data):
            return None
        if opcode == 0x8:
            return int.from_bytes(data[i + head:i + head + 2], "big")
        i += head + n
    return None


@pytest.fixture
async def chatty(containers: Containers) -> AsyncIterator[str]:
    """A container that printed LINES lines, then idles."""
    name = await containers.run(f"seq 1 {LINES}; echo printed-all; sleep 3600")

    async def printed() -> bool:
        return "printed-all" in await docker("logs", "--tail", "1", name, check=False)

    await eventually(printed, 60, step=0.2, what="the container printed every line")
    last = await docker("logs", "--tail", "1", "--timestamps", name, check=False)
    printed_at = parse_timestamp_nanos(last.split()[0]) / 1e9
    # Printed, then quiet: a new logs upstream starts a second back (its start margin),
    # and a burst inside that second would reach every subscriber as live lines.
    await eventually(lambda: time.time() - printed_at > 1.5, 10, what="the burst is over")
    yield name


def report(what: str, rss_before: int, peak: int, cpu_before: float) -> None:
    print(f"\n[{what}] RSS before {rss_before / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
          f"(+{(peak - rss_before) / MiB:.1f} MiB), after {rss() / MiB:.1f} MiB; "
          f"CPU {cpu() - cpu_before:.2f} s")


def cut_off(sessions: list[Any]) -> bool:
    return all(session.writer.closing for session in sessions)


async def test_tail_all_nonreaders_are_cut_off_while_memory_stays_flat_and_a_reader_is_served(
    make_server: Any, chatty: str
) -> None:
    server: RunningServer = await make_server(log_history_max_lines=1_000_000,
                                              log_history_max_bytes=1 << 30)
    subscribe = {"type": "subscribe_logs", "containerId": chatty, "tail": "all"}
    rss_before, cpu_before = rss(), cpu()
    first_after: float | str = "never"
    with Peak() as peak:
        started = time.monotonic()
        silent = [await RawSubscriber.open(server.port, subscribe) for _ in range(3)]
        await eventually(lambda: len(server.app[CLIENTS_KEY]) == 3)
        sessions = list(server.app[CLIENTS_KEY])
        # Another user: the three are one user's, who gets 2 history fetches at once.
        reader = await server.connect("/ws/containers", auth=make_token("reader"))
        await reader.send(subscribe)
        try:
            await reader.expect("subscribed_logs", 15)
            first = await reader.expect("log", 15)
            first_after = time.monotonic() - started
            assert first["data"] == "1"
        except (ConnectionClosed, TimeoutError) as exc:
            first_after = f"never ({exc!r})"
        await reader.close()
        await eventually(lambda: cut_off(sessions), 30,
                         what="the three subscribers that never read are cut off")
        cut_after = time.monotonic() - started
        codes = await asyncio.gather(*(sub.close_code(30) for sub in silent))
    report("tail all, 3 non-readers + 1 reader", rss_before, peak.value, cpu_before)
    print(f"first line after {first_after if isinstance(first_after, str) else f'{first_after:.2f} s'}"
          f", non-readers cut off after {cut_after:.2f} s with {codes}")
    assert list(codes) == [1013, 1013, 1013]
    # Each history is sent as it is read: memory does not grow with the history (200,000
    # lines held per subscriber are well over 100 MiB for three).
    assert peak.value - rss_before < 48 * MiB
    assert isinstance(first_after, float) and first_after < scaled(5)


async def recv(client: WsClient) -> dict[str, Any]:
    """The next message that is not the server's heartbeat."""
    while (message := await client.recv(15))["type"] == "ping":
        pass
    return message


async def test_tail_past_the_line_cap_gets_what_fits_and_a_marker(
    make_server: Any, containers: Containers
) -> None:
    server: RunningServer = await make_server(log_history_max_lines=20)
    name = await containers.run("seq 1 50; sleep 3600")
    await containers.wait_logged(name, "\n50")
    client = await server.connect("/ws/containers", auth=True)
    await client.send({"type": "subscribe_logs", "containerId": name, "tail": "all"})
    await client.expect("subscribed_logs", 15)
    # What fits (the newest 20 lines), then the marker, then live lines.
    lines = [(await recv(client))["data"] for _ in range(20)]
    assert lines == [str(i) for i in range(31, 51)]
    info = await recv(client)
    assert info["type"] == "info" and info["code"] == "HISTORY_TRUNCATED"
    assert info["reason"] == "lines" and info["limit"] == 20 and info["sent"] == 20
    assert info["containerId"] == name and info["host"] == "local"
    assert await client.quiet(0.5, "log") == []


async def test_tail_past_the_byte_cap_gets_what_fits_and_a_marker(
    make_server: Any, containers: Containers
) -> None:
    server: RunningServer = await make_server(log_history_max_bytes=4096)
    name = await containers.run("seq 1 500; sleep 3600")
    await containers.wait_logged(name, "\n500")
    client = await server.connect("/ws/containers", auth=True)
    await client.send({"type": "subscribe_logs", "containerId": name, "tail": 500})
    await client.expect("subscribed_logs", 15)
    got: list[dict[str, Any]] = []
    while (message := await recv(client))["type"] == "log":
        got.append(message)
    assert message["type"] == "info" and message["code"] == "HISTORY_TRUNCATED"
    assert message["reason"] == "bytes" and message["limit"] == 4096
    assert message["sent"] == len(got)
    assert 0 < len(got) < 500
    assert [m["data"] for m in got] == [str(i) for i in range(1, len(got) + 1)]


async def test_a_hundred_subscriptions_on_one_connection_stop_at_the_cap(
    make_server: Any, containers: Containers
) -> None:
    server: RunningServer = await make_server(
        rate_limit_containers=RateLimit(1000, 1.0), flood_threshold=10_000)
    name = await containers.run("sleep 3600")
    full_id = await containers.id_of(name)
    refs = [name, *(full_id[:n] for n in range(12, 61))]  # 50 refs of one container
    assert len(set(refs)) == 50
    rss_before, cpu_before = rss(), cpu()
    client = await server.connect("/ws/containers", auth=True)
    with Peak() as peak:
        for ref in refs:
            await client.send({"type": "subscribe_logs", "containerId": ref, "tail": 0})
            await client.send({"type": "subscribe_stats", "containerId": ref})
        acks, errors = 0, []
        while acks + len(errors) < 100:
            message = await recv(client)
            if message["type"] in ("subscribed_logs", "subscribed_stats"):
                acks += 1
            elif message["type"] == "error":
                errors.append(message)
    report("100 subscriptions on one connection", rss_before, peak.value, cpu_before)
    gateway = server.app[GATEWAYS_KEY]["containers"]
    held = sum(len(s.state.subs) for s in server.app[CLIENTS_KEY]
               if s.state is not None and hasattr(s.state, "subs"))
    print(f"acks {acks}, errors {len(errors)}, subscriptions held {held}")
    assert acks == 64 and len(errors) == 36 and held == 64
    assert all(e["code"] == "INVALID_MESSAGE" and "64 subscriptions" in e["message"]
               and e["containerId"] in refs for e in errors)
    assert gateway.upstream_counts() == {"logs": 1, "stats": 1}
    # Unsubscribing one makes room for one more.
    await client.send({"type": "unsubscribe_logs", "containerId": name})
    await client.expect("unsubscribed_logs", 15)
    await client.send({"type": "subscribe_logs", "containerId": full_id, "tail": 0})
    await client.expect("subscribed_logs", 15)
