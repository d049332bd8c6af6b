"""The test hosts (docs/hosts.md "The test hosts"): what scripts/ensure-hosts.sh started, read
from its descriptor, and a TCP proxy that hangs.

- `hosts_descriptor()`: the descriptor (/var/tmp/openpanel-ws-hosts/hosts.json). Missing means the
  script did not run: a loud failure, never a skip (`make test` runs it first).
- `tls_host`, `ssh_host`, `engine2_unix_host`, `local_host`: `HostConfig`s for the gateway;
  `tls_toml`, `ssh_toml`: the same as `[[hosts]]` TOML for config-file and CLI tests.
- `docker2`, `docker2_sync`, `Engine2Containers`: the Docker CLI and busybox containers on
  engine2, over its unix socket.
- `HungProxy`: an asyncio TCP server on 127.0.0.1 that accepts and never answers until
  `release()`, then forwards to its target; `hang()` stalls it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import Containers, docker, docker_sync, scaled
from openpanel_ws.config import Settings
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-hosts.sh"
DESCRIPTOR = Path(os.environ.get("OPENPANEL_WS_HOSTS_DESCRIPTOR",
                                 "/var/tmp/openpanel-ws-hosts/hosts.json"))


@dataclass(frozen=True)
class HostsDescriptor:
    """The parsed descriptor; `raw` is the whole JSON for anything not named here."""

    raw: dict[str, Any]

    @property
    def engine2_unix(self) -> str:
        return str(self.raw["engine2"]["unix"])

    @property
    def engine2_socket(self) -> str:
        return str(self.raw["engine2"]["socket"])

    @property
    def tcp_url(self) -> str:
        return str(self.raw["engine2"]["tcp"])

    @property
    def tcp_port(self) -> int:
        return int(self.raw["engine2"]["tcp_port"])

    @property
    def certs(self) -> Path:
        return Path(self.raw["tls"]["certs"])

    @property
    def wrong_ca(self) -> Path:
        return Path(self.raw["tls"]["wrong_ca"])

    @property
    def expired(self) -> Path:
        return Path(self.raw["tls"]["expired"])

    @property
    def ssh_url(self) -> str:
        return str(self.raw["ssh"]["url"])

    @property
    def ssh_identity(self) -> Path:
        return Path(self.raw["ssh"]["identity"])

    @property
    def known_hosts(self) -> Path:
        return Path(self.raw["ssh"]["known_hosts"])

    @property
    def known_hosts_mismatch(self) -> Path:
        """A known_hosts naming [127.0.0.1]:PORT with another key than the sshd's."""
        return Path(self.raw["ssh"]["known_hosts_mismatch"])

    @property
    def known_hosts_empty(self) -> Path:
        """A known_hosts that does not list the sshd at all (an unknown host key)."""
        return Path(self.raw["ssh"]["known_hosts_empty"])

    @property
    def remote_socket(self) -> str:
        return str(self.raw["ssh"]["remote_socket"])


@functools.cache
def hosts_descriptor() -> HostsDescriptor:
    """The descriptor; AssertionError (a failure, not a skip) when the script did not run."""
    if not DESCRIPTOR.is_file():
        raise AssertionError(f"{DESCRIPTOR} is missing: run `make engine` "
                             "(scripts/ensure-docker.sh starts the test hosts)")
    return HostsDescriptor(json.loads(DESCRIPTOR.read_text()))


# --- host configurations -------------------------------------------------------------


def local_host(host_id: str = "local", **options: Any) -> HostConfig:
    """The main engine (DOCKER_HOST, else the local socket)."""
    return HostConfig(host_id, EngineTarget(Settings().docker_host), **options)


def engine2_unix_host(host_id: str = "engine2", **options: Any) -> HostConfig:
    return HostConfig(host_id, EngineTarget(hosts_descriptor().engine2_unix), **options)


def tls_host(host_id: str = "tls", *, certs: Path | None = None, url: str | None = None,
             **options: Any) -> HostConfig:
    """engine2 over TCP + TLS; `certs` another client directory (`wrong_ca`, `expired`),
    `url` another address (a `HungProxy`'s `url`: the server name stays 127.0.0.1)."""
    hosts = hosts_descriptor()
    directory = certs or hosts.certs
    target = EngineTarget(url or hosts.tcp_url, ca=directory / "ca.pem",
                          cert=directory / "cert.pem", key=directory / "key.pem")
    return HostConfig(host_id, target, **options)


def ssh_host(host_id: str = "ssh", *, known_hosts: Path | None = None, url: str | None = None,
             socket: str | None = None, **options: Any) -> HostConfig:
    """engine2 through the test sshd; `known_hosts` another file (`known_hosts_empty`,
    `known_hosts_mismatch`), `socket` another remote socket."""
    hosts = hosts_descriptor()
    target = EngineTarget(url or hosts.ssh_url, ssh_known_hosts=known_hosts or hosts.known_hosts,
                          ssh_identity=hosts.ssh_identity,
                          ssh_socket=socket or hosts.remote_socket)
    return HostConfig(host_id, target, **options)


def tls_toml(host_id: str = "tls", *, certs: Path | None = None, url: str | None = None) -> str:
    hosts = hosts_descriptor()
    return (f'[[hosts]]\nid = "{host_id}"\nengine = "{url or hosts.tcp_url}"\n'
            f'certs = "{certs or hosts.certs}"\n')


def ssh_toml(host_id: str = "ssh", *, known_hosts: Path | None = None) -> str:
    hosts = hosts_descriptor()
    return (f'[[hosts]]\nid = "{host_id}"\nengine = "{hosts.ssh_url}"\n'
            f'identity = "{hosts.ssh_identity}"\n'
            f'known_hosts = "{known_hosts or hosts.known_hosts}"\n'
            f'socket = "{hosts.remote_socket}"\n')


# --- engine2 -------------------------------------------------------------------------


async def docker2(*args: str, check: bool = True, timeout: float = 60,
                  merge_stderr: bool = False) -> str:
    """`docker ARGS...` against engine2 (its unix socket), awaited."""
    return await docker("-H", hosts_descriptor().engine2_unix, *args, check=check, timeout=timeout,
                        merge_stderr=merge_stderr)


def docker2_sync(*args: str, check: bool = True, timeout: float = 60) -> str:
    return docker_sync("-H", hosts_descriptor().engine2_unix, *args, check=check, timeout=timeout)


def restart_engine2(timeout: float = 90) -> None:
    """Stop engine2 (SIGTERM, waits for it) and start it again: ONLY in a `serial` test."""
    subprocess.run(["bash", str(SCRIPT), "restart-engine2"], check=True, timeout=scaled(timeout),
                   capture_output=True)


class Engine2Containers(Containers):
    """`Containers` (busybox, removed after) on engine2."""

    async def run(self, command: str = "sleep 3600", *, name: str | None = None,
                  options: Any = (), detach: bool = True) -> str:
        name, args = self._run_args(command, name, options, detach)
        await docker2(*args)
        return name

    async def id_of(self, name: str) -> str:
        return await docker2("inspect", "-f", "{{.Id}}", name)

    async def logs(self, name: str) -> str:
        return await docker2("logs", name, check=False, merge_stderr=True)

    async def has_process(self, name: str, needle: str) -> bool:
        out = await docker2("exec", name, "ps", "-o", "stat,args", check=False)
        return any(needle in row and not row.lstrip().startswith("Z") and "ps -o" not in row
                   for row in out.splitlines()[1:])

    async def cleanup(self) -> None:
        if self.names:
            await docker2("rm", "-f", *self.names, check=False)
            self.names.clear()

    def cleanup_sync(self) -> None:
        if self.names:
            docker2_sync("rm", "-f", *self.names, check=False)
            self.names.clear()


# --- the hung proxy ------------------------------------------------------------------


class HungProxy:
    """A TCP proxy on 127.0.0.1 in front of `target` (host, port) that starts hung: it accepts
    every connection and answers nothing. `release()` lets traffic through (what a hung
    connection sent meanwhile is delivered then, so a stalled TLS handshake completes);
    `hang()` stalls every connection again, open ones too. `close()` closes the listener and
    every connection it holds.

        async with HungProxy(("127.0.0.1", port)) as proxy:
            host = tls_host("hung", url=proxy.url)
    """

    def __init__(self, target: tuple[str, int], *, hung: bool = True) -> None:
        self.target = target
        self._open = asyncio.Event()
        if not hung:
            self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def hung(self) -> bool:
        return not self._open.is_set()

    @property
    def connections(self) -> int:
        """Client connections open right now."""
        return sum(1 for task in self._tasks if not task.done())

    async def start(self) -> HungProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def release(self) -> None:
        self._open.set()

    def hang(self) -> None:
        self._open.clear()

    async def drop(self) -> None:
        """Close every open connection (the listener stays)."""
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), scaled(5))
            self._server = None

    async def __aenter__(self) -> HungProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            first = await self._gate(reader)  # hung: read and hold, answer nothing
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._track(upstream)
            if first:
                upstream.write(first)
            back = asyncio.ensure_future(self._pump(up_reader, writer))
            try:
                await self._pump(reader, upstream)
            finally:
                back.cancel()
                await asyncio.gather(back, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _gate(self, reader: asyncio.StreamReader) -> bytes:
        """What the client sends while the proxy is hung, held until `release()`."""
        held = bytearray()
        while not self._open.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            opened = asyncio.ensure_future(self._open.wait())
            done, _ = await asyncio.wait({read, opened}, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                chunk = read.result()
                if not chunk:
                    opened.cancel()
                    raise asyncio.IncompleteReadError(bytes(held), None)
                held += chunk
            else:
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
                if not read.cancelled() and read.exception() is None:
                    held += read.result()  # it completed before the cancel took
            opened.cancel()
        return bytes(held)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            await self._open.wait()  # hang(): hold the bytes, deliver nothing
            writer.write(chunk)
            await writer.drain()
