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
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
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
from openpanel_ws.hygiene import GatewayRunner, HandshakeGuard
from openpanel_ws.outbound import ClientWriter
from openpanel_ws.protocol import CloseCode, ErrorCode, ProtocolError
from openpanel_ws.services import Services

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("services", Services)
GATEWAYS_KEY = web.AppKey("gateways", dict)
CLIENTS_KEY = web.AppKey("clients", weakref.WeakSet)
GUARD_KEY = web.AppKey("handshake_guard", HandshakeGuard)

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
    parts = urlsplit(origin)
    if scheme is not None:
        expected = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme.lower())
        if parts.scheme.lower() != expected:
            return False
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

    def rearm(self) -> None:
        """The deadline may have moved (a re-auth with another `exp`)."""
        if self._handle is not None:
            self._handle.cancel()
        if self._conn.state is not State.CLOSED and not self._session.closed:
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
            jwt_leeway=self.settings.jwt_leeway,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request.headers.get("Origin"), request.host,
                              self.settings.allowed_origins, request.scheme):
            return web.json_response({"error": "origin not allowed"}, status=403)
        ws = web.WebSocketResponse(
            compress=False,
            autoping=False,  # protocol pongs count as heartbeat answers: handle them here
            # aiohttp refuses a message of exactly max_msg_size: the documented limit is
            # the largest message accepted (docs/protocol.md).
            max_msg_size=self.settings.max_message_bytes + 1,
        )
        guard = request.app.get(GUARD_KEY)
        try:
            await ws.prepare(request)
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
        lanes = _Lanes(lambda message: self._guard(session, self.gateway.dispatch(session, message)))
        try:
            await self._read_loop(ws, conn, session, timer, lanes, guard, request)
        except (ConnectionError, OSError):
            pass  # the socket went away under us: nothing to report
        finally:
            timer.cancel()
            # Requests already running finish (bounded by the engine timeout) before the
            # gateway releases the session; queued ones are dropped.
            await lanes.close()
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

    async def _read_loop(self, ws: web.WebSocketResponse, conn: Connection, session: Session,
                         timer: _Clock, lanes: _Lanes, guard: HandshakeGuard | None,
                         request: web.Request) -> None:
        while not session.closed:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                actions = conn.receive_text(msg.data, time.monotonic())
                await self._perform(actions, conn, session, timer, lanes, guard, request)
            elif msg.type is WSMsgType.BINARY:
                actions = conn.receive_binary(time.monotonic())
                await self._perform(actions, conn, session, timer, lanes, guard, request)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.receive_pong_frame()
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 is sent by aiohttp itself)
                return

    async def _perform(self, actions: list[Action], conn: Connection, session: Session,
                       timer: _Clock, lanes: _Lanes, guard: HandshakeGuard | None,
                       request: web.Request) -> None:
        for action in actions:
            if isinstance(action, Send):
                session.send(action.message)
            elif isinstance(action, Close):
                session.close(action.code, action.reason)
            elif isinstance(action, Authenticated):
                session.principal = action.principal
                timer.rearm()  # the token's expiry is a deadline too
                if action.first:
                    if guard is not None:
                        guard.authenticated(request.protocol)
                    await self._guard(session, self.gateway.on_authenticated(session))
                else:
                    # Same user, new claims: what they no longer allow ends now.
                    await self._guard(session, self.gateway.on_principal_changed(session))
            elif isinstance(action, Dispatch):
                # Never awaited here: a slow request must not hold up the connection's
                # other messages. Requests of one lane (e.g. one container) stay in order.
                lanes.submit(self.gateway.lane(action.message), action.message)

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


class _Lanes:
    """Serial lanes of one connection: messages of one lane run in arrival order, lanes
    run concurrently (docs/protocol.md "Hostile clients")."""

    __slots__ = ("_closed", "_queues", "_run", "_tasks")

    def __init__(self, run: Callable[[dict[str, object]], Awaitable[None]]) -> None:
        self._run = run
        self._queues: dict[str, deque[dict[str, object]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, lane: str, message: dict[str, object]) -> None:
        if self._closed:
            return
        queue = self._queues.get(lane)
        if queue is not None:
            queue.append(message)
            return
        queue = self._queues[lane] = deque([message])
        task = asyncio.get_running_loop().create_task(self._drain(lane, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, lane: str, queue: deque[dict[str, object]]) -> None:
        try:
            while queue and not self._closed:
                await self._run(queue[0])
                queue.popleft()
        finally:
            self._queues.pop(lane, None)

    async def close(self) -> None:
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks))


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
    guard = HandshakeGuard(settings.handshake_timeout, settings.max_unauthenticated,
                           settings.max_unauthenticated_per_ip)
    app[GUARD_KEY] = guard
    for gateway in gateway_list:
        app.router.add_get(gateway.path, ClientHandler(gateway, services, clients).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

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
        guard.close()
        await services.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def create_runner(app: web.Application, **kwargs: object) -> web.AppRunner:
    """The runner to serve `app` with: its server carries the handshake guard."""
    return GatewayRunner(app, app.get(GUARD_KEY), **kwargs)
