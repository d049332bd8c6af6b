"""The aiohttp application: one `Endpoint` per gateway route, the client files, health
checks, start-up and shutdown.

A socket on a route is run by `openpanel_ws.endpoint.ServerConnection`; every protocol
decision is made by sans-I/O code (`connection.Connection`, `outbound.OutboundProtocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from openpanel_ws import protocol
from openpanel_ws.aiohttp_edge import GatewayRunner
from openpanel_ws.clock import TimerWheel
from openpanel_ws.config import Settings
from openpanel_ws.endpoint import Endpoint, new_client_id
from openpanel_ws.gateways.base import Gateway, Session
from openpanel_ws.handshake import HandshakeGuard
from openpanel_ws.origins import RefusedOrigins, origin_allowed, origin_refused
from openpanel_ws.outbound import WriteScheduler
from openpanel_ws.protocol import CloseCode
from openpanel_ws.sendqueue import QueueLimits
from openpanel_ws.services import Services
from openpanel_ws.web.console import SECURITY_HEADERS, bearer_principal, host_state
from openpanel_ws.web.routes import register as register_console

__all__ = [
    "CLIENTS_KEY",
    "CLIENT_FILES",
    "GATEWAYS_KEY",
    "GUARD_KEY",
    "RESPONSE_HEADERS",
    "SERVER_NAME",
    "SERVICES_KEY",
    "Endpoint",
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

SERVICES_KEY = web.AppKey("services", Services)
GATEWAYS_KEY = web.AppKey("gateways", dict)
# Sessions of open connections (added and removed by ServerConnection.run); a plain set:
# a WeakSet costs a weakref per connection.
CLIENTS_KEY = web.AppKey("clients", set)
GUARD_KEY = web.AppKey("handshake_guard", HandshakeGuard)

# `Server` names the software, never its version nor Python's (docs/security.md).
SERVER_NAME = "openpanel-ws"
# On every HTTP response, errors included (a route's own values win).
RESPONSE_HEADERS: dict[str, str] = {"Server": SERVER_NAME, **SECURITY_HEADERS}

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# The official JS client, shipped inside the package (static/client/ holds symlinks to
# clients/js/, which wheel builds resolve; tests/unit/test_js_client.py checks them), so
# any install can serve it. The routes are a fixed allow-list built from the package's
# files at start: /client/openpanel-ws.js, the ES modules it imports and their .d.ts.
_CLIENT_TYPES = {".d.ts": "application/typescript", ".js": "text/javascript"}


def _client_files() -> dict[str, tuple[str, str]]:
    """Route path -> (file name, content type) for every module of the packaged client."""
    folder = resources.files("openpanel_ws") / "static" / "client"
    files: dict[str, tuple[str, str]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        for suffix, content_type in _CLIENT_TYPES.items():
            if entry.is_file() and entry.name.endswith(suffix):
                files[f"/client/{entry.name}"] = (entry.name, content_type)
                break
    return files


CLIENT_FILES = _client_files()


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
    """Ready while the default host's engine answers; the states of the hosts a valid
    Bearer token may see, and nothing about any host to anyone else (docs/protocol.md
    "A host that is down or hangs")."""
    services = request.app[SERVICES_KEY]
    host = services.hosts.default
    ready = await host.engine.ping()
    if ready:
        services.hosts.succeeded(host)
    body: dict[str, Any] = {"status": "ready"} if ready else {
        "status": "unavailable", "reason": "Docker engine does not answer /_ping"}
    principal = bearer_principal(request.headers.get("Authorization"), services.verifier)
    if principal is not None:
        body["hosts"] = [host_state(h.status) for h in services.hosts.visible_to(principal)]
    return web.json_response(body, status=200 if ready else 503)


def new_scheduler(settings: Settings) -> WriteScheduler:
    return WriteScheduler(QueueLimits(settings.send_queue_max, settings.send_queue_max_bytes),
                          settings.send_timeout)


def _on_response_prepare(guard: HandshakeGuard) -> Callable[
        [web.Request, web.StreamResponse], Awaitable[None]]:
    """Every response: the security headers (a route's own win) and `Server` without a
    version (docs/security.md "HTTP responses"); the handshake clock restarts per request."""

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["Server"] = SERVER_NAME
        for name, value in SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        if not isinstance(response, web.WebSocketResponse):
            guard.responded(request.protocol)

    return on_response_prepare


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

    app.on_response_prepare.append(_on_response_prepare(guard))
    # One write scheduler per server: the per-loop-turn flush and the stall watchdog.
    scheduler = new_scheduler(settings)
    wheel = TimerWheel()  # every connection's clock (auth timeout, heartbeat)
    refused = RefusedOrigins()  # shared: one log line per origin per minute, whatever the path
    for gateway in gateway_list:
        endpoint = Endpoint(gateway, services, clients, scheduler, wheel, refused, guard)
        app.router.add_get(gateway.path, endpoint.handle)
        app.router.add_get(gateway.host_path, endpoint.handle)
    for path, (name, content_type) in CLIENT_FILES.items():
        app.router.add_get(path, client_file_handler(name, content_type))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    register_console(app, services)  # the web console: /, /static/…, /api/containers

    async def on_startup(app: web.Application) -> None:
        await services.hosts.start()  # each host's status watch; none waits for another
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
    return GatewayRunner(app, app.get(GUARD_KEY), error_headers=RESPONSE_HEADERS, **kwargs)
