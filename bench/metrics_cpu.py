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

import argparse
import time
from typing import Any

from common import cpu_seconds, emit, exit_on_sigterm, log, rnd, server, token
from wsclient import TargetSpec, close_fleets, split, start_fleets


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=4)
    args = parser.parse_args()
    subscribe = {"type": "subscribe", "interval": args.interval}
    with server("bench_server.py") as srv:
        time.sleep(1.0)
        c0, t0 = cpu_seconds(srv.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        idle = (cpu_seconds(srv.pid) - c0) / (time.monotonic() - t0)
        specs = [[TargetSpec("metrics", srv.port, "/ws/metrics", k, token(), after_auth=[subscribe])]
                 for k in split(args.clients, args.procs)]
        fleets, ready, errors = start_fleets(specs)
        try:
            if ready.get("metrics") != args.clients:
                raise RuntimeError(f"only {ready} of {args.clients} subscribers authenticated: {errors[:3]}")
            time.sleep(2 * args.interval / 1000 + 1)  # every subscriber past its first sample
            for fleet in fleets:
                fleet.collect("metrics", reset=True)
            c0, t0 = cpu_seconds(srv.pid), time.monotonic()
            time.sleep(args.seconds)
            data = [fleet.collect("metrics", reset=True) for fleet in fleets]
            used, wall = cpu_seconds(srv.pid) - c0, time.monotonic() - t0
        finally:
            close_fleets(fleets)
    frames = sum(d["counts"].get("metrics", 0) for d in data)
    errs = [e for d in data for e in d["errors"]]
    result: dict[str, Any] = {
        "server_cpu_percent": rnd(used / wall * 100, 2),
        "idle_server_cpu_percent": rnd(idle * 100, 2),
        "clients": args.clients,
        "interval_ms": args.interval,
        "window_s": rnd(wall, 1),
        "metrics_frames_per_s": rnd(frames / wall, 0),
        "expected_frames_per_s": args.clients * 1000 / args.interval,
        "cpu_us_per_frame": rnd(used / max(frames, 1) * 1e6, 1),
        "errors": errs[:3],
    }
    log(f"  metrics {args.clients} subscribers at {args.interval} ms: server CPU "
        f"{result['server_cpu_percent']} % of one core (idle {result['idle_server_cpu_percent']} %), "
        f"{result['metrics_frames_per_s']} frames/s")
    emit(result)


if __name__ == "__main__":
    main()
