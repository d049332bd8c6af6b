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
import weakref
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from openpanel_ws import protocol
from openpanel_ws.config import ORIGINS_SETTING, Settings, normalize_origin
from openpanel_ws.connection import (
    Action,
    Authenticated,
    Close,
    Connection,
    Dispatch,
    LifecycleConfig,
    PingFrame,
    Send,
    State,
)
from openpanel_ws.gateways.base import Gateway, Session
from openpanel_ws.outbound import ClientWriter
from openpanel_ws.protocol import CloseCode, ErrorCode, ProtocolError
from openpanel_ws.services import Services
from openpanel_ws.web.routes import register as register_console

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("services", Services)
GATEWAYS_KEY = web.AppKey("gateways", dict)
CLIENTS_KEY = web.AppKey("clients", weakref.WeakSet)

_client_ids = itertools.count(1)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_client_id() -> str:
    # Unique per process; the random part keeps ids from repeating across restarts.
    return f"client-{os.getpid():x}{next(_client_ids):x}-{os.urandom(3).hex()}"


def default_gateways(services: Services) -> list[Gateway]:
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


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """OWASP CSWSH: no Origin (non-browser) and same-origin pass; others need the list."""
    if origin is None:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    with contextlib.suppress(ValueError):
        normal = normalize_origin(origin)
        if any(a != "*" and normalize_origin(a) == normal for a in allowed):
            return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[::1": not an origin, so not ours either
        return False
    return bool(host) and netloc.lower() == (host or "").lower()


class RefusedOrigins:
    """Logs a refused Origin at INFO, at most once per origin per `period` seconds, so
    an operator learns which setting to change without a flood (docs/protocol.md)."""

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


def send_ping_frame(ws: web.WebSocketResponse) -> None:
    """One protocol-level ping frame (docs/protocol.md, "Heartbeat"). A control frame is
    written to the transport at once, whole, so it never splits a queued data frame."""
    if ws.closed:
        return
    task = asyncio.ensure_future(ws.ping())
    _ping_tasks.add(task)
    task.add_done_callback(_ping_done)


_ping_tasks: set[asyncio.Future[None]] = set()


def _ping_done(task: asyncio.Future[None]) -> None:
    _ping_tasks.discard(task)
    if not task.cancelled():
        task.exception()  # a closing socket: nothing to do, the read loop sees the close


class _Clock:
    """Drives `Connection.tick` with one timer handle (cheaper than a task per client)."""

    __slots__ = ("_conn", "_handle", "_loop", "_session", "_ws")

    def __init__(self, conn: Connection, session: Session, ws: web.WebSocketResponse) -> None:
        self._conn = conn
        self._session = session
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = max(0.0, self._conn.next_deadline() - time.monotonic())
        self._handle = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        # tick() yields only Send, PingFrame and Close, all synchronous.
        for action in self._conn.tick(time.monotonic()):
            if isinstance(action, Send):
                self._session.send(action.message)
            elif isinstance(action, PingFrame):
                send_ping_frame(self._ws)
            elif isinstance(action, Close):
                self._session.close(action.code, action.reason)
        if self._conn.state is not State.CLOSED and not self._session.closed:
            self._arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class ClientHandler:
    """Runs one WebSocket connection for one gateway."""

    def __init__(self, gateway: Gateway, services: Services, clients: weakref.WeakSet[Session],
                 refused: RefusedOrigins | None = None) -> None:
        self.gateway = gateway
        self.refused = refused or RefusedOrigins()
        self.services = services
        self.settings: Settings = services.settings
        self.clients = clients
        self.lifecycle = LifecycleConfig(
            rate_limit=self.settings.rate_limit_for(gateway.name),
            auth_timeout=self.settings.auth_timeout,
            heartbeat_interval=self.settings.heartbeat_interval,
            flood_threshold=self.settings.flood_threshold,
            flood_window=self.settings.flood_window,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.host, self.settings.allowed_origins):
            assert origin is not None
            return origin_refused(request, origin, self.settings.allowed_origins, self.refused)
        ws = web.WebSocketResponse(
            compress=False,
            autoping=False,  # protocol pongs count as heartbeat answers: handle them here
            max_msg_size=self.settings.max_message_bytes,
        )
        await ws.prepare(request)
        writer = ClientWriter(
            ws,
            request.transport,
            max_frames=self.settings.send_queue_max,
            max_bytes=self.settings.send_queue_max_bytes,
            send_timeout=self.settings.send_timeout,
        )
        client_id = new_client_id()
        session = Session(client_id, writer, request.remote or "")
        conn = Connection(client_id, self.lifecycle, self.services.verifier.verify, time.monotonic())
        writer.start()
        self.clients.add(session)
        session.send(protocol.connected_message(client_id, self.settings.auth_timeout))
        timer = _Clock(conn, session, ws)
        try:
            await self._read_loop(ws, conn, session)
        finally:
            timer.cancel()
            self.clients.discard(session)
            if conn.state is State.OPEN or session.principal is not None:
                try:
                    await self.gateway.on_disconnect(session)
                except Exception:
                    log.exception("%s: on_disconnect failed", self.gateway.name)
            conn.state = State.CLOSED
            if not writer.closed:
                writer.close(CloseCode.NORMAL, "")
            try:
                await asyncio.wait_for(writer.wait_closed(), self.settings.send_timeout + 1)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
        return ws

    async def _read_loop(self, ws: web.WebSocketResponse, conn: Connection, session: Session) -> None:
        while not session.closed:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._perform(conn.receive_text(msg.data, time.monotonic()), conn, session)
            elif msg.type is WSMsgType.BINARY:
                await self._perform(conn.receive_binary(time.monotonic()), conn, session)
            elif msg.type is WSMsgType.PING:
                conn.receive_ping_frame()
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.receive_pong_frame()
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 is sent by aiohttp itself)
                return

    async def _perform(self, actions: list[Action], conn: Connection, session: Session) -> None:
        for action in actions:
            if isinstance(action, Send):
                session.send(action.message)
            elif isinstance(action, Close):
                session.close(action.code, action.reason)
            elif isinstance(action, Authenticated):
                session.principal = action.principal
                if action.first:
                    await self._guard(session, self.gateway.on_authenticated(session))
            elif isinstance(action, Dispatch):
                await self._guard(session, self.gateway.dispatch(session, action.message))

    async def _guard(self, session: Session, work: object) -> None:
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
            session.error(ErrorCode.INTERNAL_ERROR, "Internal error")


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


def create_app(settings: Settings, gateways: list[Gateway] | None = None,
               services: Services | None = None) -> web.Application:
    services = services or Services.from_settings(settings)
    app = web.Application()
    app[SERVICES_KEY] = services
    gateway_list = gateways if gateways is not None else default_gateways(services)
    app[GATEWAYS_KEY] = {g.name: g for g in gateway_list}
    clients: weakref.WeakSet[Session] = weakref.WeakSet()
    app[CLIENTS_KEY] = clients
    refused = RefusedOrigins()  # shared: one log line per origin per minute, whatever the path
    for gateway in gateway_list:
        app.router.add_get(gateway.path, ClientHandler(gateway, services, clients, refused).handle)
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
            session.close(CloseCode.GOING_AWAY, "server shutdown")
        waits = [s.writer.wait_closed() for s in list(clients)]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5)
        for gateway in gateway_list:
            with contextlib.suppress(Exception):
                await gateway.stop()

    async def on_cleanup(app: web.Application) -> None:
        await services.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
