"""Scenario 5, terminal: keystroke-to-echo round trip, gateway vs direct engine exec attach.

    .venv/bin/python bench/terminal_rtt.py [--keystrokes 1000] [--block 100]

Reuses the terminal engineer's `bench/terminal_latency.py` (`round_trips` over its
`GatewayPath`, `DirectPath` and `keystrokes`): in both paths an exec in a busybox container runs
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

import asyncio
import statistics
import uuid
from typing import Any

import terminal_latency as tl
from common import docker_rm, docker_run, emit, log, percentile, rnd, scenario_args, server

RATE_LIMIT = "1000/s"


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median_ms": rnd(statistics.median(values), 3),
            "p99_ms": rnd(percentile(values, 99), 3), "mean_ms": rnd(statistics.fmean(values), 3),
            "max_ms": rnd(max(values), 3)}


def main() -> None:
    args = scenario_args(__doc__, keystrokes=1000, block=100, warmup=50)
    name = f"opws-bench-term-{uuid.uuid4().hex[:6]}"
    env = {"OPENPANEL_WS_RATE_LIMIT_TERMINAL": RATE_LIMIT}
    try:
        docker_run(name, "sh", "-c", "sleep 3600")
        with server("bench_server.py", env=env) as srv:
            results = asyncio.run(tl.round_trips(srv.url, name, args.keystrokes, args.block, args.warmup))
    finally:
        docker_rm(name)
    g, d = summary(results[tl.GatewayPath.name]), summary(results[tl.DirectPath.name])
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
