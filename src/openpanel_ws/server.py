"""The aiohttp edge: one application, four WebSocket endpoints, health checks.

All protocol decisions are made by `Connection` (sans-I/O); this module moves bytes
between it, the socket, the per-client writer and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import weakref
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from openpanel_ws import protocol
from openpanel_ws.config import Settings
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
from openpanel_ws.outbound import ClientWriter
from openpanel_ws.protocol import CloseCode, ErrorCode, ProtocolError
from openpanel_ws.services import Services

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("services", Services)
GATEWAYS_KEY = web.AppKey("gateways", dict)
CLIENTS_KEY = web.AppKey("clients", weakref.WeakSet)

_client_ids = itertools.count(1)


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
    parts = urlsplit(origin)
    return bool(host) and parts.netloc.lower() == (host or "").lower()


class _Clock:
    """Drives `Connection.tick` with one timer handle (cheaper than a task per client)."""

    __slots__ = ("_conn", "_handle", "_loop", "_session")

    def __init__(self, conn: Connection, session: Session) -> None:
        self._conn = conn
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = max(0.0, self._conn.next_deadline() - time.monotonic())
        self._handle = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        # tick() yields only Send and Close, both synchronous for the writer.
        for action in self._conn.tick(time.monotonic()):
            if isinstance(action, Send):
                self._session.send(action.message)
            elif isinstance(action, Close):
                self._session.close(action.code, action.reason)
        if self._conn.state is not State.CLOSED and not self._session.closed:
            self._arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class ClientHandler:
    """Runs one WebSocket connection for one gateway."""

    def __init__(self, gateway: Gateway, services: Services, clients: weakref.WeakSet[Session]) -> None:
        self.gateway = gateway
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
        if not origin_allowed(request.headers.get("Origin"), request.host,
                              self.settings.allowed_origins):
            return web.json_response({"error": "origin not allowed"}, status=403)
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
        timer = _Clock(conn, session)
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
    for gateway in gateway_list:
        app.router.add_get(gateway.path, ClientHandler(gateway, services, clients).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from openpanel_ws.web.routes import register as register_console

    register_console(app, services)

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
