"""How a `DockerEngine` reaches its engine: one `Transport` per host.

docs/hosts.md "What each transport supports". A transport gives the engine client

- `base` (the URL prefix of every request) and `connector()` (aiohttp's connector: one
  connection pool per host);
- `open_raw()`: a raw bidirectional connection for exec attach (`DockerEngine.hijack`);
- `ready()`: whatever must exist before a connection can be made (the SSH connection);
- `explain(exc)`: the ONE line an error becomes (`EngineUnavailable`'s message).

`UnixTransport` and `TcpTransport` (plain, or TLS) are here; `SshTransport` is in
`engine/ssh.py`; `DockerEngine` picks one by `target.scheme`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp

from openpanel_ws.engine.target import DEFAULT_SOCKET, EngineTarget
from openpanel_ws.engine.tls_stream import open_tls_connection

__all__ = [
    "TcpTransport",
    "Transport",
    "TransportError",
    "UnixTransport",
    "causes",
    "tls_error_line",
]

log = logging.getLogger(__name__)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class TransportError(ConnectionError):
    """A transport could not connect; its message is the one line for the operator."""


class Transport:
    """The unix socket transport's interface, and the defaults of every transport."""

    base = "http://docker"
    host_header = "docker"
    # An exec attach socket can be inherited by a re-executed gateway (reload hand-off).
    hands_over = True

    def __init__(self, target: EngineTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout

    async def ready(self) -> None:
        """Raise `TransportError` when no connection can be made now."""

    def connector(self) -> aiohttp.BaseConnector:
        raise NotImplementedError

    async def open_raw(self) -> Streams:
        raise NotImplementedError

    def explain(self, exc: BaseException) -> str:
        return str(exc) or type(exc).__name__

    async def close(self) -> None:
        """Release what `ready()` set up (nothing, for unix and tcp)."""


class UnixTransport(Transport):
    def __init__(self, target: EngineTarget, timeout: float) -> None:
        super().__init__(target, timeout)
        self.path = urlsplit(target.url).path or DEFAULT_SOCKET

    def connector(self) -> aiohttp.BaseConnector:
        return aiohttp.UnixConnector(path=self.path, limit=0)

    async def open_raw(self) -> Streams:
        return await asyncio.open_unix_connection(self.path)


class TcpTransport(Transport):
    """tcp://HOST:PORT: plain without TLS files (DOCKER_HOST compatibility), else TLS with
    the CA, the client certificate and key, and the server's name checked."""

    def __init__(self, target: EngineTarget, timeout: float) -> None:
        super().__init__(target, timeout)
        parts = urlsplit(target.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (2376 if target.uses_tls else 2375)
        self.host_header = f"{self.host}:{self.port}"
        scheme = "https" if target.uses_tls else "http"
        self.base = f"{scheme}://{self.host_header}"
        self._ssl: ssl.SSLContext | None = None
        # A TLS session's state cannot be handed to another process.
        self.hands_over = not target.uses_tls
        if target.uses_tls and not target.tls_verify:
            log.warning("TLS verification is OFF for %s (tls_verify = false): the engine's "
                        "certificate and name are not checked; anyone on the path can pose "
                        "as this engine", target.describe())

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (built once; None for plain TCP). TransportError when a file
        cannot be loaded."""
        if not self.target.uses_tls or self._ssl is not None:
            return self._ssl
        t = self.target
        try:
            context = ssl.create_default_context(
                cafile=str(t.ca) if t.ca is not None and t.tls_verify else None)
            if t.cert is not None and t.key is not None:
                context.load_cert_chain(str(t.cert), str(t.key))
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(
                f"TLS: cannot load {_tls_files(t)}: {_reason(exc)}") from None
        if not t.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._ssl = context
        return context

    async def ready(self) -> None:
        self.ssl_context()

    def connector(self) -> aiohttp.BaseConnector:
        context = self.ssl_context()
        return aiohttp.TCPConnector(limit=0, ssl=context if context is not None else False)

    async def open_raw(self) -> Streams:
        context = self.ssl_context()
        if context is None:
            return await asyncio.open_connection(self.host, self.port)
        # Not asyncio's TLS: it cannot half-close, and an exec's stdin must end (eof).
        return await open_tls_connection(self.host, self.port, context)

    def explain(self, exc: BaseException) -> str:
        where = f"{self.host}:{self.port}"
        if self.target.uses_tls:
            line = tls_error_line(exc, where)
            if line is not None:
                return line
        for cause in causes(exc):
            if isinstance(cause, ConnectionRefusedError):
                return f"{where}: connection refused"
            if self.target.uses_tls and isinstance(
                    cause, ConnectionResetError | aiohttp.ServerDisconnectedError):
                # TLS 1.3: the engine checks our certificate after the handshake, and
                # its alert is usually lost in the reset that follows.
                return (f"TLS: the engine at {where} closed the connection: it refused the "
                        f"client certificate {self.target.cert} (not from its CA, or "
                        "expired?) or it is not a TLS engine")
        return str(exc) or type(exc).__name__


def _tls_files(target: EngineTarget) -> str:
    names = [str(p) for p in (target.ca, target.cert, target.key) if p is not None]
    return ", ".join(names)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc) or type(exc).__name__


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it wraps (aiohttp's `os_error`/`certificate_error`), its causes."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "certificate_error", None), getattr(item, "os_error", None),
                     item.__cause__, item.__context__])


# OpenSSL alert reasons that mean the engine refused our client certificate.
_CLIENT_CERT_REFUSED = ("CERTIFICATE_EXPIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                        "CERTIFICATE_REQUIRED", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REVOKED",
                        "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED", "DECRYPT_ERROR")


def tls_error_line(exc: BaseException, where: str) -> str | None:
    """One line for a TLS failure anywhere in `exc`'s chain; None if it is not one."""
    for cause in causes(exc):
        if isinstance(cause, aiohttp.ClientError):
            continue  # aiohttp's wrappers; what they wrap follows
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or _reason(cause)
            return f"TLS: certificate verify failed: {detail} (engine {where})"
        if isinstance(cause, ssl.SSLError):
            reason = str(cause.reason or cause)
            if any(word in reason.upper() for word in _CLIENT_CERT_REFUSED):
                return (f"TLS: the engine at {where} refused the client certificate "
                        f"({reason.lower().replace('_', ' ')})")
            return f"TLS: {reason.lower().replace('_', ' ')} (engine {where})"
    return None
