"""Docker Engine API over aiohttp (unix socket, TCP/TLS or SSH): the only aiohttp client code.

aiodocker leaks a connection per abandoned stream, so this talks to the Engine API
directly, over the host's transport (`engine/transport.py`, `engine/ssh.py`). Every
streaming response is closed when its generator (`stream_chunks`) is
closed or its task cancelled. Every failure leaves this module as an `EngineError`:

    EngineError
     +-- EngineUnavailable   not reachable, no answer in time, or a stream broke off
     +-- EngineStatusError   the engine answered with an HTTP error status
          +-- EngineNotFound 404
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson

from openpanel_ws.engine.ssh import SshTransport
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.engine.transport import TcpTransport, Transport, UnixTransport

__all__ = [
    "DEFAULT_ENGINE_TIMEOUT",
    "DockerEngine",
    "EngineError",
    "EngineNotFound",
    "EngineStatusError",
    "EngineUnavailable",
]

log = logging.getLogger(__name__)

# Requests that answer at once take at most REQUEST_TOTAL s; streams (logs, stats,
# events) have no total timeout. Either way the engine must connect and send its response
# headers within `DockerEngine.timeout` (OPENPANEL_WS_ENGINE_TIMEOUT), else
# EngineUnavailable.
REQUEST_TOTAL = 30.0
DEFAULT_ENGINE_TIMEOUT = 5.0


class EngineError(Exception):
    """Anything that went wrong talking to the engine (the root of the tree above)."""

    status: int = 0  # the HTTP status, for `EngineStatusError`; 0 otherwise

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EngineUnavailable(EngineError):
    """The engine cannot be reached, did not answer in time, or a stream broke off."""


class EngineStatusError(EngineError):
    """The engine answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        Exception.__init__(self, f"engine error {status}: {message}")
        self.message = message
        self.status = status


class EngineNotFound(EngineStatusError):
    """404: no such container (or exec, ...)."""


# `stream_chunks(on_open=...)`: called once the engine has answered a stream's request.
OnOpen = Callable[[], None]
_TRANSPORT_ERRORS: Final = (aiohttp.ClientError, OSError, TimeoutError)



def transport_for(target: EngineTarget, timeout: float) -> Transport:
    """The transport for `target.scheme` (unix, tcp, ssh); ValueError for another."""
    kinds: dict[str, type[Transport]] = {
        "unix": UnixTransport, "tcp": TcpTransport, "ssh": SshTransport}
    kind = kinds.get(target.scheme)
    if kind is None:
        raise ValueError(f"unsupported DOCKER_HOST {target.url!r}")
    return kind(target, timeout)


class DockerEngine:
    def __init__(self, target: EngineTarget | str = "unix:///var/run/docker.sock",
                 timeout: float = DEFAULT_ENGINE_TIMEOUT) -> None:
        if isinstance(target, str):
            target = EngineTarget(target)
        self.target = target
        self.docker_host = target.url
        self.timeout = timeout  # connect + response headers
        self.transport = transport_for(target, timeout)
        self._base = self.transport.base
        self._session: aiohttp.ClientSession | None = None
        self.open_streams = 0  # engine streams open right now (tests assert sharing with it)
        # The connect bound honours `timeout` (it may be above aiohttp's defaults).
        self.request_timeout = aiohttp.ClientTimeout(
            total=max(REQUEST_TOTAL, timeout), connect=timeout, sock_connect=timeout)
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout)

    @property
    def is_local(self) -> bool:
        """True when the engine shares this machine's pid namespace view (unix socket)."""
        return self.target.on_this_machine

    async def _http(self) -> aiohttp.ClientSession:
        """The host's one session and connection pool (after the transport is ready)."""
        await self.transport.ready()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self.transport.connector(), timeout=self.request_timeout)
        return self._session

    @contextlib.asynccontextmanager
    async def _answer_within(self, seconds: float) -> AsyncIterator[None]:
        """The block (connecting, up to the response headers) must finish within
        `seconds`; a timeout or a transport error becomes `EngineUnavailable`."""
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            raise EngineUnavailable(f"no answer within {seconds:g} s") from None
        except _TRANSPORT_ERRORS as exc:
            raise EngineUnavailable(self.transport.explain(exc)) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.transport.close()

    @staticmethod
    def _url_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
        if not params:
            return None
        out: dict[str, str] = {}
        for key, value in params.items():
            if value is None:
                continue
            if isinstance(value, bool):
                out[key] = "1" if value else "0"
            elif isinstance(value, dict | list):
                out[key] = orjson.dumps(value).decode()
            else:
                out[key] = str(value)
        return out

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; returns parsed JSON (or None for an empty body)."""
        kwargs: dict[str, Any] = {"params": self._url_params(params)}
        if body is not None:
            kwargs["data"] = orjson.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        # An explicit `timeout` (e.g. a start that answers when the exec ends) is the
        # caller's bound for everything; otherwise headers must come within `self.timeout`.
        header_timeout = timeout if timeout is not None else self.timeout
        async with self._answer_within(header_timeout):
            session = await self._http()
            resp = await session.request(method, self._base + path, **kwargs)
        try:
            data = await resp.read()
        except TimeoutError:
            raise EngineUnavailable(f"no complete answer within {timeout or REQUEST_TOTAL:g} s") from None
        except _TRANSPORT_ERRORS as exc:
            raise EngineUnavailable(self.transport.explain(exc)) from None
        finally:
            resp.release()
        if resp.status >= 400:
            raise _error(resp.status, data)
        if not data:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data.decode("utf-8", "replace")

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("POST", path, params=params, body=body)

    async def ping(self, timeout: float = 3.0) -> bool:
        try:
            await self.request("GET", "/_ping", timeout=timeout)
        except EngineError:
            return False
        return True

    async def inspect_container(self, ref: str) -> dict[str, Any]:
        """Inspect by full id, unique id prefix or name (the engine resolves all three)."""
        result: dict[str, Any] = await self.get(f"/containers/{quote(ref, safe='')}/json")
        return result

    @contextlib.asynccontextmanager
    async def _open_stream(
        self, path: str, params: Mapping[str, Any] | None, method: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming response (logs, stats, events); closed when the block exits."""
        async with self._answer_within(self.timeout):
            session = await self._http()
            resp = await session.request(
                method, self._base + path, params=self._url_params(params),
                timeout=self.stream_timeout,
            )
        self.open_streams += 1
        try:
            if resp.status >= 400:
                try:
                    body = await resp.read()
                except _TRANSPORT_ERRORS as exc:
                    raise EngineUnavailable(self.transport.explain(exc)) from None
                raise _error(resp.status, body)
            yield resp
        finally:
            self.open_streams -= 1
            resp.close()

    async def stream_chunks(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        method: str = "GET",
        on_open: OnOpen | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The body of a streaming response (logs, stats, events), chunk by chunk as it
        arrives; ends when the engine ends the stream.

        Raises only `EngineError`s: `EngineUnavailable` when the engine cannot be reached,
        does not send its headers within `timeout`, or the stream breaks off;
        `EngineStatusError` (`EngineNotFound`) for an error status. `on_open` is called
        once the engine has answered (an events stream sends no body until an event).
        The response is closed when the generator is closed (`contextlib.aclosing`) or
        the task reading it is cancelled.
        """
        async with self._open_stream(path, params, method) as resp:
            if on_open is not None:
                on_open()
            while True:
                try:
                    chunk = await resp.content.readany()
                except _TRANSPORT_ERRORS as exc:
                    raise EngineUnavailable(
                        f"stream interrupted: {exc or type(exc).__name__}") from None
                if not chunk:
                    return
                yield chunk

    async def hijack(
        self, path: str, body: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """POST with `Upgrade: tcp` and return the raw bidirectional stream after 101.

        aiohttp's client keeps bytes that follow a 101 in a private buffer,
        so exec attach uses a plain asyncio connection.
        """
        payload = orjson.dumps(body)
        async with self._answer_within(self.timeout):
            await self.transport.ready()
            reader, writer = await self.transport.open_raw()
        host = self.transport.host_header
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        writer.write(head + payload)
        try:
            await writer.drain()
            header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise EngineUnavailable(
                f"exec attach failed: {self.transport.explain(exc)}") from None
        status_line = header.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status not in (101, 200):
            body_bytes = b""
            with contextlib.suppress(Exception):
                body_bytes = await asyncio.wait_for(reader.read(65536), 2)
            writer.close()
            raise _error(status, body_bytes)
        return reader, writer


def _error(status: int, data: bytes) -> EngineStatusError:
    message = data.decode("utf-8", "replace").strip()
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        message = str(orjson.loads(data).get("message", message))
    cls = EngineNotFound if status == 404 else EngineStatusError
    return cls(status, message)
