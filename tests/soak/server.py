"""The gateway under soak, in a process of its own (so its RSS, fds and threads are its
own): the real application of `openpanel_ws.server.create_app` on 127.0.0.1, the real
engine, and a line protocol on stdin/stdout for the driver (`soak.py`):

    stdout, first line:   {"port": N}
    stdin  "sample\n"   -> stdout one JSON line (census.py: resources, objects, tables,
                           tracemalloc growth)
    stdin  "reference\n" -> the tracemalloc reference snapshot (after warm-up), then a
                           JSON line {"reference": true}
    stdin  EOF or "quit" -> the server stops (as on SIGTERM) and the process exits

    python tests/soak/server.py --secret S --state-dir DIR [--tracemalloc FRAMES]
                                [--terminal-grace SECONDS] [--audit-log FILE]

Log lines (and any traceback) go to stderr, which the driver keeps in a file and counts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import census
from aiohttp import web

from openpanel_ws.config import Settings
from openpanel_ws.server import create_app, create_runner


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(jwt_secret=args.secret, port=0, state_dir=Path(args.state_dir),
                        terminal_grace=args.terminal_grace)
    if args.audit_log:
        settings.terminal_audit_log = Path(args.audit_log)
    return settings


async def sample(app: web.Application, tracer: census.Tracer, started: float, top: int) -> dict[str, Any]:
    objects, tables = census.objects_and_tables()
    return {
        "t": round(time.monotonic() - started, 2),
        "rss_kib": census.rss_kib(),
        "fds": census.fd_count(),
        "allocator": census.allocator(),
        "tracked": census.tracked(app),
        "objects": objects,
        "tables": tables,
        "tracemalloc": tracer.sample(top),
    }


async def serve(args: argparse.Namespace) -> None:
    tracer = census.Tracer(args.tracemalloc)
    app = create_app(settings_from(args))
    runner = create_runner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out = sys.stdout.buffer
    out.write(orjson.dumps({"port": port}) + b"\n")
    out.flush()
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = (await reader.readline()).strip()
            if not line or line == b"quit":
                break
            if line == b"reference":
                tracer.mark_reference()
                reply: dict[str, Any] = {"reference": True}
            else:
                reply = await sample(app, tracer, started, args.top)
            out.write(orjson.dumps(reply) + b"\n")
            out.flush()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--tracemalloc", type=int, default=1, help="frames per trace; 0: off")
    parser.add_argument("--terminal-grace", type=float, default=60.0)
    parser.add_argument("--audit-log", default="")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
