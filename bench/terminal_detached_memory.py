"""Memory cost of a detached terminal session (docs/terminal.md "Sessions").

    .venv/bin/python bench/terminal_detached_memory.py [--sessions 40]

Starts the gateway in this process, opens N terminals in one busybox container, drops
every socket (the sessions stay, detached) and reports the growth of the Python heap
(tracemalloc) and of the process RSS per session: first with only a prompt in each ring,
then after each shell printed 1 MiB while detached (the ring keeps its newest 256 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path

import aiohttp
import orjson
import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import SECRET, make_token
from openpanel_ws.config import Settings
from openpanel_ws.server import GATEWAYS_KEY, create_app

IMAGE = "openpanel-ws-test:busybox"


async def open_and_drop(port: int, container: str, session: aiohttp.ClientSession) -> None:
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws/terminal")
    await ws.receive()  # connected
    await ws.send_str(orjson.dumps({"type": "auth", "token": make_token("bench")}).decode())
    await ws.receive()  # authenticated
    await ws.send_str(orjson.dumps({"type": "open_terminal", "containerId": container}).decode())
    while True:
        msg = orjson.loads((await ws.receive()).data)
        if msg["type"] == "terminal_opened":
            break
    await ws.send_str(orjson.dumps(
        {"type": "input", "data": "while [ ! -e /tmp/go ]; do usleep 100000; done; "
                  "head -c 1048576 /dev/zero | tr '\\0' x\n"}).decode())
    await asyncio.sleep(0.3)
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def main(count: int) -> None:
    name = f"opws-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, "sleep", "3600"],
                   check=True, capture_output=True)
    settings = Settings(jwt_secret=SECRET, port=0, terminal_max_per_user=count + 1,
                        state_dir=Settings().state_dir / "bench")
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway = app[GATEWAYS_KEY]["terminal"]
    proc = psutil.Process()
    try:
        async with aiohttp.ClientSession() as warm:
            await open_and_drop(port, name, warm)  # imports, caches: not per session
        await asyncio.sleep(1)
        tracemalloc.start()
        heap0, rss0 = heap(), proc.memory_info().rss
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                await open_and_drop(port, name, session)
        while gateway.detached_terminals < count + 1:
            await asyncio.sleep(0.1)
        heap1, rss1 = heap(), proc.memory_info().rss
        subprocess.run(["docker", "exec", name, "touch", "/tmp/go"], check=True)
        await asyncio.sleep(8)  # each shell prints 1 MiB into its ring
        heap2, rss2 = heap(), proc.memory_info().rss
        rings = gateway.ring_bytes
        print(f"{count} detached sessions")
        print(f"  idle (prompt only): heap {(heap1 - heap0) / count / 1024:.1f} KiB/session, "
              f"RSS {(rss1 - rss0) / count / 1024:.1f} KiB/session")
        print(f"  full ring:          heap {(heap2 - heap0) / count / 1024:.1f} KiB/session, "
              f"RSS {(rss2 - rss0) / count / 1024:.1f} KiB/session "
              f"(ring holds {max(rings) / 1024:.0f} KiB of text)")
    finally:
        await runner.cleanup()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=40)
    asyncio.run(main(parser.parse_args().sessions))
