"""Scenario 6, metrics: server CPU with 1,000 subscribers at 1,000 ms.

    .venv/bin/python bench/metrics_cpu.py [--clients 1000] [--interval 1000] [--seconds 20]

Written for this harness rather than reusing `bench/metrics_load.py` (whose `load()`
prints its figures and runs all clients in the measuring process): here the
subscribers run in 4 client processes (`wsclient.py`), each `subscribe`s at
`--interval` once authenticated, and the server (`bench_server.py`, the real
application) is measured alone: utime+stime from /proc/<pid>/stat over an idle window
(no client) and over the loaded window. server_cpu_percent is percent of one core over
the loaded window; metrics frames delivered per second are counted by the clients.
"""

from __future__ import annotations

import time
from typing import Any

from common import CpuMeter, emit, log, rnd, scenario_args, server, token
from wsclient import TargetSpec, collect_all, merged, ready_fleets, split


def main() -> None:
    args = scenario_args(__doc__, clients=1000, interval=1000, seconds=20.0, idle_seconds=5.0, procs=4)
    subscribe = {"type": "subscribe", "interval": args.interval}
    with server("bench_server.py") as srv:
        time.sleep(1.0)
        meter = CpuMeter(srv.pid)
        time.sleep(args.idle_seconds)
        idle = meter.read()
        specs = [[TargetSpec("metrics", srv.port, "/ws/metrics", k, token(), after_auth=[subscribe])]
                 for k in split(args.clients, args.procs)]
        with ready_fleets(specs) as fleets:
            time.sleep(2 * args.interval / 1000 + 1)  # every subscriber past its first sample
            collect_all(fleets, "metrics")
            meter.restart()
            time.sleep(args.seconds)
            data = collect_all(fleets, "metrics")
            cpu = meter.read()
    used, wall = cpu.server_s, cpu.wall_s
    got = merged(data)
    frames = got.counts.get("metrics", 0)
    result: dict[str, Any] = {
        "server_cpu_percent": rnd(used / wall * 100, 2),
        "idle_server_cpu_percent": rnd(idle.server_s / idle.wall_s * 100, 2),
        "clients": args.clients,
        "interval_ms": args.interval,
        "window_s": rnd(wall, 1),
        "metrics_frames_per_s": rnd(frames / wall, 0),
        "expected_frames_per_s": args.clients * 1000 / args.interval,
        "cpu_us_per_frame": rnd(used / max(frames, 1) * 1e6, 1),
        "errors": got.errors[:3],
    }
    log(f"  metrics {args.clients} subscribers at {args.interval} ms: server CPU "
        f"{result['server_cpu_percent']} % of one core (idle {result['idle_server_cpu_percent']} %), "
        f"{result['metrics_frames_per_s']} frames/s")
    emit(result)


if __name__ == "__main__":
    main()
