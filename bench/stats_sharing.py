"""What container stats viewers cost the engine: 100 clients vs 1, one shared stream each.

    .venv/bin/python bench/stats_sharing.py [--containers 10] [--clients 100] [--seconds 20]
        [--interval 1000] [--rounds 1] [--settle 35] [--direct 0]

Starts N busybox containers (`sleep`), then `python -m openpanel_ws serve` in a
subprocess (OPENPANEL_WS_JWT_SECRET set), then, in another process, the WebSocket
clients, each subscribing to the stats of every container. For each phase it reads
the CPU time (utime + stime, /proc/<pid>/stat) of dockerd + containerd, and of the
gateway server, over the measuring window:

  idle     no clients (the engine's own background)
  one      1 client  x N containers
  many     M clients x N containers (M x N subscriptions, still N engine streams)
  direct   optional: K viewers per container each opening its own engine stats stream
           (what per-viewer upstreams would cost), with --direct K

The containers are removed at the end. Other work on the engine adds noise: compare
phases of one run, and repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from common import app_server, cpu_seconds, docker_rm, docker_run, engine_pids, token


def measure(seconds: float, server_pid: int) -> dict[str, float]:
    """CPU seconds used by the engine processes and the server over `seconds`."""
    pids = engine_pids()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    server_before = cpu_seconds(server_pid)
    time.sleep(seconds)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if engine_pids() != pids:
        print("  (engine restarted during the window: numbers unreliable)", file=sys.stderr)
    used = {name: after[name] - before[name] for name in pids}
    return {
        # the server's connections to the engine socket at the end of the window
        "engine_connections": float(len(psutil.Process(server_pid).net_connections(kind="unix"))),
        "engine_cpu_s": sum(used.values()),
        **{f"{name}_cpu_s": value for name, value in used.items()},
        "server_cpu_s": cpu_seconds(server_pid) - server_before,
    }


def touch(path: str) -> None:
    Path(path).write_text("ready")


def exists(path: str) -> bool:
    return os.path.exists(path)


# --- client process ----------------------------------------------------------------------


async def run_clients(port: int, auth_token: str, containers: list[str], count: int, interval: int,
                      settle: float, ready_file: str, stop_file: str) -> None:
    """Connect `count` clients, subscribe each to every container, count frames."""
    received = 0
    url = f"http://127.0.0.1:{port}/ws/containers"
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        sockets = []
        for _ in range(count):
            ws = await http.ws_connect(url, max_msg_size=0)
            await ws.receive_json()  # connected
            await ws.send_json({"type": "auth", "token": auth_token})
            msg = await ws.receive_json()
            assert msg["type"] == "authenticated", msg
            sockets.append(ws)

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal received
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and '"type":"stats"' in msg.data:
                    received += 1
                elif msg.type is aiohttp.WSMsgType.TEXT and '"type":"ping"' in msg.data:
                    await ws.send_str('{"type":"pong"}')

        async def subscribe(ws: aiohttp.ClientWebSocketResponse) -> None:
            for name in containers:
                await ws.send_json({"type": "subscribe_stats", "containerId": name, "interval": interval})
                await asyncio.sleep(0.11)  # stay under 10 messages/s per connection

        tasks = [asyncio.create_task(reader(ws)) for ws in sockets]
        await asyncio.gather(*(subscribe(ws) for ws in sockets))
        # Past every first sample, and past the idle keep-alive connections the burst
        # of subscribe-time inspects left in the server's engine pool (aiohttp closes
        # them 15-30 s after use): the window then sees only the steady state.
        await asyncio.sleep(settle)
        touch(ready_file)
        start = received
        started = time.monotonic()
        while not exists(stop_file):
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        print(json.dumps({"stats_frames": received - start, "seconds": round(elapsed, 2)}))
        for task in tasks:
            task.cancel()
        for ws in sockets:
            await ws.close()


async def run_direct(containers: list[str], viewers: int, ready_file: str, stop_file: str) -> None:
    """`viewers` engine stats streams per container, as per-viewer upstreams would open."""
    conn = aiohttp.UnixConnector(path="/var/run/docker.sock", limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    samples = 0
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:

        async def one(name: str) -> None:
            nonlocal samples
            async with http.get(f"http://docker/containers/{name}/stats", params={"stream": "1"}) as resp:
                async for _ in resp.content:
                    samples += 1

        tasks = [asyncio.create_task(one(name)) for name in containers for _ in range(viewers)]
        await asyncio.sleep(3)
        touch(ready_file)
        start = samples
        while not exists(stop_file):
            await asyncio.sleep(0.1)
        print(json.dumps({"engine_samples": samples - start}))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def report(label: str, r: dict[str, Any], seconds: float) -> None:
    extra = ""
    if "stats_frames" in r:
        extra = f", {r['stats_frames']:.0f} stats frames to clients"
    if "engine_samples" in r:
        extra = f", {r['engine_samples']:.0f} engine samples read"
    pct = r["engine_cpu_s"] / seconds * 100
    split = f"dockerd {r.get('dockerd_cpu_s', 0):.2f} + containerd {r.get('containerd_cpu_s', 0):.2f}"
    print(f"  {label:>6}: engine {r['engine_cpu_s']:.2f} CPU-s ({split}; {pct:.1f} % of one CPU), "
          f"server {r['server_cpu_s']:.2f} CPU-s, engine connections {r['engine_connections']:.0f}"
          f"{extra}", flush=True)


# --- orchestration -----------------------------------------------------------------------


def phase(label: str, args: list[str], seconds: float, server_pid: int) -> dict[str, Any]:
    tmp = Path(f"/tmp/opws-bench-{uuid.uuid4().hex[:8]}")
    ready, stop = f"{tmp}.ready", f"{tmp}.stop"
    proc = subprocess.Popen([sys.executable, __file__, *args, "--ready-file", ready, "--stop-file", stop],
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not Path(ready).exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{label}: client process failed ({proc.returncode})")
            time.sleep(0.1)
        result = measure(seconds, server_pid)
        Path(stop).write_text("stop")
        out, _ = proc.communicate(timeout=60)
        result.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        if proc.poll() is None:
            proc.kill()
        for path in (ready, stop):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    for mode in ("_clients", "_direct"):
        p = sub.add_parser(mode)
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--token", default="")
        p.add_argument("--names", required=True)
        p.add_argument("--count", type=int, default=1)
        p.add_argument("--interval", type=int, default=1000)
        p.add_argument("--settle", type=float, default=35)
        p.add_argument("--ready-file", required=True)
        p.add_argument("--stop-file", required=True)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settle", type=float, default=35, help="seconds after subscribing before measuring")
    parser.add_argument("--direct", type=int, default=0, help="viewers per container, direct engine streams")
    args = parser.parse_args()

    if args.mode == "_clients":
        asyncio.run(run_clients(args.port, args.token, args.names.split(","), args.count, args.interval,
                                args.settle, args.ready_file, args.stop_file))
        return
    if args.mode == "_direct":
        asyncio.run(run_direct(args.names.split(","), args.count, args.ready_file, args.stop_file))
        return

    names = [f"opws-bench-{uuid.uuid4().hex[:8]}" for _ in range(args.containers)]
    try:
        for name in names:
            docker_run(name, "sleep", "3600")
        with app_server() as server:
            common = ["--port", str(server.port), "--token", token(), "--names", ",".join(names),
                      "--interval", str(args.interval), "--settle", str(args.settle)]
            print(f"{args.containers} containers, {args.seconds:g} s windows, interval {args.interval} ms, "
                  f"{os.cpu_count()} CPUs, {args.rounds} round(s)", flush=True)
            rounds: dict[str, list[dict[str, Any]]] = {}
            for n in range(args.rounds):
                results: dict[str, dict[str, Any]] = {}
                results["idle"] = measure(args.seconds, server.pid)
                # Alternate the order so drifting background load on the engine evens out.
                order = ["one", "many"] if n % 2 == 0 else ["many", "one"]
                for label in order:
                    count = 1 if label == "one" else args.clients
                    results[label] = phase(label, ["_clients", *common, "--count", str(count)],
                                           args.seconds, server.pid)
                if args.direct:
                    results["direct"] = phase("direct", ["_direct", "--names", ",".join(names), "--count",
                                                         str(args.direct)], args.seconds, server.pid)
                print(f"round {n + 1}:")
                for label, r in results.items():
                    rounds.setdefault(label, []).append(r)
                    report(label, r, args.seconds)
            if args.rounds > 1:
                print("median over rounds:")
                for label, runs in rounds.items():
                    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                    report(label, median, args.seconds)
    finally:
        docker_rm(*names)


if __name__ == "__main__":
    main()
