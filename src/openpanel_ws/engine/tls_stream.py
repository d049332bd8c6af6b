"""A TLS client stream that can half-close, for exec attach over TCP+TLS.

asyncio's TLS transport cannot `write_eof()`, so over it an exec's stdin could never end
(`eof`, `exec -i < file`). Here TLS runs on an `ssl.SSLObject` over memory BIOs: the
end of our input sends TLS close_notify (the Docker CLI's `CloseWrite`) and reading goes
on until the engine ends its output. The streams are ordinary asyncio ones
(`StreamReader`, `StreamWriter`); the transport below the writer is `_TlsTransport`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

__all__ = ["open_tls_connection"]

CHUNK = 65536


class _TlsTransport(asyncio.Transport):
    """Plain text in and out of `_TlsProtocol`'s TLS object, over the raw TCP transport."""

    def __init__(self, protocol: _TlsProtocol) -> None:
        super().__init__()
        self._tls = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(bytes(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._tls.write_eof()

    def is_closing(self) -> bool:
        raw = self._tls.raw
        return raw is None or raw.is_closing()

    def close(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.close()

    def abort(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.abort()

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size() if self._tls.raw is not None else 0

    def pause_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.raw is not None and self._tls.raw.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._tls.context
        if name == "ssl_object":
            return self._tls.tls
        return self._tls.raw.get_extra_info(name, default) if self._tls.raw else default


class _TlsProtocol(asyncio.Protocol):
    """The raw TCP side: TLS records in, plain text to the stream protocol above."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str,
                 upper: asyncio.StreamReaderProtocol) -> None:
        self.context = context
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.upper = upper
        self.raw: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.plain = _TlsTransport(self)
        self._eof_sent = False
        self._lost_told = False

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending and self.raw is not None and not self.raw.is_closing():
            self.raw.write(pending)

    def _step_handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._flush()
            if not self.handshake.done():
                self.handshake.set_exception(exc)
            if self.raw is not None:
                self.raw.close()
            return
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)
            self.upper.connection_made(self.plain)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        self._step_handshake()

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshake.done():
            self._step_handshake()
            if not self.handshake.done() or self.handshake.exception() is not None:
                return
        self._read_plain()

    def _read_plain(self) -> None:
        while True:
            try:
                chunk = self.tls.read(CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the engine's close_notify: its output ended
                self.upper.eof_received()
                break
            except (ssl.SSLError, OSError) as exc:
                self._lost(exc)
                if self.raw is not None:
                    self.raw.close()
                return
            if not chunk:
                self.upper.eof_received()
                break
            self.upper.data_received(chunk)
        self._flush()

    def eof_received(self) -> bool | None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionResetError("connection closed during TLS "
                                                              "handshake"))
        else:
            self.upper.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection lost"))
            return
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        """The stream above hears of the end once."""
        if not self._lost_told:
            self._lost_told = True
            self.upper.connection_lost(exc)

    def pause_writing(self) -> None:
        self.upper.pause_writing()

    def resume_writing(self) -> None:
        self.upper.resume_writing()

    def write(self, data: bytes) -> None:
        if self._eof_sent:
            raise RuntimeError("write after write_eof")
        self.tls.write(data)
        self._flush()

    def write_eof(self) -> None:
        """TLS close_notify: the engine reads EOF (stdin ends); its output still flows."""
        if self._eof_sent:
            return
        self._eof_sent = True
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # the engine's own close_notify comes when its output ends
        except ssl.SSLError:
            pass
        self._flush()


async def open_tls_connection(
        host: str, port: int, context: ssl.SSLContext, *,
        limit: int = 2 ** 16) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection(host, port, ssl=context)`, but whose writer can
    `write_eof()`. Raises the handshake's `ssl.SSLError` (or `OSError`)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    upper = asyncio.StreamReaderProtocol(reader, loop=loop)
    raw, tls = await loop.create_connection(lambda: _TlsProtocol(context, host, upper), host, port)
    try:
        await tls.handshake
    except BaseException:
        raw.close()
        raise
    writer = asyncio.StreamWriter(tls.plain, upper, reader, loop)
    return reader, writer
