"""The ceiling: a bare aiohttp WebSocket server broadcasting pre-encoded bytes.

    .venv/bin/python bench/baseline_server.py --port PORT

What aiohttp can do with nothing of ours in the way: no lifecycle, no JWT check (any
`auth` message is answered `authenticated` so the same clients work unchanged), no
per-client queue or writer task. `POST /bench/publish?count=N&size=200&burst=B` builds
the same 200-byte messages as the gateway's publisher (each encoded once with orjson),
B at a time, and sends each group to every client in turn with
`await ws.send_frame(frame, WSMsgType.TEXT)` (aiohttp's own flow control makes
`send_frame` wait when a client's transport buffer is over its high-water mark): the
same grouping of frames per socket as the gateway's writers get, with no queue and no
task switch. This is the library's best case for that broadcast; it is not tuned down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import orjson
from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import bench_message
from common import server_start

CLIENTS = web.AppKey("clients", set)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    clients: set[web.WebSocketResponse] = request.app[CLIENTS]
    await ws.send_frame(orjson.dumps({"type": "connected"}), WSMsgType.TEXT)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and '"auth"' in msg.data:
                await ws.send_frame(orjson.dumps({"type": "authenticated"}), WSMsgType.TEXT)
                clients.add(ws)
    finally:
        clients.discard(ws)
    return ws


async def publish_handler(request: web.Request) -> web.Response:
    clients: set[web.WebSocketResponse] = request.app[CLIENTS]
    count = int(request.query.get("count", "1000"))
    size = int(request.query.get("size", "200"))
    burst = int(request.query.get("burst", "1"))
    started = time.monotonic()
    sent = 0
    text = WSMsgType.TEXT
    for first in range(0, count, burst):
        frames = [orjson.dumps(bench_message(seq, size)) for seq in range(first, min(count, first + burst))]
        for ws in list(clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                for frame in frames:
                    await ws.send_frame(frame, text)
                    sent += 1
    return web.json_response({"queued": sent, "sessions": len(clients),
                              "seconds": time.monotonic() - started})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    port = server_start(__doc__.splitlines()[0])
    app = web.Application()
    app[CLIENTS] = set()
    app.router.add_get("/ws/bench", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/bench/publish", publish_handler)

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    asyncio.run(run())
    os._exit(0)


if __name__ == "__main__":
    main()
