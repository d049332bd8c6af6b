"""Scenario 5, terminal: keystroke-to-echo round trip, gateway vs direct engine exec attach.

    .venv/bin/python bench/terminal_rtt.py [--keystrokes 1000] [--block 100]

Reuses the terminal engineer's `bench/terminal_latency.py` (`GatewayPath`,
`DirectPath`, `keystrokes`): in both paths an exec in a busybox container runs
`stty raw -echo; exec cat`, one keystroke is in flight at a time (send one byte, wait
for its echo), and the two paths alternate in blocks of `--block` so a change of
machine load hits both alike. The gateway path is `/ws/terminal` of this harness's
server (`bench_server.py`, the real application) in its own process; the direct path
is the engine's exec hijack (the same `ExecProcess` the gateway uses) from this
process. The client of both paths runs in this process, the server does not.

The terminal rate limit is raised for this run (OPENPANEL_WS_RATE_LIMIT_TERMINAL=1000/s):
at the specification's 10/s, 1,000 keystrokes would measure the limiter, not the path.

median_ratio / p99_ratio = gateway / direct. Target <= 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import uuid
from typing import Any

import terminal_latency as tl
from common import docker_rm, docker_run, emit, exit_on_sigterm, log, percentile, rnd, server

RATE_LIMIT = "1000/s"


async def measure(url: str, container: str, count: int, block: int, warmup: int) -> dict[str, list[float]]:
    gateway, direct = tl.GatewayPath(url, container), tl.DirectPath(container)
    paths: list[tl.Route] = [gateway, direct]
    results: dict[str, list[float]] = {"gateway": [], "direct": []}
    try:
        for path in paths:
            await path.open()
            await tl.keystrokes(path, warmup, [])  # warm-up, not counted
        done = 0
        while done < count:
            n = min(block, count - done)
            await tl.keystrokes(gateway, n, results["gateway"])
            await tl.keystrokes(direct, n, results["direct"])
            done += n
    finally:
        for path in paths:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(path.close(), 15)
    return results


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median_ms": rnd(statistics.median(values), 3),
            "p99_ms": rnd(percentile(values, 99), 3), "mean_ms": rnd(statistics.fmean(values), 3),
            "max_ms": rnd(max(values), 3)}


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    name = f"opws-bench-term-{uuid.uuid4().hex[:6]}"
    env = {"OPENPANEL_WS_JWT_SECRET": tl.SECRET, "OPENPANEL_WS_RATE_LIMIT_TERMINAL": RATE_LIMIT}
    try:
        docker_run(name, "sh", "-c", "sleep 3600")
        with server("bench_server.py", env=env) as srv:
            results = asyncio.run(measure(srv.url, name, args.keystrokes, args.block, args.warmup))
    finally:
        docker_rm(name)
    g, d = summary(results["gateway"]), summary(results["direct"])
    for label, s in (("gateway", g), ("direct", d)):
        log(f"  terminal {label:>7}: median {s['median_ms']} ms, p99 {s['p99_ms']} ms, n={s['n']}")
    emit({
        "median_ratio": rnd(g["median_ms"] / d["median_ms"], 3),
        "p99_ratio": rnd(g["p99_ms"] / d["p99_ms"], 3),
        "gateway": g,
        "direct": d,
        "rate_limit_terminal": RATE_LIMIT,
        "source": "bench/terminal_latency.py (GatewayPath, DirectPath, keystrokes)",
    })


if __name__ == "__main__":
    main()
