"""Keystroke-to-echo round trip: through the gateway vs a direct engine exec attach.

    .venv/bin/python bench/terminal_latency.py [--keystrokes 1000] [--block 100]

Starts a busybox container and `python -m openpanel_ws serve` in a subprocess with the
terminal rate limit raised to 1000/s (OPENPANEL_WS_RATE_LIMIT_TERMINAL=1000/s; at the
specification's 10/s, 1,000 keystrokes would take 100 s and measure the limiter, not the
path). In both paths the exec runs `stty raw -echo; exec cat`, so every byte typed is
echoed by a process in the container (as a line-editing shell does). One keystroke is
in flight at a time: send one byte, wait for its echo. The two paths alternate in blocks
so a machine-load change hits both alike; both clients run in this one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid

import aiohttp
import orjson
from common import app_server, docker_rm, docker_run, token

from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.exec import ExecProcess

RAW_CAT = "stty raw -echo; exec cat\n"
KEYS = "abcdefghijklmnopqrstuvwxyz"


class GatewayPath:
    name = "gateway"

    def __init__(self, url: str, container: str) -> None:
        self.url = url
        self.container = container
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def recv(self, timeout: float = 30.0) -> dict[str, object]:
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"gateway closed: {msg}")
        value: dict[str, object] = orjson.loads(msg.data)
        return value

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(self.url + "/ws/terminal", autoping=True)
        await self.recv()  # connected
        await self.ws.send_str(orjson.dumps({"type": "auth", "token": token()}).decode())
        assert (await self.recv())["type"] == "authenticated"
        await self.ws.send_str(orjson.dumps({"type": "open_terminal",
                                             "containerId": self.container}).decode())
        reply = await self.recv()
        assert reply["type"] == "terminal_opened", reply
        await self.write(RAW_CAT)
        await sync(self)

    async def write(self, data: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(orjson.dumps({"type": "input", "data": data}).decode())

    async def read_text(self, timeout: float = 30.0) -> str:
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == "terminal_output":
                return str(msg["data"])
            if msg["type"] == "ping":
                assert self.ws is not None
                await self.ws.send_str('{"type":"pong"}')

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.send_str('{"type":"close_terminal"}')
            with contextlib.suppress(Exception):
                while (await self.recv(10))["type"] != "terminal_closed":
                    pass
            await self.ws.close()
        await self.http.close()


class DirectPath:
    name = "direct attach"

    def __init__(self, container: str) -> None:
        self.engine = DockerEngine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        self.proc = ExecProcess(self.engine, container, "/bin/sh", f"bench-{uuid.uuid4().hex}")

    async def open(self) -> None:
        await self.proc.create()
        await self.proc.start()
        await self.proc.resize(80, 24)
        await self.write(RAW_CAT)
        await sync(self)

    async def write(self, data: str) -> None:
        self.proc.write(data.encode())

    async def read_text(self, timeout: float = 30.0) -> str:
        chunk = await asyncio.wait_for(self.proc.read(), timeout)
        if not chunk:
            raise RuntimeError("direct exec ended")
        return chunk.decode("utf-8", "replace")

    async def close(self) -> None:
        await self.proc.kill()
        self.proc.close_socket()
        await self.engine.close()


Route = GatewayPath | DirectPath


async def drain(path: Route, quiet: float = 0.5) -> None:
    """Read until nothing arrives for `quiet` seconds (prompt, the command's echo)."""
    with contextlib.suppress(TimeoutError):
        while True:
            await path.read_text(timeout=quiet)


async def sync(path: Route) -> None:
    """Drain, then wait for a unique token's echo: the path is quiet and in step."""
    await drain(path)
    marker = "SYNC" + uuid.uuid4().hex[:6]
    await path.write(marker)
    seen = ""
    while marker not in seen:
        seen += await path.read_text()


async def keystrokes(path: Route, count: int, out: list[float]) -> None:
    for i in range(count):
        key = KEYS[i % len(KEYS)]
        t0 = time.perf_counter()
        await path.write(key)
        seen = ""
        while key not in seen:
            seen += await path.read_text()
        out.append((time.perf_counter() - t0) * 1000.0)


async def round_trips(url: str, container: str, count: int, block: int,
                      warmup: int) -> dict[str, list[float]]:
    """Keystroke round trips in ms by path name: the gateway path (`url`) and the direct
    path, `warmup` uncounted keystrokes each, then `count` each in alternating blocks of
    `block` (a change of machine load hits both alike). Both paths are closed at the end."""
    paths: list[Route] = [GatewayPath(url, container), DirectPath(container)]
    results: dict[str, list[float]] = {p.name: [] for p in paths}
    try:
        for path in paths:
            await path.open()
            await keystrokes(path, warmup, [])  # warm-up, not counted
        done = 0
        while done < count:
            n = min(block, count - done)
            for path in paths:
                await keystrokes(path, n, results[path.name])
            done += n
    finally:
        for path in paths:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(path.close(), 15)
    return results


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{name:>14}: n={len(values)} median {statistics.median(ordered):.3f} ms, "
            f"p99 {p99:.3f} ms, mean {statistics.fmean(ordered):.3f} ms, max {ordered[-1]:.3f} ms")


def run(count: int, block: int, warmup: int) -> None:
    name = f"opws-bench-{uuid.uuid4().hex[:8]}"
    try:
        docker_run(name, "sh", "-c", "sleep 3600")
        with app_server({"OPENPANEL_WS_RATE_LIMIT_TERMINAL": "1000/s"}) as srv:
            results = asyncio.run(round_trips(srv.url, name, count, block, warmup))
    finally:
        docker_rm(name)
    print(f"keystroke-to-echo round trip, {count} keystrokes per path, blocks of {block}, "
          f"one in flight, {os.cpu_count()} CPUs")
    for path_name, values in results.items():
        print(summary(path_name, values))
    g, d = results[GatewayPath.name], results[DirectPath.name]
    print(f"{'overhead':>14}: median +{statistics.median(g) - statistics.median(d):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    run(args.keystrokes, args.block, args.warmup)


if __name__ == "__main__":
    main()
