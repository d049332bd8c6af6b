"""The SSH transport: ONE SSH connection per host, every engine connection a channel on it.

docs/hosts.md "What each transport supports". The connection is opened on first use,
reopened after it is lost, and kept alive (`keepalive_interval`). Each engine HTTP
connection and each exec attach is a channel to the remote engine socket
(`ssh_socket`, direct-streamlocal); when the server refuses streamlocal forwarding, a
`docker system dial-stdio` process on the host instead.

aiohttp is plugged in without touching its internals: a unix listener in a private
(0700) directory whose every accepted connection is piped to a new channel, and aiohttp's
`UnixConnector` (and `open_raw` for exec attach) on that path.

Host keys are checked against `known_hosts` (default ``~/.ssh/known_hosts``); an unknown
key is refused, never accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import asyncssh

from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.engine.transport import Streams, Transport, TransportError, causes

__all__ = [
    "SshTransport",
    "ssh_error_line",
]

log = logging.getLogger(__name__)

CHUNK = 65536


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...


def ssh_error_line(exc: BaseException, where: str, known_hosts: Path, timeout: float) -> str:
    """The one line an SSH connection failure becomes."""
    for cause in causes(exc):
        if isinstance(cause, asyncssh.HostKeyNotVerifiable):
            return (f"ssh {where}: host key is not in {known_hosts}: refused (check the key, "
                    f"then add it with ssh-keyscan)")
        if isinstance(cause, asyncssh.PermissionDenied):
            return f"ssh {where}: authentication refused ({cause.reason})"
        if isinstance(cause, ConnectionRefusedError):
            return f"ssh {where}: connection refused"
        if isinstance(cause, TimeoutError):
            return f"ssh {where}: no answer within {timeout:g} s"
        if isinstance(cause, asyncssh.Error):
            return f"ssh {where}: {cause.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"ssh {where}: {exc.strerror}"
    return f"ssh {where}: {exc or type(exc).__name__}"


async def _copy(reader: _Reader, writer: _Writer) -> None:
    """Bytes from `reader` to `writer`; the end of input becomes a half-close."""
    with contextlib.suppress(OSError, asyncssh.Error, asyncio.IncompleteReadError):
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _pipe(local: tuple[_Reader, _Writer], remote: tuple[_Reader, _Writer],
                half_close: bool) -> None:
    """Both directions. The end of the engine's output (or a break) closes both. The end
    of ours closes both too (aiohttp ends a connection), or, for exec attach
    (`half_close`), half-closes the channel: the exec's stdin ends, its output flows on."""
    sending = asyncio.ensure_future(_copy(local[0], remote[1]))
    receiving = asyncio.ensure_future(_copy(remote[0], local[1]))
    try:
        await (receiving if half_close else asyncio.wait(
            [sending, receiving], return_when=asyncio.FIRST_COMPLETED))
    finally:
        sending.cancel()
        receiving.cancel()
        for writer in (local[1], remote[1]):
            with contextlib.suppress(Exception):
                writer.close()


class _DialStdio:
    """The output of a dial-stdio process; when it ends before any byte, why it did
    (its stderr) becomes the transport's `last_error`."""

    def __init__(self, transport: SshTransport,
                 process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.transport = transport
        self.process = process
        self.received = False

    async def read(self, n: int = -1) -> bytes:
        data = await self.process.stdout.read(n)
        if data:
            self.received = True
        elif not self.received:
            with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                async with asyncio.timeout(2):
                    stderr = await self.process.stderr.read()
                    await self.process.wait_closed()
                    if self.process.exit_status not in (None, 0) or stderr:
                        self.transport.dial_stdio_failed(stderr.decode("utf-8", "replace"))
        return data


class SshTransport(Transport):
    hands_over = False  # the SSH connection does not survive a re-exec

    def __init__(self, target: EngineTarget, timeout: float) -> None:
        super().__init__(target, timeout)
        parts = urlsplit(target.url)
        self.host = parts.hostname or ""
        self.port = parts.port or 22
        self.user = parts.username
        self.where = (f"{self.user}@" if self.user else "") + f"{self.host}:{self.port}"
        self.known_hosts = target.ssh_known_hosts or Path.home() / ".ssh" / "known_hosts"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._dir: str | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self.dial_stdio = False  # the server refused streamlocal: use docker system dial-stdio
        self.connections_made = 0  # SSH connections opened so far (tests: exactly one)
        self.last_error: str | None = None
        self._streamlocal_error = "streamlocal forwarding not tried"

    @property
    def path(self) -> str:
        """The bridge for aiohttp's connections."""
        assert self._dir is not None, "ready() first"
        return os.path.join(self._dir, "engine.sock")

    @property
    def attach_path(self) -> str:
        """The bridge for exec attach (a half-close is passed on)."""
        assert self._dir is not None, "ready() first"
        return os.path.join(self._dir, "attach.sock")

    # --- the one SSH connection ----------------------------------------------------

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The SSH connection, opened (or reopened after a loss) if need be."""
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = await self._connect()
            self.connections_made += 1
            log.info("ssh %s: connected (engine socket %s)", self.where, self.target.ssh_socket)
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if not self.known_hosts.is_file():
            raise TransportError(f"ssh {self.where}: known_hosts file {self.known_hosts} not "
                                 "found (host keys are never accepted unchecked)")
        options: dict[str, Any] = {
            "known_hosts": str(self.known_hosts),
            "keepalive_interval": self.target.ssh_keepalive,
            "keepalive_count_max": 3,
        }
        if self.user:
            options["username"] = self.user
        if self.target.ssh_identity is not None:
            options["client_keys"] = [str(self.target.ssh_identity)]
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncssh.connect(self.host, self.port, **options)
        except (OSError, asyncssh.Error, TimeoutError, ValueError) as exc:
            line = ssh_error_line(exc, self.where, self.known_hosts, self.timeout)
            self.last_error = line
            raise TransportError(line) from None

    # --- channels ------------------------------------------------------------------

    async def open_channel(self) -> tuple[_Reader, _Writer]:
        """A new channel to the engine socket (or a dial-stdio process)."""
        conn = await self.connection()
        if not self.dial_stdio:
            try:
                return await conn.open_unix_connection(self.target.ssh_socket)
            except asyncssh.ChannelOpenError as exc:
                # OpenSSH answers a refused streamlocal and a missing socket alike.
                log.info("ssh %s: no channel to %s (%s); trying docker system dial-stdio",
                         self.where, self.target.ssh_socket, exc.reason)
                self._streamlocal_error = exc.reason
                self.dial_stdio = True
        command = f"docker -H unix://{shlex.quote(self.target.ssh_socket)} system dial-stdio"
        process = await conn.create_process(command, encoding=None)
        return _DialStdio(self, process), process.stdin

    def dial_stdio_failed(self, stderr: str) -> None:
        why = stderr.strip().splitlines()[-1] if stderr.strip() else "it ended at once"
        self.last_error = (f"ssh {self.where}: cannot reach the engine socket "
                           f"{self.target.ssh_socket}: {self._streamlocal_error}; "
                           f"docker system dial-stdio: {why}")
        log.warning("%s", self.last_error)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        half_close: bool) -> None:
        try:
            channel = await self.open_channel()
        except (OSError, asyncssh.Error) as exc:
            self.last_error = str(exc) if isinstance(exc, TransportError) else ssh_error_line(
                exc, self.where, self.known_hosts, self.timeout)
            log.warning("%s", self.last_error)
            writer.close()
            return
        if not isinstance(channel[0], _DialStdio):
            self.last_error = None
        await _pipe((reader, writer), channel, half_close)

    def _serve(self, half_close: bool) -> Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._accepted(reader, writer, half_close))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)
        return accepted

    # --- Transport -------------------------------------------------------------------

    async def ready(self) -> None:
        await self.connection()
        if not self._servers:
            self._dir = tempfile.mkdtemp(prefix="openpanel-ws-ssh-")  # 0700
            for path, half_close in ((self.path, False), (self.attach_path, True)):
                self._servers.append(await asyncio.start_unix_server(
                    self._serve(half_close), path=path, limit=CHUNK))

    def connector(self) -> aiohttp.BaseConnector:
        return aiohttp.UnixConnector(path=self.path, limit=0)

    async def open_raw(self) -> Streams:
        await self.ready()
        return await asyncio.open_unix_connection(self.attach_path)

    def explain(self, exc: BaseException) -> str:
        if isinstance(exc, TransportError):
            return str(exc)
        if self.last_error is not None and isinstance(
                exc, aiohttp.ServerDisconnectedError | ConnectionResetError
                | asyncio.IncompleteReadError):
            return self.last_error  # the bridge closed: why it could not open a channel
        return ssh_error_line(exc, self.where, self.known_hosts, self.timeout)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()
            self._conn = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
