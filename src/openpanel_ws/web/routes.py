"""aiohttp edge of the web console: `/`, `/static/…`, `GET /api/containers`, `GET
/api/hosts` (docs/console.md, docs/protocol.md "Web console and `GET /api/containers`")."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from openpanel_ws.auth import AuthError, Principal
from openpanel_ws.engine.client import EngineError, EngineUnavailable
from openpanel_ws.gateways.access import DOCKER_UNAVAILABLE_MESSAGE
from openpanel_ws.hosts.status import HostState
from openpanel_ws.services import Services
from openpanel_ws.web.console import (
    API_CACHE_CONTROL,
    ASSET_CACHE_CONTROL,
    SECURITY_HEADERS,
    BadAuthorization,
    StaticFile,
    accepts_gzip,
    bearer_token,
    build_static_table,
    container_summary,
    etag_matches,
    host_row,
    list_response,
    visible_containers,
)

if TYPE_CHECKING:
    from openpanel_ws.hosts.registry import Host

__all__ = [
    "INSPECT_CONCURRENCY",
    "HostListing",
    "host_rows",
    "list_containers",
    "register",
]

INSPECT_CONCURRENCY = 16


def _file_response(request: web.Request, file: StaticFile) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": ASSET_CACHE_CONTROL, "ETag": file.etag,
               "Vary": "Accept-Encoding"}
    if etag_matches(request.headers.get("If-None-Match"), file.etag):
        return web.Response(status=304, headers=headers)
    body = file.body
    if file.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding")):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = file.content_type
    return web.Response(body=body, headers=headers)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        data, status=status,
        headers={"Cache-Control": API_CACHE_CONTROL, "X-Content-Type-Options": "nosniff",
                 **(headers or {})})


def _unauthorized(reason: str) -> web.Response:
    return _json({"error": reason, "code": "AUTH_FAILED"}, status=401,
                 headers={"WWW-Authenticate": 'Bearer realm="openpanel-ws"'})


def _principal(request: web.Request, services: Services) -> Principal | web.Response:
    """The verified principal of the request's Bearer token, or the 401 to answer."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        return services.verifier.verify(token)
    except (BadAuthorization, AuthError) as exc:
        return _unauthorized(str(exc))


def _hosts_asked(request: web.Request, services: Services,
                 principal: Principal) -> list[Host] | web.Response:
    """`?host=ID`: that host (checked as the gateways check it); else every visible one."""
    wanted = request.query.get("host")
    if wanted is None:
        return services.hosts.visible_to(principal)
    if not principal.may_access_host(wanted):
        return _json({"error": "Permission denied", "code": "PERMISSION_DENIED", "host": wanted},
                     status=403)
    host = services.hosts.get(wanted)
    if host is None:
        return _json({"error": f"Unknown host '{wanted}'", "code": "INVALID_MESSAGE",
                      "field": "host", "host": wanted}, status=400)
    return [host]


class HostListing:
    """One host's part of GET /api/containers: its visible containers (rows) or why it
    did not answer, each step within the host's own engine timeout."""

    def __init__(self, host: Host, principal: Principal) -> None:
        self.host = host
        self.principal = principal
        self.rows: list[dict[str, Any]] = []
        self.failure: dict[str, Any] | None = None

    async def run(self) -> HostListing:
        engine = self.host.engine
        if self.host.status.state is HostState.DOWN:
            # Known down (or hung): listed as unavailable at once; its status watch notices
            # when it is back (docs/protocol.md "A host that is down or hangs").
            self._failed("DOCKER_UNAVAILABLE", DOCKER_UNAVAILABLE_MESSAGE)
            return self
        try:
            async with asyncio.timeout(engine.timeout):
                entries = await engine.get("/containers/json", {"all": True})
        except (EngineUnavailable, TimeoutError):
            self._failed("DOCKER_UNAVAILABLE", DOCKER_UNAVAILABLE_MESSAGE)
            return self
        except EngineError as exc:
            self._failed("INTERNAL_ERROR", exc.message)
            return self
        visible = visible_containers(self.principal, entries if isinstance(entries, list) else [])
        states: list[dict[str, Any] | None] = [None] * len(visible)
        # The list lacks StartedAt/ExitCode/Health; inspect adds them (best effort: a
        # container removed meanwhile, or a host too slow, keeps its list fields).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(engine.timeout):
                await self._inspect_all(visible, states)
        self.rows = [container_summary(e, s, self.host.id)
                     for e, s in zip(visible, states, strict=True)]
        return self

    async def _inspect_all(self, visible: list[Any], states: list[dict[str, Any] | None]) -> None:
        limit = asyncio.Semaphore(INSPECT_CONCURRENCY)

        async def state_of(i: int, entry: Any) -> None:
            async with limit:
                try:
                    info = await self.host.engine.inspect_container(str(entry.get("Id", "")))
                except EngineError:
                    return
            state = info.get("State") if isinstance(info, dict) else None
            states[i] = state if isinstance(state, dict) else None

        await asyncio.gather(*(state_of(i, e) for i, e in enumerate(visible)))

    def _failed(self, code: str, error: str) -> None:
        self.failure = {"host": self.host.id, "code": code, "error": error}


async def list_containers(services: Services, principal: Principal,
                          hosts: list[Host]) -> web.Response:
    """Every asked host at once; one that is down or hangs costs only its own timeout."""
    asked = [h for h in hosts if not h.monitor.disabled]
    done = await asyncio.gather(*(HostListing(h, principal).run() for h in asked))
    rows = [row for listing in done for row in listing.rows]
    failures = [listing.failure for listing in done if listing.failure is not None]
    if done and len(failures) == len(done):
        # No host answered: the single-host answer of before, with the details.
        first = failures[0]
        status = 503 if first["code"] == "DOCKER_UNAVAILABLE" else 502
        return _json({"error": first["error"], "code": first["code"], "unavailable": failures},
                     status=status)
    return _json(list_response(rows, time.time(), failures))


def host_rows(services: Services, principal: Principal) -> list[dict[str, Any]]:
    return [host_row(h.status, h.config) for h in services.hosts.visible_to(principal)]


def register(app: web.Application, services: Services) -> None:
    """Add the console's routes to the gateway's application."""
    table = build_static_table()
    index = table["index.html"]

    async def page(request: web.Request) -> web.Response:
        return _file_response(request, index)

    async def static(request: web.Request) -> web.Response:
        file = table.get(request.match_info["path"])
        if file is None or file.path == "index.html":
            raise web.HTTPNotFound()
        return _file_response(request, file)

    async def containers(request: web.Request) -> web.Response:
        principal = _principal(request, services)
        if isinstance(principal, web.Response):
            return principal
        hosts = _hosts_asked(request, services, principal)
        if isinstance(hosts, web.Response):
            return hosts
        return await list_containers(services, principal, hosts)

    async def hosts(request: web.Request) -> web.Response:
        principal = _principal(request, services)
        if isinstance(principal, web.Response):
            return principal
        return _json(host_rows(services, principal))

    app.router.add_get("/", page)
    app.router.add_get("/static/{path:.+}", static)
    app.router.add_get("/api/containers", containers)
    app.router.add_get("/api/hosts", hosts)
