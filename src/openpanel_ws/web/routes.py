"""aiohttp edge of the web console: `/`, `/static/…`, `GET /api/containers` (docs/console.md)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from openpanel_ws.auth import AuthError
from openpanel_ws.engine.client import EngineError, EngineUnavailable
from openpanel_ws.gateways.access import DOCKER_UNAVAILABLE_MESSAGE
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
    list_response,
    visible_containers,
)

__all__ = [
    "INSPECT_CONCURRENCY",
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
        try:
            token = bearer_token(request.headers.get("Authorization"))
            principal = services.verifier.verify(token)
        except (BadAuthorization, AuthError) as exc:
            return _unauthorized(str(exc))
        engine = services.engine
        try:
            entries = await engine.get("/containers/json", {"all": True})
        except EngineUnavailable:
            return _json({"error": DOCKER_UNAVAILABLE_MESSAGE, "code": "DOCKER_UNAVAILABLE"}, status=503)
        except EngineError as exc:
            return _json({"error": exc.message, "code": "INTERNAL_ERROR"}, status=502)
        visible = visible_containers(principal, entries if isinstance(entries, list) else [])
        limit = asyncio.Semaphore(INSPECT_CONCURRENCY)

        async def state_of(entry: Any) -> dict[str, Any] | None:
            # The list lacks StartedAt/ExitCode/Health; inspect adds them (best effort:
            # a container removed meanwhile just keeps its list fields).
            async with limit:
                try:
                    info = await engine.inspect_container(str(entry.get("Id", "")))
                except EngineError:
                    return None
            state = info.get("State") if isinstance(info, dict) else None
            return state if isinstance(state, dict) else None

        states = await asyncio.gather(*(state_of(e) for e in visible))
        rows = [container_summary(e, s) for e, s in zip(visible, states, strict=True)]
        return _json(list_response(rows, time.time()))

    app.router.add_get("/", page)
    app.router.add_get("/static/{path:.+}", static)
    app.router.add_get("/api/containers", containers)
