"""The gateway under test: the real application plus a test-only publisher hook.

    .venv/bin/python bench/bench_server.py --port PORT

`create_app(settings, gateways=default_gateways(services) + [BenchPublisherGateway])`:
the four real gateways unchanged, and `/ws/bench`, a gateway whose only job is to fan
messages out exactly like the events fan-out of `/ws/logs` does: every message is
encoded once (`protocol.encode`), framed once, and the same bytes are queued to every
authenticated session (`Session.send_frame`), through each client's own bounded
queue (`openpanel_ws.outbound.ClientWriter`, written through once per loop turn). The
lifecycle (welcome, JWT auth, heartbeat, rate limit) is the shared one of every gateway.

`POST /bench/publish?count=N&size=200&burst=B` publishes N messages of `size` bytes
each to every authenticated `/ws/bench` client and answers when all are queued. After
every B messages it yields to the event loop (a source between two upstream reads).
Like a producer that can pause its source (the terminal gateway's output), it waits
while a client's backlog is over half of the slow-consumer bound, so a large N never
cuts a client off with 1013.

Settings come from the environment as for `openpanel-ws serve` (OPENPANEL_WS_*).
BENCH_PROFILE=/path/file.prof writes a cProfile of the run (development aid).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import server_start

from openpanel_ws import protocol
from openpanel_ws.config import load_settings
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.outbound import text_frame
from openpanel_ws.ratelimit import RateLimit
from openpanel_ws.server import GATEWAYS_KEY, create_app, default_gateways
from openpanel_ws.services import Services

# Backpressure is checked every BACKLOG_CHECK messages (a loop over every session: not
# something the real fan-outs do per message, so not charged to every message here).
BACKLOG_CHECK = 64


def bench_message(seq: int, size: int) -> dict[str, Any]:
    """A `bench` message whose encoding is exactly `size` bytes (size >= 60)."""
    message: dict[str, Any] = {"type": "bench", "seq": seq, "timestamp": protocol.rfc3339(), "data": ""}
    pad = size - len(protocol.encode(message))
    message["data"] = "x" * max(0, pad)
    return message


class BenchPublisherGateway(Gateway):
    name = "bench"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.sessions: set[Session] = set()

    def handlers(self) -> dict[str, Handler]:
        return {"publish": self._publish_message}

    async def on_authenticated(self, session: Session) -> None:
        self.sessions.add(session)

    async def on_disconnect(self, session: Session) -> None:
        self.sessions.discard(session)

    async def _publish_message(self, session: Session, msg: dict[str, Any]) -> None:
        await self.publish(int(msg.get("count", 1)), int(msg.get("size", 200)), int(msg.get("burst", 1)))

    async def publish(self, count: int, size: int, burst: int) -> int:
        """Encode each message once; queue the same bytes to every session.

        After every `burst` messages the publisher yields to the event loop, as a
        source does between two reads of its upstream (one engine event per read: 1;
        a chunk of lines under load: more), and waits while a client's backlog is over
        half of the slow-consumer bound."""
        sent = 0
        for seq in range(count):
            frame = text_frame(protocol.encode(bench_message(seq, size)))
            for session in list(self.sessions):
                if session.send_frame(frame):
                    sent += 1
            if seq % burst == burst - 1:
                await asyncio.sleep(0)
            if seq % BACKLOG_CHECK == BACKLOG_CHECK - 1:
                for session in list(self.sessions):
                    if session.writer.backlog >= 0.5:
                        await session.writer.wait_backlog_below(0.5)
        return sent


async def publish_handler(request: web.Request) -> web.Response:
    gateway: BenchPublisherGateway = request.app[GATEWAYS_KEY]["bench"]
    count = int(request.query.get("count", "1000"))
    size = int(request.query.get("size", "200"))
    burst = int(request.query.get("burst", "1"))
    started = time.monotonic()
    queued = await gateway.publish(count, size, burst)
    return web.json_response({"queued": queued, "sessions": len(gateway.sessions),
                              "seconds": time.monotonic() - started})


def main() -> None:
    port = server_start(__doc__.splitlines()[0])
    settings = load_settings(overrides={"host": "127.0.0.1", "port": port})
    # Settings.rate_limit_for() is looked up by gateway name; the bench clients only
    # authenticate and answer heartbeats, so the limit is that of the logs gateway.
    settings.rate_limit_bench = RateLimit(100, 60.0)  # type: ignore[attr-defined]
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    services = Services.from_settings(settings)
    app = create_app(settings, gateways=[*default_gateways(services), BenchPublisherGateway(services)],
                     services=services)
    app.router.add_post("/bench/publish", publish_handler)

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    profile_path = os.environ.get("BENCH_PROFILE")
    if profile_path:  # development aid: cProfile of the whole server run
        import cProfile

        with cProfile.Profile() as profiler:
            asyncio.run(run())
        profiler.dump_stats(profile_path)
    else:
        asyncio.run(run())
    os._exit(0)


if __name__ == "__main__":
    main()
