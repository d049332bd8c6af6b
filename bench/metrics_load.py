"""Metrics gateway load: the cost of one sample, and server CPU for N subscribers.

    .venv/bin/python bench/metrics_load.py sample-cost [--iterations 2000]
    .venv/bin/python bench/metrics_load.py load [--clients 500] [--interval 1000] [--seconds 30]

`load` starts `python -m openpanel_ws serve` in a subprocess, connects the clients from
this process (one aiohttp session), subscribes them all at one interval and reads the
server's CPU time (utime + stime) from /proc/<pid>/stat over a measuring window, after
an idle window with the same server and no clients for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from openpanel_ws import protocol
from openpanel_ws.auth import issue_token
from openpanel_ws.gateways.metrics import metrics_message
from openpanel_ws.host.metrics import HostReader, host_sample

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sample_cost(iterations: int) -> None:
    reader = HostReader("/")
    prev = reader.read()
    read_us: list[float] = []
    total_us: list[float] = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        cur = reader.read()
        t1 = time.perf_counter()
        protocol.encode(metrics_message(host_sample(prev, cur)))
        t2 = time.perf_counter()
        prev = cur
        read_us.append((t1 - t0) * 1e6)
        total_us.append((t2 - t0) * 1e6)
    frame = protocol.encode(metrics_message(host_sample(prev, reader.read())))
    for name, values in (("read", read_us), ("read+compute+encode", total_us)):
        values.sort()
        print(f"{name}: mean {statistics.fmean(values):.0f} us, p50 {values[len(values) // 2]:.0f} us, "
              f"p99 {values[int(len(values) * 0.99)]:.0f} us ({iterations} samples)")
    print(f"frame size: {len(frame)} bytes")


def cpu_seconds(pid: int) -> float:
    # Fields after the parenthesised command name: utime and stime are 14 and 15.
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become healthy")


class Client:
    def __init__(self) -> None:
        self.metrics = 0
        self.first = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, url: str, token: str, interval: int,
                  ready: asyncio.Semaphore) -> None:
        async with ready:  # bound the connection burst
            ws = await http.ws_connect(url, max_msg_size=0)
            await ws.send_str(orjson.dumps({"type": "auth", "token": token}).decode())
            await ws.send_str(orjson.dumps({"type": "subscribe", "interval": interval}).decode())
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            if '"type":"metrics"' in data:
                self.metrics += 1
                self.first.set()
            elif '"type":"ping"' in data:  # heartbeat: answer or be closed with 4002
                await ws.send_str('{"type":"pong"}')
            elif '"type":"error"' in data:
                print("error:", data, file=sys.stderr)


async def load(clients: int, interval: int, seconds: float, idle_seconds: float) -> None:
    secret = "bench-secret-" + "x" * 32
    port = free_port()
    env = {**os.environ, "OPENPANEL_WS_JWT_SECRET": secret, "OPENPANEL_WS_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "openpanel_ws", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        c0 = cpu_seconds(proc.pid)
        await asyncio.sleep(idle_seconds)
        idle = (cpu_seconds(proc.pid) - c0) / idle_seconds
        print(f"server pid {proc.pid}: idle CPU {idle * 100:.2f} % of one core")

        token = issue_token(secret, subject="bench", roles=("admin",))
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            workers = [Client() for _ in range(clients)]
            ready = asyncio.Semaphore(50)
            started = time.monotonic()
            c_connect = cpu_seconds(proc.pid)
            tasks = [asyncio.create_task(w.run(http, base + "/ws/metrics", token, interval, ready))
                     for w in workers]
            await asyncio.wait_for(asyncio.gather(*(w.first.wait() for w in workers)), 120)
            print(f"{clients} clients connected, authenticated, subscribed at {interval} ms and "
                  f"got a first sample in {time.monotonic() - started:.1f} s "
                  f"(server CPU {cpu_seconds(proc.pid) - c_connect:.2f} s for that)")
            await asyncio.sleep(2 * interval / 1000)  # settle
            m0 = sum(w.metrics for w in workers)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            m1 = sum(w.metrics for w in workers)
            used = c1 - c0
            wall = t1 - t0
            frames = m1 - m0
            print(f"window {wall:.1f} s: server CPU {used:.2f} s = {used / wall * 100:.1f} % of one core; "
                  f"{frames} metrics frames delivered ({frames / wall:.0f}/s, expected "
                  f"{clients * 1000 / interval:.0f}/s); {used / max(frames, 1) * 1e6:.1f} us CPU per frame")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cost = sub.add_parser("sample-cost")
    cost.add_argument("--iterations", type=int, default=2000)
    run = sub.add_parser("load")
    run.add_argument("--clients", type=int, default=500)
    run.add_argument("--interval", type=int, default=1000)
    run.add_argument("--seconds", type=float, default=30.0)
    run.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.command == "sample-cost":
        sample_cost(args.iterations)
    else:
        asyncio.run(load(args.clients, args.interval, args.seconds, args.idle_seconds))


if __name__ == "__main__":
    main()
