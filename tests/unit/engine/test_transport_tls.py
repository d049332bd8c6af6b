"""The TCP transports against a local server posing as the engine: plain TCP, TLS with a
trustme CA (the right one, a wrong one, a refused client certificate, an expired one),
exec attach over TLS, the one-line errors, and the connect timeout."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import trustme

from openpanel_ws.engine.client import DockerEngine, EngineUnavailable
from openpanel_ws.engine.target import EngineTarget

INFO = {"ID": "tls-engine", "Name": "posing", "ServerVersion": "0.0"}


@dataclass
class Pki:
    ca: trustme.CA
    server: trustme.LeafCert
    dir: Path

    def client_files(self, name: str, ca: trustme.CA | None = None,
                     not_after: datetime.datetime | None = None) -> dict[str, Path]:
        """cert.pem/key.pem of a client certificate from `ca` (default: the engine's),
        with this PKI's CA as ca.pem."""
        leaf = (ca or self.ca).issue_cert(f"{name}@client", not_after=not_after)
        out = self.dir / name
        out.mkdir()
        leaf.cert_chain_pems[0].write_to_path(str(out / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(out / "key.pem"))
        self.ca.cert_pem.write_to_path(str(out / "ca.pem"))
        return {"ca": out / "ca.pem", "cert": out / "cert.pem", "key": out / "key.pem"}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    return Pki(ca, ca.issue_cert("127.0.0.1", "localhost"), tmp_path)


def server_context(pki: Pki, tls12: bool = False) -> ssl.SSLContext:
    """The engine's side: its certificate, and client certificates from the CA required.
    `tls12`: no TLS 1.3, so a refused client certificate fails the handshake itself (and
    the engine's alert reaches us); with TLS 1.3 it is checked after, as dockerd does."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.server.configure_cert(context)
    pki.ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers: ClassVar[dict[str, bytes]] = {"/_ping": b"OK", "/info": json.dumps(INFO).encode()}

    def do_GET(self) -> None:
        body = self.answers.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def posing_engine(pki: Pki, tls12: bool = False) -> Iterator[str]:
    """https://127.0.0.1:PORT posing as the engine (/_ping, /info), in a thread: a
    blocking TLS server sends its alerts before it closes, as dockerd does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EngineHandler)
    server.daemon_threads = True
    server.socket = server_context(pki, tls12).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine_url(pki: Pki) -> Iterator[str]:
    with posing_engine(pki) as url:
        yield url


@pytest.fixture
def engine12_url(pki: Pki) -> Iterator[str]:
    with posing_engine(pki, tls12=True) as url:
        yield url


async def failure(engine: DockerEngine, path: str = "/info") -> str:
    try:
        with pytest.raises(EngineUnavailable) as info:
            await engine.get(path)
    finally:
        await engine.close()
    message = info.value.message
    assert "\n" not in message
    return message


async def test_tls_with_the_right_ca_and_certificate(pki: Pki, engine_url: str) -> None:
    engine = DockerEngine(EngineTarget(engine_url, **pki.client_files("good")))
    try:
        assert engine.transport.base.startswith("https://127.0.0.1:")
        assert await engine.get("/info") == INFO
        assert await engine.ping()
        assert not engine.transport.hands_over
    finally:
        await engine.close()


async def test_a_wrong_ca_is_refused_with_one_line(pki: Pki, engine_url: str) -> None:
    files = pki.client_files("good")
    trustme.CA().cert_pem.write_to_path(str(files["ca"]))  # not the engine's CA
    message = await failure(DockerEngine(EngineTarget(engine_url, **files)))
    assert message.startswith("TLS: certificate verify failed: "), message
    assert "self-signed certificate in certificate chain" in message
    assert engine_url.removeprefix("tcp://") in message


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    pki = Pki(ca := trustme.CA(), ca.issue_cert("engine.example"), tmp_path)
    with posing_engine(pki) as url:
        message = await failure(DockerEngine(EngineTarget(url, **pki.client_files("c"))))
        assert message.startswith("TLS: certificate verify failed: "), message
        assert "mismatch" in message.lower()


async def test_a_client_certificate_from_another_ca_is_refused(
        pki: Pki, engine12_url: str) -> None:
    files = pki.client_files("stranger", ca=trustme.CA())
    message = await failure(DockerEngine(EngineTarget(engine12_url, **files)))
    assert message == (f"TLS: the engine at {engine12_url.removeprefix('tcp://')} refused "
                       "the client certificate (tlsv1 alert unknown ca)"), message


async def test_an_expired_client_certificate_is_refused(pki: Pki, engine12_url: str) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    files = pki.client_files("expired", not_after=past)
    message = await failure(DockerEngine(EngineTarget(engine12_url, **files)))
    assert message.endswith("refused the client certificate (sslv3 alert certificate "
                            "expired)"), message


async def test_a_client_certificate_refused_after_a_tls13_handshake(
        pki: Pki, engine_url: str) -> None:
    """TLS 1.3 (dockerd's default): the refusal comes after the handshake, and its alert
    is often lost in the reset that follows; either way the line says what to check."""
    files = pki.client_files("stranger", ca=trustme.CA())
    message = await failure(DockerEngine(EngineTarget(engine_url, **files)))
    where = engine_url.removeprefix("tcp://")
    assert message in (
        f"TLS: the engine at {where} refused the client certificate (tlsv1 alert unknown ca)",
        f"TLS: the engine at {where} closed the connection: it refused the client "
        f"certificate {files['cert']} (not from its CA, or expired?) or it is not a TLS engine",
    ), message


async def test_no_tls_verify_accepts_any_engine_and_warns(
        pki: Pki, engine_url: str, caplog: pytest.LogCaptureFixture) -> None:
    files = pki.client_files("good")
    trustme.CA().cert_pem.write_to_path(str(files["ca"]))
    with caplog.at_level(logging.WARNING, "openpanel_ws.engine.transport"):
        engine = DockerEngine(EngineTarget(engine_url, **files, tls_verify=False))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "TLS verification is OFF" in warnings[0]
    try:
        assert await engine.get("/info") == INFO
    finally:
        await engine.close()


async def test_a_missing_certificate_file_is_one_line(pki: Pki, engine_url: str) -> None:
    files = pki.client_files("good")
    files["key"].unlink()
    message = await failure(DockerEngine(EngineTarget(engine_url, **files)))
    assert message.startswith("TLS: cannot load "), message
    assert str(files["key"]) in message


async def test_connection_refused_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    message = await failure(DockerEngine(f"tcp://127.0.0.1:{port}"))
    assert message == f"127.0.0.1:{port}: connection refused"


# --- exec attach (hijack) over TLS ------------------------------------------------


async def _upgrade_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    body = await reader.readexactly(length)
    writer.write(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                 + b"attached " + body + b"\n")
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


async def test_exec_attach_over_tls(pki: Pki) -> None:
    server = await asyncio.start_server(_upgrade_then_echo, "127.0.0.1", 0,
                                        ssl=server_context(pki))
    port = server.sockets[0].getsockname()[1]
    engine = DockerEngine(EngineTarget(f"tcp://127.0.0.1:{port}", **pki.client_files("c")))
    try:
        reader, writer = await engine.hijack("/exec/abc/start", {"Tty": True})
        assert await reader.readline() == b'attached {"Tty":true}\n'
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"HELLO"
        writer.close()
    finally:
        await engine.close()
        server.close()
        await server.wait_closed()


def _blocking_upgrade_then_echo(conn: ssl.SSLSocket) -> None:
    """The engine's side of an attach, as dockerd (Go) does it: after our close_notify
    it reads EOF, and can still write."""
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        while chunk := conn.recv(4096):
            conn.sendall(chunk.upper())
        conn.sendall(b"[stdin closed]")
        conn.unwrap()


@contextlib.contextmanager
def blocking_attach_server(pki: Pki) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    context = server_context(pki)

    def serve() -> None:
        with contextlib.suppress(OSError):
            raw, _ = listener.accept()
            _blocking_upgrade_then_echo(context.wrap_socket(raw, server_side=True))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


async def test_exec_attach_over_tls_half_closes(pki: Pki) -> None:
    """Our end of input is TLS close_notify; the engine's output still arrives after."""
    with blocking_attach_server(pki) as port:
        engine = DockerEngine(EngineTarget(f"tcp://127.0.0.1:{port}", **pki.client_files("c")))
        try:
            reader, writer = await engine.hijack("/exec/abc/start", {"Tty": False})
            writer.write(b"abc")
            assert await asyncio.wait_for(reader.readexactly(3), 10) == b"ABC"
            assert writer.can_write_eof()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b"[stdin closed]"
            assert writer.transport.get_extra_info("sslcontext") is not None
            writer.close()
        finally:
            await engine.close()


async def test_exec_attach_over_tls_with_a_wrong_ca(pki: Pki) -> None:
    server = await asyncio.start_server(_upgrade_then_echo, "127.0.0.1", 0,
                                        ssl=server_context(pki))
    port = server.sockets[0].getsockname()[1]
    files = pki.client_files("c")
    trustme.CA().cert_pem.write_to_path(str(files["ca"]))
    engine = DockerEngine(EngineTarget(f"tcp://127.0.0.1:{port}", **files))
    try:
        with pytest.raises(EngineUnavailable) as info:
            await engine.hijack("/exec/abc/start", {"Tty": True})
        assert info.value.message.startswith("TLS: certificate verify failed: ")
    finally:
        await engine.close()
        server.close()
        await server.wait_closed()


# --- the connect timeout -----------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose connects hang: a listener with a full backlog that never accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fills the backlog; later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_the_connect_timeout_honours_the_engine_timeout(unanswered_port: int) -> None:
    """Above aiohttp's old hard-coded 5 s connect bound: the engine timeout decides."""
    engine = DockerEngine(f"tcp://127.0.0.1:{unanswered_port}", timeout=5.8)
    assert engine.request_timeout.connect == engine.stream_timeout.connect == 5.8
    started = time.monotonic()
    message = await failure(engine, "/_ping")
    elapsed = time.monotonic() - started
    assert message == "no answer within 5.8 s", message
    assert 5.7 <= elapsed < 8, elapsed
