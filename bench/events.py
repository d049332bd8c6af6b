"""Scenario 7, events: a Docker event's time in the engine to its arrival at 500 clients.

    .venv/bin/python bench/events.py [--clients 500] [--containers 50] [--workers 5]

`--clients` authenticated clients on `/ws/logs` (no filter: every engine event), in
client processes (`wsclient.py`). Then `--containers` containers are created, started
and removed (`docker run -d` then `docker rm -f`, `--workers` at a time, as a busy host
does), each giving create/start/kill/die/destroy and network events. For every
`docker_event` frame each client records time.time() when its bytes arrived minus the
frame's `timestamp`, which is the engine's own `timeNano` of the event (same host, same
clock). p50/p99 over every delivery; the server's and the clients' CPU per delivery
beside them. Target: p99 <= 100 ms.

For reference, the engine's own delay is measured in the same window: one direct
reader of the engine's `/events` stream (a thread on the Unix socket) records its
receipt time minus `timeNano` (`engine_direct_p50_ms`, `engine_direct_p99_ms`). What
the gateway adds is the difference.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import IMAGE, CpuMeter, emit, latency_ms, log, rnd, scenario_args, server, token
from wsclient import TargetSpec, collect_all, merged, ready_fleets, split


class DirectEvents(threading.Thread):
    """time.time() at receipt - timeNano for every event on the engine's own stream."""

    def __init__(self, engine: str | None = None) -> None:
        """`engine`: a unix:// URL (default: DOCKER_HOST, else the local socket)."""
        super().__init__(daemon=True)
        self.latencies: list[float] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        url = engine or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.sock.connect(url.removeprefix("unix://"))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: docker\r\n\r\n")

    def run(self) -> None:
        pending = b""
        nano = re.compile(rb'"timeNano":(\d+)')
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            now = time.time()
            pending += data
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                found = nano.search(line)
                if found:
                    self.latencies.append(now - int(found.group(1)) / 1e9)

    def stop(self) -> None:
        self.sock.close()


def churn(prefix: str, index: int) -> None:
    name = f"{prefix}{index}"
    subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, "sleep", "30"],
                   capture_output=True, timeout=60, check=True)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def main() -> None:
    args = scenario_args(__doc__, clients=500, containers=50, workers=5, procs=4)
    prefix = f"opws-bench-ev-{uuid.uuid4().hex[:6]}-"
    with server("bench_server.py") as srv:
        specs = [[TargetSpec("events", srv.port, "/ws/logs", k, token(), latency_type=b"docker_event")]
                 for k in split(args.clients, args.procs)]
        with ready_fleets(specs) as fleets:
            time.sleep(1.0)  # the gateway's engine event stream is attached
            collect_all(fleets, "events")
            direct = DirectEvents()
            direct.start()
            meter = CpuMeter(srv.pid, [f.pid for f in fleets])
            try:
                with ThreadPoolExecutor(args.workers) as pool:
                    list(pool.map(lambda i: churn(prefix, i), range(args.containers)))
            finally:
                subprocess.run(["docker", "rm", "-f", *(f"{prefix}{i}" for i in range(args.containers))],
                               capture_output=True, timeout=120)
            time.sleep(1.0)  # the last events through
            direct.stop()
            cpu = meter.read()
            data = collect_all(fleets, "events")
    got = merged(data)
    if not got.latencies_ms:
        raise RuntimeError(f"no docker_event frames received: {got.errors[:3]}")
    engine = latency_ms([x * 1000.0 for x in direct.latencies])
    out: dict[str, Any] = {
        **latency_ms(got.latencies_ms),
        "engine_direct_p50_ms": engine["p50_ms"],
        "engine_direct_p99_ms": engine["p99_ms"],
        "clients": args.clients,
        "containers": args.containers,
        "events_per_client": rnd(len(got.latencies_ms) / args.clients, 1),
        "deliveries": got.frames,
        "window_s": rnd(cpu.wall_s, 2),
        **cpu.us_per_delivery(got.frames),
        "errors": got.errors[:3],
    }
    log(f"  events {args.clients} clients: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, "
        f"max {out['max_ms']} ms (engine direct p50 {out['engine_direct_p50_ms']}, p99 "
        f"{out['engine_direct_p99_ms']} ms), {out['events_per_client']} events each, server "
        f"{out['server_cpu_us_per_delivery']} us/delivery, clients {out['client_cpu_us_per_delivery']}")
    emit(out)


if __name__ == "__main__":
    main()
