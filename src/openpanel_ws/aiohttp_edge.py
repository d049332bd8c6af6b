"""The one module that touches aiohttp's internals (docs/aiohttp-edge.md).

Every reach past aiohttp's documented API is here, each for a reason the public API
cannot serve; tests/unit/test_aiohttp_edge.py checks, for the installed aiohttp, that it
is in `CHECKED_RANGE` and that each of these still exists with the expected signature:

1. `web.AppRunner._make_server` is overridden (`GatewayRunner`): the only place where
   the runner's `web.Server` exists before it accepts a socket.
2. `web.Server.connection_made` / `connection_lost` are wrapped per server instance
   (`install_guard`): aiohttp's only per-TCP-connection hooks, called before any byte is
   read. The handshake guard counts and times sockets there, and refuses a socket past
   the caps before aiohttp builds a request handler for it.
3. The event loop's exception handler is set while the runner runs (`GatewayRunner`):
   asyncio reports EMFILE on accept (`BaseSelectorEventLoop._accept_connection`) and some
   transport errors only through `loop.call_exception_handler`; no per-server hook
   exists. It is narrowed as far as it goes: only the guard's kinds are taken (one
   throttled line), everything else goes to the handler that was there before, which is
   put back at cleanup.
4. `ws.prepare()` is typed as returning `AbstractStreamWriter`; at run time it is
   aiohttp's `StreamWriter`, whose `transport`, `protocol` (aiohttp's `BaseProtocol`:
   `writing_paused`) and `drain()` the outbound path writes through directly
   (`prepare_stream`; docs/protocol.md "Outbound path"), bypassing aiohttp's own
   WebSocket writer so a frame is built once for every recipient.
5. The errors aiohttp answers before any route runs (a request it cannot parse: 400,
   431; a handler that raised: 500) are built by `RequestHandler.handle_error` and
   prepared without the application's `on_response_prepare`. The runner's server hands
   out a `RequestHandler` subclass (`web.Server.__call__`, the protocol factory, is
   overridden by giving the server instance a subclass) whose `handle_error` answers
   with the status line's phrase alone (aiohttp's body quotes the request's bytes) and
   the response headers of every other response (docs/security.md "HTTP responses").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from openpanel_ws.handshake import HandshakeGuard
from openpanel_ws.outbound import StreamLike

__all__ = [
    "CHECKED_RANGE",
    "GatewayRunner",
    "install_error_page",
    "install_guard",
    "prepare_stream",
]

# The aiohttp versions this module was checked against: pyproject's `aiohttp>=3.9,<4`.
CHECKED_RANGE = ((3, 9), (4, 0))

ExceptionHandler = Any  # asyncio's handler type: (loop, context) -> object


def install_guard(server: web.Server, guard: HandshakeGuard) -> None:
    """Wrap `server`'s per-connection hooks with the guard's (touch 2)."""
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        if guard.on_made(handler, transport):
            made(handler, transport)

    def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
        guard.on_lost(handler)
        lost(handler, exc)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]


def _error_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}\n"
    except ValueError:
        return f"{status}\n"


def install_error_page(server: web.Server, headers: Mapping[str, str]) -> None:
    """Make `server`'s early error responses carry `headers` and echo nothing (touch 5)."""

    class Handler(RequestHandler):
        def handle_error(self, request: BaseRequest, status: int = 500,
                         exc: BaseException | None = None,
                         message: str | None = None) -> web.StreamResponse:
            response = super().handle_error(request, status, exc, _error_text(status))
            if isinstance(response, web.Response) and status != 500:
                response.text = _error_text(status)  # never the parser's quote of the request
            response.headers.update(headers)
            return response

    class Server(type(server)):  # type: ignore[misc]
        def __call__(self) -> RequestHandler:
            return Handler(self, loop=self._loop, **self._kwargs)

    server.__class__ = Server


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server carries the application's `HandshakeGuard` (touches 1, 3)."""

    def __init__(self, app: web.Application, guard: HandshakeGuard | None, *,
                 error_headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard
        self._error_headers = error_headers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: ExceptionHandler = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if self._error_headers is not None:
            install_error_page(server, self._error_headers)
        guard = self._guard
        if guard is not None:
            install_guard(server, guard)
            loop = self._loop = asyncio.get_running_loop()
            previous = self._previous = loop.get_exception_handler()

            def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                if guard.loop_error(context):
                    return
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)

            loop.set_exception_handler(handler)
        return server

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)
            self._loop = None


async def prepare_stream(ws: web.WebSocketResponse, request: web.Request) -> StreamLike:
    """Complete the upgrade; the socket's stream, as the outbound path writes to it (touch 4)."""
    return cast(StreamLike, await ws.prepare(request))
