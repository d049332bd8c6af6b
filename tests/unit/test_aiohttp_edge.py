"""The aiohttp internals `openpanel_ws.aiohttp_edge` relies on (docs/aiohttp-edge.md):
the installed aiohttp is in the range the edge was checked against, and each internal
still exists with the signature the edge expects. A failure here names what to re-check
before widening the range in pyproject.toml."""

import asyncio
import inspect
import re
from importlib.metadata import requires

import aiohttp
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter

from openpanel_ws import aiohttp_edge
from openpanel_ws.aiohttp_edge import CHECKED_RANGE, GatewayRunner
from openpanel_ws.handshake import HandshakeGuard


def version(text: str) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", text).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def test_installed_aiohttp_is_in_the_checked_range_and_pyproject_says_the_same() -> None:
    low, high = CHECKED_RANGE
    assert low <= version(aiohttp.__version__) < high
    spec = next(r for r in requires("openpanel-ws") or [] if r.startswith("aiohttp"))
    assert f">={low[0]}.{low[1]}" in spec and f"<{high[0]}" in spec


def test_app_runner_make_server_is_a_coroutine_method_without_arguments() -> None:  # touch 1
    make = web.AppRunner._make_server
    assert inspect.iscoroutinefunction(make)
    assert list(inspect.signature(make).parameters) == ["self"]
    assert GatewayRunner._make_server is not make


def test_server_connection_hooks_take_handler_and_transport() -> None:  # touch 2
    made = inspect.signature(web.Server.connection_made)
    lost = inspect.signature(web.Server.connection_lost)
    assert list(made.parameters) == ["self", "handler", "transport"]
    assert list(lost.parameters) == ["self", "handler", "exc"]
    assert lost.parameters["exc"].default is None


def test_the_loop_handler_is_narrow_and_put_back() -> None:  # touch 3
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        previous = loop.get_exception_handler()
        app = web.Application()
        runner = GatewayRunner(app, HandshakeGuard(1.0, 10))
        await runner.setup()
        assert loop.get_exception_handler() is not previous
        loop.call_exception_handler({"message": "x", "exception": ConnectionResetError()})
        loop.call_exception_handler({"message": "not ours", "exception": ValueError()})
        assert [c["message"] for c in seen] == ["not ours"]  # chained to the one before
        await runner.cleanup()
        assert loop.get_exception_handler() is previous

    asyncio.run(main())


def test_prepare_returns_a_stream_writer_with_transport_protocol_and_drain() -> None:  # touch 4
    for name in ("transport", "protocol", "drain"):
        assert hasattr(StreamWriter, name) or name in inspect.signature(StreamWriter).parameters
    assert isinstance(BaseProtocol.writing_paused, property)
    assert isinstance(web.WebSocketResponse.closed, property)
    assert inspect.iscoroutinefunction(StreamWriter.drain)
    assert aiohttp_edge.prepare_stream is not None


def test_handle_error_and_the_protocol_factory_are_as_the_edge_expects() -> None:  # touch 5
    from aiohttp.web_protocol import RequestHandler

    params = inspect.signature(RequestHandler.handle_error).parameters
    assert list(params) == ["self", "request", "status", "exc", "message"]
    assert params["status"].default == 500 and params["message"].default is None
    assert list(inspect.signature(web.Server.__call__).parameters) == ["self"]

    async def main() -> None:
        runner = GatewayRunner(web.Application(), None, error_headers={"Server": "x", "A": "b"})
        await runner.setup()
        server = runner.server
        assert server is not None and isinstance(server, web.Server)
        handler = server()
        assert isinstance(handler, RequestHandler)
        await runner.cleanup()

    asyncio.run(main())
