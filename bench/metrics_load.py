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
import statistics
import sys
import time

import aiohttp
import orjson
from common import CpuMeter, app_server, cpu_seconds, token

from openpanel_ws import protocol
from openpanel_ws.gateways.metrics import metrics_message
from openpanel_ws.machine.metrics import MachineReader, machine_sample


def sample_cost(iterations: int) -> None:
    reader = MachineReader("/")
    prev = reader.read()
    read_us: list[float] = []
    total_us: list[float] = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        cur = reader.read()
        t1 = time.perf_counter()
        protocol.encode(metrics_message(machine_sample(prev, cur)))
        t2 = time.perf_counter()
        prev = cur
        read_us.append((t1 - t0) * 1e6)
        total_us.append((t2 - t0) * 1e6)
    frame = protocol.encode(metrics_message(machine_sample(prev, reader.read())))
    for name, values in (("read", read_us), ("read+compute+encode", total_us)):
        values.sort()
        print(f"{name}: mean {statistics.fmean(values):.0f} us, p50 {values[len(values) // 2]:.0f} us, "
              f"p99 {values[int(len(values) * 0.99)]:.0f} us ({iterations} samples)")
    print(f"frame size: {len(frame)} bytes")


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
    with app_server() as srv:
        meter = CpuMeter(srv.pid)
        await asyncio.sleep(idle_seconds)
        idle = meter.read()
        print(f"server pid {srv.pid}: idle CPU {idle.server_s / idle.wall_s * 100:.2f} % of one core")
        auth_token = token()

        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            workers = [Client() for _ in range(clients)]
            ready = asyncio.Semaphore(50)
            started = time.monotonic()
            c_connect = cpu_seconds(srv.pid)
            tasks = [asyncio.create_task(w.run(http, srv.url + "/ws/metrics", auth_token, interval, ready))
                     for w in workers]
            await asyncio.wait_for(asyncio.gather(*(w.first.wait() for w in workers)), 120)
            print(f"{clients} clients connected, authenticated, subscribed at {interval} ms and "
                  f"got a first sample in {time.monotonic() - started:.1f} s "
                  f"(server CPU {cpu_seconds(srv.pid) - c_connect:.2f} s for that)")
            await asyncio.sleep(2 * interval / 1000)  # settle
            m0 = sum(w.metrics for w in workers)
            meter.restart()
            await asyncio.sleep(seconds)
            window = meter.read()
            used, wall = window.server_s, window.wall_s
            frames = sum(w.metrics for w in workers) - m0
            print(f"window {wall:.1f} s: server CPU {used:.2f} s = {used / wall * 100:.1f} % of one core; "
                  f"{frames} metrics frames delivered ({frames / wall:.0f}/s, expected "
                  f"{clients * 1000 / interval:.0f}/s); {used / max(frames, 1) * 1e6:.1f} us CPU per frame")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


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
