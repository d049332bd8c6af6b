"""The aiohttp edge: one application, four WebSocket endpoints, health checks.

All protocol decisions are made by `Connection` (sans-I/O); this module moves bytes
between it, the socket, the per-client writer and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from openpanel_ws import protocol
from openpanel_ws.clock import ConnectionClock, TimerWheel
from openpanel_ws.config import ORIGINS_SETTING, Settings, normalize_origin
from openpanel_ws.connection import (
    Action,
    Authenticated,
    Close,
    Connection,
    Dispatch,
    LifecycleConfig,
    Send,
    State,
)
from openpanel_ws.gateways.base import Gateway, Session
from openpanel_ws.hygiene import GatewayRunner, HandshakeGuard
from openpanel_ws.outbound import OP_PONG, ClientWriter, WriteScheduler, control_frame
from openpanel_ws.protocol import CloseCode, ErrorCode, Message, ProtocolError
from openpanel_ws.sendqueue import QueueLimits
from openpanel_ws.services import Services
from openpanel_ws.web.routes import register as register_console

__all__ = [
    "CLIENTS_KEY",
    "CLIENT_FILES",
    "GATEWAYS_KEY",
    "GUARD_KEY",
    "SERVICES_KEY",
    "ClientHandler",
    "RefusedOrigins",
    "RouteHandler",
    "client_file_handler",
    "create_app",
    "create_runner",
    "default_gateways",
    "healthz",
    "new_client_id",
    "new_scheduler",
    "origin_allowed",
    "origin_refused",
    "readyz",
]

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("services", Services)
GATEWAYS_KEY = web.AppKey("gateways", dict)
# Sessions of open connections (added and removed by ClientHandler.handle); a plain set:
# a WeakSet costs a weakref per connection.
CLIENTS_KEY = web.AppKey("clients", set)
GUARD_KEY = web.AppKey("handshake_guard", HandshakeGuard)

_client_ids = itertools.count(1)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_client_id() -> str:
    # Unique per process; the random part keeps ids from repeating across restarts.
    return f"client-{os.getpid():x}{next(_client_ids):x}-{os.urandom(3).hex()}"


def default_gateways(services: Services) -> list[Gateway[Any]]:
    from openpanel_ws.gateways.containers import ContainersGateway
    from openpanel_ws.gateways.logs import LogsGateway
    from openpanel_ws.gateways.metrics import MetricsGateway
    from openpanel_ws.gateways.terminal import TerminalGateway

    return [
        ContainersGateway(services),
        LogsGateway(services),
        MetricsGateway(services),
        TerminalGateway(services),
    ]


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str],
                   scheme: str | None = None) -> bool:
    """OWASP CSWSH: no Origin (non-browser) and same-origin pass; others need the list.

    Same origin means same host and, when `scheme` (the server's: http/https) is given,
    the matching scheme: an https:// page is not the origin of an http:// server."""
    if origin is None:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    with contextlib.suppress(ValueError):  # listed values compare as browsers send them
        normal = normalize_origin(origin)
        if any(a != "*" and normalize_origin(a) == normal for a in allowed):
            return True
    try:
        parts = urlsplit(origin)
        netloc = parts.netloc
    except ValueError:  # e.g. "http://[::1": not an origin, so not ours either
        return False
    if scheme is not None:
        expected = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme.lower())
        if parts.scheme.lower() != expected:
            return False
    return bool(host) and netloc.lower() == (host or "").lower()


class RefusedOrigins:
    """Logs a refused Origin at INFO, at most once per origin per `period` seconds, so
    an operator learns which setting to change without a flood (docs/protocol.md "Origin")."""

    MAX_REMEMBERED = 1024

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}

    def should_log(self, origin: str, now: float) -> bool:
        last = self._last.get(origin)
        if last is not None and now - last < self.period:
            return False
        if len(self._last) >= self.MAX_REMEMBERED:
            self._last = {o: t for o, t in self._last.items() if now - t < self.period}
            if len(self._last) >= self.MAX_REMEMBERED:
                return False  # a storm of distinct origins: stay quiet rather than grow
        self._last[origin] = now
        return True


def origin_refused(request: web.Request, origin: str, allowed: list[str],
                   refused: RefusedOrigins) -> web.Response:
    origin = origin[:256]  # a header is the client's: bounded, and printed with repr below
    if refused.should_log(origin, time.monotonic()):
        shown = origin if origin.isprintable() else repr(origin)
        log.info("refused WebSocket handshake on %s from Origin %s: not same-origin and not in "
                 "%s (now: %s)", request.path, shown, ORIGINS_SETTING,
                 ",".join(allowed) if allowed else "empty")
    return web.json_response({
        "error": "origin not allowed",
        "origin": origin,
        "setting": ORIGINS_SETTING,
        "message": f"Origin {origin} is not allowed; add it to {ORIGINS_SETTING} "
                   "(comma-separated scheme://host[:port])",
    }, status=403)


class ClientHandler:
    """Runs one WebSocket connection for one gateway."""

    def __init__(self, gateway: Gateway[Any], services: Services, clients: set[Session[Any]],
                 scheduler: WriteScheduler | None = None, wheel: TimerWheel | None = None,
                 refused: RefusedOrigins | None = None) -> None:
        self.gateway = gateway
        self.refused = refused or RefusedOrigins()
        self.services = services
        self.settings: Settings = services.settings
        self.clients = clients
        self.scheduler = scheduler or new_scheduler(self.settings)
        self.wheel = wheel or TimerWheel()
        self.lifecycle = LifecycleConfig(
            rate_limit=self.settings.rate_limit_for(gateway.name),
            auth_timeout=self.settings.auth_timeout,
            heartbeat_interval=self.settings.heartbeat_interval,
            flood_threshold=self.settings.flood_threshold,
            flood_window=self.settings.flood_window,
            jwt_leeway=self.settings.jwt_leeway,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.host, self.settings.allowed_origins, request.scheme):
            assert origin is not None
            return origin_refused(request, origin, self.settings.allowed_origins, self.refused)
        ws = web.WebSocketResponse(
            compress=False,
            autoping=False,  # protocol pongs count as heartbeat answers: handle them here
            # The closing handshake is the writer's (docs/protocol.md, "Outbound path").
            autoclose=False,
            # aiohttp refuses a message of exactly max_msg_size: the documented limit is
            # the largest message accepted (docs/protocol.md "Hostile clients").
            max_msg_size=self.settings.max_message_bytes + 1,
        )
        guard = request.app.get(GUARD_KEY)
        try:
            stream = await ws.prepare(request)
        except (ConnectionError, OSError):
            # The client reset the connection mid-handshake: one throttled line, no traceback.
            if guard is not None:
                guard.note("reset")
            # A plain response: aiohttp's own write of it fails quietly on the dead socket.
            return web.Response(status=400)
        if request.transport is None or request.transport.is_closing():
            if guard is not None:
                guard.note("reset")
            return ws
        if guard is not None:
            guard.upgraded(request.protocol)
        # Every frame of ours is written straight to this transport (docs/protocol.md,
        # "Outbound path"); asyncio sets TCP_NODELAY on accepted TCP sockets.
        writer = ClientWriter(ws, stream, self.scheduler)  # type: ignore[arg-type]
        client_id = new_client_id()
        session: Session[Any] = Session(client_id, writer, request.remote or "")
        conn = Connection(client_id, self.lifecycle, self.services.verifier.verify, time.monotonic())
        self.clients.add(session)
        session.send(protocol.connected_message(client_id, self.settings.auth_timeout))
        clock = ConnectionClock(conn, session)
        self.wheel.add(clock)
        lanes = _Lanes(self, session)
        try:
            await self._read_loop(ws, conn, session, clock, lanes, guard, request)
        except (ConnectionError, OSError):
            pass  # the socket went away under us: nothing to report
        finally:
            writer.reader_done()
            self.wheel.remove(clock)
            # Requests already running finish (bounded by the engine timeout) before the
            # gateway releases the session; queued ones are dropped.
            await lanes.close()
            self.clients.discard(session)
            if conn.state is State.OPEN or session.principal is not None:
                try:
                    await self.gateway.on_disconnect(session)
                except Exception:
                    log.exception("%s: on_disconnect failed", self.gateway.name)
            conn.close()
            if not writer.closing:
                writer.close(CloseCode.NORMAL, "")
            try:
                await asyncio.wait_for(writer.wait_closed(), self.settings.send_timeout + 1)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
        return ws

    async def _read_loop(self, ws: web.WebSocketResponse, conn: Connection, session: Session[Any],
                         clock: ConnectionClock, lanes: _Lanes, guard: HandshakeGuard | None,
                         request: web.Request) -> None:
        # No local outlives its message: an idle connection must not keep the last one
        # (the auth message holds the token) alive in this frame while it waits.
        while not session.closed:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._perform(conn.receive_text(msg.data, time.monotonic()),
                                    conn, session, clock, lanes, guard, request)
            elif msg.type is WSMsgType.BINARY:
                await self._perform(conn.receive_binary(time.monotonic()),
                                    conn, session, clock, lanes, guard, request)
            elif msg.type is WSMsgType.PING:
                conn.receive_ping_frame()
                # In order with our data frames, through the same path (never mid-frame).
                session.writer.send(control_frame(OP_PONG, msg.data))
            elif msg.type is WSMsgType.PONG:
                conn.receive_pong_frame()
            elif msg.type is WSMsgType.CLOSE:
                session.writer.peer_closed(msg.data)
                return
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 is sent by aiohttp itself)
                return
            del msg

    async def _perform(self, actions: list[Action], conn: Connection, session: Session[Any],
                       clock: ConnectionClock, lanes: _Lanes, guard: HandshakeGuard | None,
                       request: web.Request) -> None:
        for action in actions:
            if isinstance(action, Send):
                session.send(action.message)
            elif isinstance(action, Close):
                session.close(action.code, action.reason)
            elif isinstance(action, Authenticated):
                session.principal = action.principal
                if clock.slot != -1:
                    self.wheel.add(clock)  # the token's expiry is a deadline too
                if action.first:
                    if guard is not None:
                        guard.authenticated(request.protocol)
                    await self.run_guarded(session, self.gateway.on_authenticated(session))
                else:
                    # Same user, new claims: what they no longer allow ends now.
                    await self.run_guarded(session, self.gateway.on_principal_changed(session))
            elif isinstance(action, Dispatch):
                # Never awaited here: a slow request must not hold up the connection's
                # other messages. Requests of one lane (e.g. one subscription) stay in order.
                lanes.submit(self.gateway.lane(action.message), action.message)

    async def run_guarded(self, session: Session[Any], work: object) -> None:
        """Run gateway code: a ProtocolError becomes an error message, anything else
        INTERNAL_ERROR; the connection and the server stay up either way."""
        try:
            await work  # type: ignore[misc]
        except ProtocolError as exc:
            session.send(exc.to_message())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: unexpected error handling a message", self.gateway.name)
            session.error(ErrorCode.INTERNAL_ERROR, protocol.INTERNAL_ERROR_MESSAGE)


class _Lanes:
    """Serial lanes of one connection: messages of one lane run in arrival order, lanes
    run concurrently (docs/protocol.md "Hostile clients"). The queue map and task set are
    made on the first message: an idle connection holds only this object."""

    __slots__ = ("_closed", "_handler", "_queues", "_session", "_tasks")

    def __init__(self, handler: ClientHandler, session: Session[Any]) -> None:
        self._handler = handler
        self._session = session
        self._queues: dict[str, deque[Message]] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        self._closed = False

    def submit(self, lane: str, message: Message) -> None:
        if self._closed:
            return
        if self._queues is None or self._tasks is None:
            self._queues, self._tasks = {}, set()
        queue = self._queues.get(lane)
        if queue is not None:
            queue.append(message)
            return
        queue = self._queues[lane] = deque([message])
        task = asyncio.get_running_loop().create_task(self._drain(lane, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, lane: str, queue: deque[Message]) -> None:
        handler, session = self._handler, self._session
        try:
            while queue and not self._closed:
                await handler.run_guarded(session, handler.gateway.dispatch(session, queue[0]))
                queue.popleft()
        finally:
            if self._queues is not None:
                self._queues.pop(lane, None)

    async def close(self) -> None:
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks))


# The official JS client, shipped inside the package (a copy of clients/js/ kept
# identical by tests/unit/test_js_client_copy.py), so any install can serve it.
CLIENT_FILES = {
    "/client/openpanel-ws.js": ("openpanel-ws.js", "text/javascript"),
    "/client/openpanel-ws.d.ts": ("openpanel-ws.d.ts", "application/typescript"),
}


def client_file_handler(name: str, content_type: str) -> RouteHandler:
    body = (resources.files("openpanel_ws") / "static" / "client" / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {
            "ETag": etag,
            "Cache-Control": "no-cache",  # revalidate: a server upgrade ships a new client
            # A static public file: a panel on another origin may `import` it.
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return handler


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    if await services.engine.ping():
        return web.json_response({"status": "ready", "engine": services.engine.docker_host})
    return web.json_response(
        {"status": "unavailable", "reason": "Docker engine does not answer /_ping",
         "engine": services.engine.docker_host},
        status=503,
    )


def new_scheduler(settings: Settings) -> WriteScheduler:
    return WriteScheduler(QueueLimits(settings.send_queue_max, settings.send_queue_max_bytes),
                          settings.send_timeout)


def create_app(settings: Settings, gateways: list[Gateway[Any]] | None = None,
               services: Services | None = None) -> web.Application:
    services = services or Services.from_settings(settings)
    app = web.Application()
    app[SERVICES_KEY] = services
    gateway_list = gateways if gateways is not None else default_gateways(services)
    app[GATEWAYS_KEY] = {g.name: g for g in gateway_list}
    clients: set[Session[Any]] = set()
    app[CLIENTS_KEY] = clients
    guard = HandshakeGuard(settings.handshake_timeout, settings.max_unauthenticated,
                           settings.max_unauthenticated_per_ip)
    app[GUARD_KEY] = guard
    # One write scheduler per server: the per-loop-turn flush and the stall watchdog.
    scheduler = new_scheduler(settings)
    wheel = TimerWheel()  # every connection's clock (auth timeout, heartbeat)
    refused = RefusedOrigins()  # shared: one log line per origin per minute, whatever the path
    for gateway in gateway_list:
        app.router.add_get(gateway.path,
                           ClientHandler(gateway, services, clients, scheduler, wheel, refused).handle)
    for path, (name, content_type) in CLIENT_FILES.items():
        app.router.add_get(path, client_file_handler(name, content_type))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    register_console(app, services)  # the web console: /, /static/…, /api/containers

    async def on_startup(app: web.Application) -> None:
        for gateway in gateway_list:
            await gateway.start()

    async def on_shutdown(app: web.Application) -> None:
        # Every client gets 1001; then each gateway releases its upstreams.
        for session in list(clients):
            session.close(CloseCode.GOING_AWAY, protocol.SHUTDOWN_REASON)
        waits = [s.writer.wait_closed() for s in list(clients)]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5)
        for gateway in gateway_list:
            with contextlib.suppress(Exception):
                await gateway.stop()

    async def on_cleanup(app: web.Application) -> None:
        guard.close()
        scheduler.stop()
        wheel.stop()
        await services.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def create_runner(app: web.Application, **kwargs: object) -> web.AppRunner:
    """The runner to serve `app` with: its server carries the handshake guard."""
    return GatewayRunner(app, app.get(GUARD_KEY), **kwargs)
