"""The SSH transport against an in-process asyncssh server that forwards to a local unix
socket posing as the engine: one SSH connection however many streams, channels for HTTP
and exec attach (half-close included), the dial-stdio fallback, reconnecting after a
loss, and the one-line errors (unknown host key, no known_hosts, auth refused, refused)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import orjson
import pytest
from aiohttp import web

from openpanel_ws.engine.client import DockerEngine, EngineUnavailable
from openpanel_ws.engine.ssh import SshTransport
from openpanel_ws.engine.target import EngineTarget

INFO = {"ID": "ssh-engine", "Name": "posing"}


@dataclass
class SshServer:
    port: int
    known_hosts: Path
    identity: Path
    connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    channels: int = 0
    dial_stdio: list[str] = field(default_factory=list)
    streamlocal: bool = True

    def target(self, socket_path: str, **kwargs: Any) -> EngineTarget:
        options: dict[str, Any] = {"ssh_known_hosts": self.known_hosts,
                                   "ssh_identity": self.identity, "ssh_socket": socket_path}
        options.update(kwargs)
        return EngineTarget(f"ssh://tester@127.0.0.1:{self.port}", **options)


async def _pipe_to_socket(path: str, reader: Any, writer: Any) -> None:
    """A channel (or a dial-stdio process) to the unix socket at `path`."""
    sock_reader, sock_writer = await asyncio.open_unix_connection(path)

    async def copy(src: Any, dst: Any) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.write_eof()

    await asyncio.gather(copy(reader, sock_writer), copy(sock_reader, writer))
    sock_writer.close()


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[SshServer]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    identity = tmp_path / "id_ed25519"
    client_key.write_private_key(str(identity))
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    holder: list[SshServer] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            holder[0].connections.append(conn)

        def unix_connection_requested(self, dest_path: str) -> Any:
            if not holder[0].streamlocal:
                raise asyncssh.ChannelOpenError(
                    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "administratively prohibited")
            holder[0].channels += 1
            return True  # asyncssh forwards to dest_path, as sshd does

    async def process(proc: asyncssh.SSHServerProcess[bytes]) -> None:
        command = proc.command or ""
        holder[0].dial_stdio.append(command)
        path = command.split("unix://", 1)[1].split(" ", 1)[0]
        try:
            await _pipe_to_socket(path, proc.stdin, proc.stdout)
        except OSError as exc:  # as the docker CLI says it
            proc.stderr.write(f"error during connect: dial unix {path}: {exc.strerror}\n".encode())
            proc.exit(1)
        else:
            proc.exit(0)

    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized,
        server_factory=Server, process_factory=process, encoding=None)
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n")
    holder.append(SshServer(port, known_hosts, identity))
    try:
        yield holder[0]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def engine_socket(tmp_path: Path) -> AsyncIterator[str]:
    """A unix socket posing as the engine: /_ping, /info, and /events (a stream)."""
    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def info(_: web.Request) -> web.Response:
        return web.json_response(INFO)

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(orjson.dumps({"Type": "container", "Action": "start"}) + b"\n")
        await asyncio.Event().wait()  # open until the client goes
        return response

    app = web.Application()
    app.router.add_get("/_ping", ping)
    app.router.add_get("/info", info)
    app.router.add_get("/events", events)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    path = str(tmp_path / "engine.sock")
    await web.UnixSite(runner, path).start()
    try:
        yield path
    finally:
        await runner.cleanup()


@pytest.fixture
async def engine(sshd: SshServer, engine_socket: str) -> AsyncIterator[DockerEngine]:
    client = DockerEngine(sshd.target(engine_socket))
    try:
        yield client
    finally:
        await client.close()


def transport(engine: DockerEngine) -> SshTransport:
    assert isinstance(engine.transport, SshTransport)
    return engine.transport


async def first_event(engine: DockerEngine, opened: asyncio.Event) -> bytes:
    async with contextlib.aclosing(engine.stream_chunks("/events")) as chunks:
        async for _chunk in chunks:
            opened.set()
            await asyncio.Event().wait()
    return b""


async def test_one_ssh_connection_however_many_streams(
        engine: DockerEngine, sshd: SshServer) -> None:
    opened = [asyncio.Event() for _ in range(4)]
    streams = [asyncio.create_task(first_event(engine, e)) for e in opened]
    try:
        async with asyncio.timeout(10):
            for event in opened:
                await event.wait()
            answers = await asyncio.gather(*(engine.get("/info") for _ in range(8)))
        assert answers == [INFO] * 8
        assert engine.open_streams == 4
        assert len(sshd.connections) == 1 and transport(engine).connections_made == 1
        assert sshd.channels >= 5  # a channel per engine connection
    finally:
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    assert not transport(engine).dial_stdio and not sshd.dial_stdio


async def test_the_bridge_is_private(engine: DockerEngine) -> None:
    assert await engine.ping()
    path = transport(engine).path
    directory = os.path.dirname(path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    await engine.close()
    with pytest.raises(FileNotFoundError):
        os.stat(directory)


async def test_reconnects_after_the_connection_is_lost(
        engine: DockerEngine, sshd: SshServer) -> None:
    assert await engine.get("/info") == INFO
    sshd.connections[0].close()
    await sshd.connections[0].wait_closed()
    client_side = transport(engine)._conn
    assert client_side is not None
    async with asyncio.timeout(10):
        await client_side.wait_closed()
        # the pool's idle connection died with its channel: the next request reconnects
        for _ in range(3):
            with contextlib.suppress(EngineUnavailable):
                if await engine.get("/info") == INFO:
                    break
    assert len(sshd.connections) == 2 and transport(engine).connections_made == 2


async def test_dial_stdio_when_streamlocal_is_refused(
        engine: DockerEngine, sshd: SshServer, engine_socket: str) -> None:
    sshd.streamlocal = False
    assert await engine.get("/info") == INFO
    assert await engine.get("/_ping") == "OK"
    assert transport(engine).dial_stdio
    assert sshd.dial_stdio[0] == f"docker -H unix://{engine_socket} system dial-stdio"
    assert len(sshd.connections) == 1


async def _upgrade_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    writer.write(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.write(b"[stdin closed]")  # after the half-close, output still flows
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("streamlocal", [True, False], ids=["streamlocal", "dial-stdio"])
async def test_exec_attach_with_a_half_close(
        sshd: SshServer, tmp_path: Path, streamlocal: bool) -> None:
    sshd.streamlocal = streamlocal
    path = str(tmp_path / "attach.sock")
    server = await asyncio.start_unix_server(_upgrade_then_echo, path)
    engine = DockerEngine(sshd.target(path))
    try:
        reader, writer = await engine.hijack("/exec/abc/start", {"Tty": True})
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"HELLO"
        assert writer.can_write_eof()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b"[stdin closed]"
        writer.close()
    finally:
        await engine.close()
        server.close()


async def failure(target: EngineTarget) -> str:
    engine = DockerEngine(target)
    try:
        with pytest.raises(EngineUnavailable) as info:
            await engine.get("/info")
    finally:
        await engine.close()
    assert "\n" not in info.value.message
    return info.value.message


async def test_an_unknown_host_key_is_refused(sshd: SshServer, engine_socket: str) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other}")
    message = await failure(sshd.target(engine_socket))
    assert message == (f"ssh tester@127.0.0.1:{sshd.port}: host key is not in "
                       f"{sshd.known_hosts}: refused (check the key, then add it with "
                       "ssh-keyscan)")
    assert not sshd.channels


async def test_no_known_hosts_file_is_refused(
        sshd: SshServer, engine_socket: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    message = await failure(sshd.target(engine_socket, ssh_known_hosts=missing))
    assert message == (f"ssh tester@127.0.0.1:{sshd.port}: known_hosts file {missing} not "
                       "found (host keys are never accepted unchecked)")
    assert not sshd.connections


async def test_a_refused_key_is_one_line(
        sshd: SshServer, engine_socket: str, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    message = await failure(sshd.target(engine_socket, ssh_identity=stranger))
    assert message.startswith(f"ssh tester@127.0.0.1:{sshd.port}: authentication refused ("), message


async def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text("")
    message = await failure(EngineTarget(f"ssh://me@127.0.0.1:{port}", ssh_known_hosts=known))
    assert message == f"ssh me@127.0.0.1:{port}: connection refused"


async def test_a_missing_engine_socket_is_one_line(sshd: SshServer, tmp_path: Path) -> None:
    """Neither a channel nor dial-stdio reaches it: both reasons, in one line."""
    path = tmp_path / "no-engine.sock"
    message = await failure(sshd.target(str(path)))
    assert message == (f"ssh tester@127.0.0.1:{sshd.port}: cannot reach the engine socket "
                       f"{path}: [Errno 2] No such file or directory; docker system "
                       f"dial-stdio: error during connect: dial unix {path}: No such file or "
                       "directory"), message


async def test_exec_attach_to_a_missing_engine_socket_is_one_line(
        sshd: SshServer, tmp_path: Path) -> None:
    path = tmp_path / "no-engine.sock"
    engine = DockerEngine(sshd.target(str(path)))
    try:
        with pytest.raises(EngineUnavailable) as info:
            await engine.hijack("/exec/abc/start", {"Tty": True})
    finally:
        await engine.close()
    assert info.value.message.startswith(
        f"exec attach failed: ssh tester@127.0.0.1:{sshd.port}: cannot reach the engine socket "
        f"{path}: "), info.value.message
