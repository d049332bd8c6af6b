"""Scenario 3, upstream sharing: engine CPU with 1 vs 100 clients on the same 10 containers' stats.

    .venv/bin/python bench/upstream.py [--containers 10] [--clients 100] [--seconds 20]

Reuses the containers engineer's `bench/stats_sharing.py` (its `measure` and `phase`:
the clients run in a separate process, `stats_sharing.py _clients`, each subscribing to
the stats of every container at 1,000 ms, then waiting its settle time, 35 s by
default, before the window) against this harness's server
(`bench_server.py`, the real application). Engine CPU is utime+stime of dockerd +
containerd from /proc/<pid>/stat over each window:

  idle   no client (the engine's background, for context)
  one    1 client  x 10 containers
  many   100 clients x 10 containers (1,000 subscriptions; with sharing still 10 engine streams)

engine_cpu_ratio = engine CPU(many) / engine CPU(one). Target <= 1.2. Also reported:
the same ratio after subtracting the idle window's rate (engine_cpu_ratio_above_idle;
null when the 1-client cost is lost in the noise).
"""

from __future__ import annotations

import uuid
from typing import Any

import stats_sharing
from common import docker_rm, docker_run, emit, log, rnd, scenario_args, server, token


def main() -> None:
    args = scenario_args(__doc__, containers=10, clients=100, seconds=20.0, idle_seconds=10.0, interval=1000)
    names = [f"opws-bench-stats-{uuid.uuid4().hex[:6]}" for _ in range(args.containers)]
    try:
        for name in names:
            docker_run(name, "sleep", "3600")
        with server("bench_server.py") as srv:
            common = ["--port", str(srv.port), "--token", token(), "--names", ",".join(names),
                      "--interval", str(args.interval)]
            results: dict[str, dict[str, Any]] = {}
            results["idle"] = stats_sharing.measure(args.idle_seconds, srv.pid)
            results["one"] = stats_sharing.phase("one", ["_clients", *common, "--count", "1"],
                                                 args.seconds, srv.pid)
            results["many"] = stats_sharing.phase("many", ["_clients", *common, "--count", str(args.clients)],
                                                  args.seconds, srv.pid)
            for label, r in results.items():
                log(f"  upstream {label:>5}: engine {r['engine_cpu_s']:.2f} CPU-s, server "
                    f"{r['server_cpu_s']:.2f} CPU-s, stats frames {r.get('stats_frames', 0)}")
    finally:
        docker_rm(*names)
    one, many = results["one"], results["many"]
    expected = args.clients * args.containers * args.seconds * 1000 / args.interval
    idle = results["idle"]["engine_cpu_s"] * args.seconds / args.idle_seconds  # per measuring window
    net_one, net_many = one["engine_cpu_s"] - idle, many["engine_cpu_s"] - idle
    emit({
        "engine_cpu_ratio": rnd(many["engine_cpu_s"] / one["engine_cpu_s"], 3),
        "engine_cpu_ratio_above_idle": rnd(net_many / net_one, 3) if net_one > 0.05 else None,
        "engine_cpu_s": {k: rnd(v["engine_cpu_s"], 2) for k, v in results.items()},
        "server_cpu_s": {k: rnd(v["server_cpu_s"], 2) for k, v in results.items()},
        "stats_frames": {k: v.get("stats_frames") for k, v in results.items() if k != "idle"},
        "server_engine_connections": {k: v.get("engine_connections") for k, v in results.items()},
        "stats_frames_expected_many": round(expected),
        "window_s": args.seconds,
        "containers": args.containers,
        "clients": args.clients,
        "source": "bench/stats_sharing.py (measure, phase)",
    })


if __name__ == "__main__":
    main()
