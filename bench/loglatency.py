"""Scenario 4, log latency: engine timestamp of a line to its arrival at the client.

    .venv/bin/python bench/loglatency.py [--subscribers 1,100] [--seconds 8] [--rate 1000]

A busybox container prints numbered lines at `--rate` lines/s, paced by its clock
(/proc/uptime, 10 ms steps: groups of rate/100 lines every 10 ms, one write per line;
it catches up when it falls behind). The rate received is measured and reported. Subscribers on
`/ws/containers` (`subscribe_logs` with `tail: 0`) run in separate client processes
(`wsclient.py`); for each `log` frame a client records (time.time() when the bytes
arrived - the frame's `timestamp`, which is the engine's own timestamp of the line,
taken when dockerd read it from the container). Same host, same clock. p50/p99 over
every line received in the window by every subscriber, with 1 and with 100
subscribers. `make bench` runs it at 200 lines/s (`log_latency`, 20k deliveries/s: target
p99 <= 10 ms) and at 1,000 lines/s (`log_latency_1000`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from common import CpuMeter, docker_rm, docker_run, emit, latency_ms, log, rnd, scenario_args, server, token
from wsclient import TargetSpec, collect_all, merged, ready_fleets, split


def phase(port: int, pid: int, container: str, subscribers: int, seconds: float,
          procs: int, path: str = "/ws/containers",
          beside: list[TargetSpec] | None = None) -> dict[str, Any]:
    """`subscribers` on `path` (bench/hosts.py: a /hosts/{id}/ws/containers route), with
    the clients of `beside` (other traffic, measured by nobody) in the first process."""
    subscribe = {"type": "subscribe_logs", "containerId": container, "tail": 0}
    specs = [[TargetSpec("logs", port, path, k, token(), after_auth=[subscribe],
                         latency_type=b"log")]
             for k in split(subscribers, min(procs, subscribers))]
    specs[0] += beside or []
    with ready_fleets(specs) as fleets:
        time.sleep(2.0)  # every subscription active, first lines through
        collect_all(fleets, "logs")
        meter = CpuMeter(pid, [f.pid for f in fleets])
        time.sleep(seconds)
        data = collect_all(fleets, "logs")
        cpu = meter.read()
    got = merged(data)
    # Each process's list is in arrival order: a p99 that grows from the first half of
    # the window to the second means a backlog building up (throughput-bound).
    first = [x * 1000.0 for d in data for x in d["latencies"][: len(d["latencies"]) // 2]]
    second = [x * 1000.0 for d in data for x in d["latencies"][len(d["latencies"]) // 2 :]]
    lines = len(got.latencies_ms)
    if not lines:
        raise RuntimeError(f"no log lines received: {got.errors[:3]}")
    out = {
        "subscribers": subscribers,
        **latency_ms(got.latencies_ms),
        "p99_first_half_ms": latency_ms(first)["p99_ms"],
        "p99_second_half_ms": latency_ms(second)["p99_ms"],
        "lines_per_s_per_subscriber": rnd(lines / subscribers / cpu.wall_s, 0),
        "deliveries": lines,
        "server_cpu_percent": rnd(cpu.server_s / cpu.wall_s * 100, 1),
        **cpu.us_per_delivery(lines),
        "errors": got.errors[:3],
    }
    log(f"  log latency {subscribers:>3} subscribers: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, "
        f"max {out['max_ms']} ms (p99 halves {out['p99_first_half_ms']}/{out['p99_second_half_ms']}), "
        f"{out['lines_per_s_per_subscriber']} lines/s each, "
        f"server CPU {out['server_cpu_percent']} %")
    return out


def main() -> None:
    args = scenario_args(__doc__, subscribers="1,100", seconds=8.0, rate=1000, procs=4)
    name = f"opws-bench-logs-{uuid.uuid4().hex[:6]}"
    # Paced by the clock, not by counting sleeps, so CPU contention (the server and 100
    # clients on the same cores) does not lower the rate: `read` of /proc/uptime and
    # `echo` are ash builtins; /proc/uptime has 10 ms steps, so lines come in groups of
    # rate/100 (one write, one engine timestamp each) every 10 ms.
    per_cs = args.rate / 100  # lines due per centisecond
    script = ("read s _ < /proc/uptime; s=${s%.*}${s#*.}; i=0; while true; do "
              "read u _ < /proc/uptime; u=${u%.*}${u#*.}; "
              f"t=$(( (u - s) * {int(per_cs)} )); "
              'while [ $i -lt $t ]; do i=$((i+1)); echo "bench line $i"; done; usleep 2000; done')
    results: dict[str, Any] = {}
    try:
        docker_run(name, "sh", "-c", script)
        with server("bench_server.py") as srv:
            for n in (int(x) for x in args.subscribers.split(",")):
                results[str(n)] = phase(srv.port, srv.pid, name, n, args.seconds, args.procs)
    finally:
        docker_rm(name)
    top = results[str(max(int(x) for x in results))]
    emit({"p99_ms": top["p99_ms"], "p50_ms": top["p50_ms"], "subscribers": top["subscribers"],
          "client_cpu_us_per_delivery": top["client_cpu_us_per_delivery"],
          "target_rate": args.rate, "by_subscribers": results})


if __name__ == "__main__":
    main()
