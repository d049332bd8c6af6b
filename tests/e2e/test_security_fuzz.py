"""Bounded end-to-end fuzz (issue 12): 2,000 mutated messages per endpoint against a real
server and engine. The server stays up, logs no traceback, and its memory stays flat."""

from __future__ import annotations

import gc
import json
import logging
import random
from typing import Any

import psutil
import pytest

from helpers import ConnectionClosed, Containers, RunningServer, WsClient, eventually, make_token
from openpanel_ws.ratelimit import RateLimit

pytestmark = pytest.mark.timeout(600)

PER_ENDPOINT = 2000
RSS_BUDGET = 20 * 1024 * 1024


def seeds(container: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "/ws/containers": [
            {"type": "subscribe_logs", "containerId": container, "tail": 5},
            {"type": "subscribe_logs", "containerId": container, "since": "2026-01-01T00:00:00Z"},
            {"type": "unsubscribe_logs", "containerId": container},
            {"type": "subscribe_stats", "containerId": container, "interval": 1000},
            {"type": "unsubscribe_stats", "containerId": container},
            {"type": "ping"},
        ],
        "/ws/logs": [
            {"type": "subscribe", "filters": {"type": ["container"], "event": ["start"]}},
            {"type": "subscribe", "since": 1764200000},
            {"type": "ping"},
        ],
        "/ws/metrics": [
            {"type": "subscribe", "interval": 1000},
            {"type": "unsubscribe"},
            {"type": "ping"},
        ],
        "/ws/terminal": [
            {"type": "open_terminal", "containerId": "opws-fuzz-missing", "shell": "/bin/sh"},
            {"type": "input", "data": "echo hi\n"},
            {"type": "resize", "cols": 80, "rows": 24},
            {"type": "close_terminal"},
            {"type": "ping"},
        ],
    }


WEIRD: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**63, -(2**70), 1e308, -1e308, "", " ", "x" * 2000,
    "\u0000", "\ud7ff\ue000", "../../etc/passwd", "*", "web-*", [], {}, [[]], {"a": {"b": {}}},
    "NaN", "Infinity", "9999-12-31T23:59:59Z", "0000-00-00", "all", "1e999999999",
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.5 or depth > 3:
        return rng.choice(WEIRD)
    if roll < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.85:
        return {rng.choice(["type", "containerId", "x", "filters"]): random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 30)))


def mutate(rng: random.Random, seed: dict[str, Any]) -> str | bytes:
    msg = dict(seed)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        keys = list(msg)
        if op < 0.35 and keys:
            msg[rng.choice(keys)] = random_value(rng)
        elif op < 0.5 and keys:
            del msg[rng.choice(keys)]
        elif op < 0.65:
            msg[rng.choice(["tail", "since", "interval", "filters", "cols", "rows", "data", "extra"])] = \
                random_value(rng)
        elif op < 0.7:
            msg["type"] = rng.choice(["auth", "ping", "pong", "subscribe", "nope", "", "open_terminal"])
    text = json.dumps(msg)
    roll = rng.random()
    if roll < 0.05:
        return text[: rng.randint(0, len(text))]  # truncated
    if roll < 0.08:
        return "[" * rng.randint(1, 5000) + "]" * rng.randint(0, 5000)  # deep nesting
    if roll < 0.10:
        return text.encode() + bytes(rng.randint(0, 255) for _ in range(8))  # binary frame
    if roll < 0.12:
        return json.dumps({"type": "ping", "pad": "x" * rng.randint(60000, 70000)})  # near the limit
    if roll < 0.13:
        return json.dumps([msg])
    return text


async def fuzz_endpoint(server: RunningServer, path: str, seed_list: list[dict[str, Any]],
                        rng: random.Random, count: int) -> int:
    client: WsClient | None = None
    reconnects = 0
    for i in range(count):
        if client is None or client.ws.closed:
            if client is not None:
                await client.close()
                reconnects += 1
            client = await server.connect(path, auth=True)
        frame = mutate(rng, rng.choice(seed_list))
        try:
            if isinstance(frame, bytes):
                await client.ws.send_bytes(frame)
            else:
                await client.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            client = None
            reconnects += 1
            continue
        if i % 50 == 49:
            # Drain what came back and prove the connection still answers.
            try:
                await client.send({"type": "ping"})
                await client.expect("pong", 15)
                client.backlog.clear()
            except (ConnectionClosed, ConnectionError, RuntimeError):
                client = None
                reconnects += 1
    if client is not None:
        await client.close()
    return reconnects


async def test_fuzz_every_endpoint(make_server: Any, containers: Containers,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    name = await containers.run("i=0; while true; do i=$((i+1)); echo fuzz $i; sleep 0.5; done")
    fast = RateLimit(1_000_000, 1.0)
    srv: RunningServer = await make_server(
        rate_limit_containers=fast, rate_limit_logs=fast, rate_limit_metrics=fast,
        rate_limit_terminal=fast, flood_threshold=1_000_000)
    rng = random.Random(12)
    plan = seeds(name)
    proc = psutil.Process()
    for path, seed_list in plan.items():  # warm-up: imports, caches, first upstreams
        await fuzz_endpoint(srv, path, seed_list, rng, 100)
    await eventually(lambda: srv.connections() == 0, 10, what="the warm-up connections gone")
    gc.collect()
    rss_before = proc.memory_info().rss
    for path, seed_list in plan.items():
        reconnects = await fuzz_endpoint(srv, path, seed_list, rng, PER_ENDPOINT)
        print(f"{path}: {PER_ENDPOINT} messages, {reconnects} reconnects")
    await eventually(lambda: srv.connections() == 0, 10, what="the fuzzing connections gone")
    gc.collect()
    rss_growth = proc.memory_info().rss - rss_before
    # Still serving.
    for path in plan:
        client = await srv.connect(path, auth=make_token())
        await client.send({"type": "ping"})
        await client.expect("pong", 10)
        await client.close()
    # The server's records only: a test client's unclosed session (asyncio's GC warning
    # about *client* objects of earlier tests) is not the server logging a traceback.
    bad = [r for r in caplog.records if (r.exc_info or r.levelno >= logging.ERROR)
           and "Unclosed client session" not in r.getMessage()
           and "Unclosed connector" not in r.getMessage()]
    assert bad == [], [(r.name, r.getMessage()) for r in bad][:5]
    print(f"RSS growth over {PER_ENDPOINT} x {len(plan)} messages: {rss_growth / 1e6:.1f} MB")
    assert rss_growth < RSS_BUDGET
