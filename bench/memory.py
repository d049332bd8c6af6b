"""Scenario 2, memory: server RSS with 0, 1,000 and 5,000 idle authenticated connections.

    .venv/bin/python bench/memory.py [--counts 1000,5000] [--procs 5]

A fresh `bench_server.py` (the real application), and client processes (`wsclient.py`,
RLIMIT_NOFILE raised in every process) that open, authenticate and then hold idle
connections on `/ws/containers` (answering heartbeats). RSS is VmRSS of the server
from /proc/<pid>/status, read after the connections are up and the server has been
quiet for a moment. KiB per connection = (RSS at N - RSS at 0) / N; the marginal cost
between the two largest counts is reported too (it leaves out one-time growth such as
the first connection's imports and allocator arenas).

For reference, the same counts are held against `baseline_server.py` (bare aiohttp, a
set of sockets and nothing else): the library's own floor per connection.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from common import emit, log, rnd, rss_kib, scenario_args, server, token
from wsclient import FleetHandle, TargetSpec, ready_fleets, split


def settle_rss(pid: int, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return rss_kib(pid)


def ladder(script: str, path: str, auth_token: str, counts: list[int], procs: int) -> dict[str, Any]:
    rss: dict[int, int] = {}
    fleets: list[FleetHandle] = []
    with server(script) as srv, contextlib.ExitStack() as held_fleets:
        rss[0] = settle_rss(srv.pid)
        held = 0
        for count in counts:
            specs = [[TargetSpec("m", srv.port, path, k, auth_token)] for k in split(count - held, procs)]
            fleets.extend(held_fleets.enter_context(ready_fleets(specs, timeout=240)))
            held = count
            rss[count] = settle_rss(srv.pid)
            log(f"  memory {script:<20} {count:>5} connections: RSS {rss[count] / 1024:.1f} MiB")
        # Every connection still open at the end (none closed by heartbeat or error)?
        still_open = sum(f.collect("m")["open"] for f in fleets)
    top = counts[-1]
    prev = counts[-2] if len(counts) > 1 else 0
    return {
        "rss_kib": {str(k): v for k, v in rss.items()},
        "kib_per_connection": rnd((rss[top] - rss[0]) / top, 2),
        "marginal_kib_per_connection": rnd((rss[top] - rss[prev]) / (top - prev), 2),
        "open_at_end": still_open,
    }


def main() -> None:
    args = scenario_args(__doc__, counts="1000,5000", procs=5, no_baseline=False)
    counts = [int(x) for x in args.counts.split(",")]
    gateway = ladder("bench_server.py", "/ws/containers", token(), counts, args.procs)
    result: dict[str, Any] = {
        "kib_per_connection": gateway["kib_per_connection"],
        "connections": counts[-1],
        "gateway": gateway,
    }
    if not args.no_baseline:
        result["baseline_aiohttp"] = ladder("baseline_server.py", "/ws/bench", "none", counts, args.procs)
    emit(result)


if __name__ == "__main__":
    main()
