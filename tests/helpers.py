"""Test helpers: a real WebSocket client, a real server, real containers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from openpanel_ws.auth import issue_token
from openpanel_ws.config import Settings, default_state_dir
from openpanel_ws.server import CLIENTS_KEY, SERVICES_KEY, create_app, create_runner
from openpanel_ws.services import Services

SECRET = "test-secret-" + "x" * 32
TEST_IMAGE = os.environ.get("OPENPANEL_WS_TEST_IMAGE", "openpanel-ws-test:busybox")

# Every timeout and "nothing more arrives" window of the tests is multiplied by this factor,
# so a slow machine can stretch them (as the `websockets` project's
# WEBSOCKETS_TESTS_TIMEOUT_FACTOR does). CI=true keeps 1: the waits are on conditions and
# passed under 3x CPU oversubscription, while 2 made the window-heavy files 30-45% slower
# (docs/testing.md).
TIMEOUT_FACTOR = float(os.environ.get("OPENPANEL_WS_TEST_TIMEOUT_FACTOR", "1"))
SECOND = 1.0 * TIMEOUT_FACTOR  # one second, scaled: `asyncio.sleep(0.5 * SECOND)`


def scaled(seconds: float) -> float:
    """`seconds` multiplied by the timeout factor."""
    return seconds * TIMEOUT_FACTOR


def deadline(seconds: float) -> float:
    """The `time.monotonic()` value `seconds` (scaled) from now."""
    return time.monotonic() + scaled(seconds)


async def loop_turns(count: int = 1) -> None:
    """Let the event loop run `count` turns (its `call_soon` callbacks and ready tasks): how a
    test waits for work scheduled on the loop, in place of a fixed sleep."""
    for _ in range(count):
        await asyncio.sleep(0)


def make_token(sub: str = "tester", *, roles: Sequence[str] = ("admin",), secret: str = SECRET,
               **kwargs: Any) -> str:
    return issue_token(secret, subject=sub, roles=roles, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WsClient:
    """A WebSocket client speaking the protocol, with helpers to wait for a type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self._session = session
        self.welcome: dict[str, Any] | None = None
        self.backlog: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message; `timeout` (like every timeout here) is scaled by the factor."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._recv_raw(scaled(timeout))

    async def recv_by(self, deadline: float) -> dict[str, Any]:
        """The next message by `deadline`, a `time.monotonic()` value from `deadline()`
        (already scaled): for loops that share one budget across many receives."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._recv_raw(max(0.001, deadline - time.monotonic()))

    async def _recv_raw(self, timeout: float) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        while msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):  # autoping=False
            msg = await self.ws.receive(timeout=timeout)
        if msg.type is aiohttp.WSMsgType.TEXT:
            value: dict[str, Any] = orjson.loads(msg.data)
            return value
        raise ConnectionClosed(msg.type, self.ws.close_code, msg.extra)

    async def expect(self, kind: str | None, timeout: float = 5.0,
                     where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next message of `kind` (None: any) that `where` accepts; others are kept in
        order for later `recv`. `timeout` is scaled by the factor."""
        return await self._expect_by(kind, deadline(timeout), where)

    async def expect_many(self, kind: str | None, count: int, timeout: float = 5.0,
                          where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Exactly the next `count` messages of `kind`; `timeout` bounds the whole wait."""
        by = deadline(timeout)
        out = []
        for _ in range(count):
            try:
                out.append(await self._expect_by(kind, by, where))
            except TimeoutError:
                raise TimeoutError(f"{len(out)} of {count} {kind!r} within {scaled(timeout)}s; "
                                   f"saw {self.backlog[-5:]}") from None
        return out

    async def _expect_by(self, kind: str | None, by: float,
                         where: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any]:
        """`expect` with a `time.monotonic()` deadline that several waits can share."""
        for i, queued in enumerate(self.backlog):
            if kind in (None, queued.get("type")) and (where is None or where(queued)):
                return self.backlog.pop(i)
        while True:
            left = by - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} in time; saw {self.backlog[-5:]}")
            msg = await self._recv_raw(left)
            if kind in (None, msg.get("type")) and (where is None or where(msg)):
                return msg
            if msg.get("type") != "ping":
                self.backlog.append(msg)

    async def quiet(self, seconds: float, kind: str | None = None) -> list[dict[str, Any]]:
        """What arrives (of `kind`) in a window of `seconds`, scaled: for assertions that
        nothing (more) comes, where there is no event to await. A longer window only makes
        such an assertion stricter."""
        return await self.collect(scaled(seconds), kind)

    async def collect(self, seconds: float, kind: str | None = None) -> list[dict[str, Any]]:
        """Everything received for exactly `seconds` (optionally only one type), with
        what is in `backlog`. Not scaled: for windows that are themselves the measurement
        (samples per interval); `quiet` is for absences, `expect*` for waits."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        pending, self.backlog = self.backlog, []
        out.extend(pending)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(await self._recv_raw(left))
            except TimeoutError:
                break
        return [m for m in out if kind is None or m.get("type") == kind]

    async def round_trip(self, timeout: float = 5.0) -> None:
        """A ping answered: everything the server sent before the pong has arrived (kept in
        `backlog`). The server writes one connection's messages in order, so this is the
        acknowledgement to await instead of a pause for messages in flight."""
        await self.send({"type": "ping"})
        await self.expect("pong", timeout)

    async def auth(self, token: str | None = None) -> dict[str, Any]:
        await self.send({"type": "auth", "token": token or make_token()})
        return await self.expect("authenticated")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return self.ws.close_code
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.backlog.append(orjson.loads(msg.data))
        raise TimeoutError("connection still open")

    async def close(self) -> None:
        await self.ws.close()
        await self._session.close()


class TerminalClient:
    """A /ws/terminal client that paces its messages under the 10/s limit (~8/s) and
    sets output aside (`take_output`), so `next_other` returns the next message that
    is neither output nor a ping."""

    PACE = 0.125  # seconds between messages

    def __init__(self, client: WsClient, timeout: float = 30.0) -> None:
        self.client = client
        self.timeout = timeout
        self.others: list[dict[str, Any]] = []  # everything else, in order
        self._last_send = 0.0

    async def send(self, message: dict[str, Any]) -> None:
        wait = self._last_send + self.PACE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = time.monotonic()
        await self.client.send(message)

    async def open(self, container: str, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "open_terminal", "containerId": container, **fields})
        return await self.next_other()

    async def next_other(self, timeout: float | None = None) -> dict[str, Any]:
        by = deadline(self.timeout if timeout is None else timeout)
        while not self.others:
            self.take(await self.client.recv_by(by))
        return self.others.pop(0)

    def take(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "terminal_output":
            self.take_output(msg)
        elif msg.get("type") != "ping":
            self.others.append(msg)

    def take_output(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError


class ConnectionClosed(Exception):
    def __init__(self, kind: Any, code: int | None, extra: Any) -> None:
        super().__init__(f"connection closed ({kind}, code={code}, {extra!r})")
        self.code = code


@dataclass
class RunningServer:
    settings: Settings
    app: web.Application
    runner: web.AppRunner
    port: int
    clients: list[WsClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        return self.app[SERVICES_KEY]

    async def connect(self, path: str, *, auth: bool | str = False, headers: dict[str, str] | None = None,
                      read_welcome: bool = True, autoping: bool = True) -> WsClient:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(self.url + path, headers=headers, autoping=autoping,
                                      max_msg_size=0)
        client = WsClient(ws, session)
        self.clients.append(client)
        if read_welcome:
            client.welcome = await client.expect("connected")
        if auth:
            await client.auth(auth if isinstance(auth, str) else None)
        return client

    def connections(self) -> int:
        """How many WebSocket connections this server holds right now."""
        return len(self.app[CLIENTS_KEY])

    def authenticated(self) -> int:
        """How many connections to this server have authenticated (any gateway)."""
        return sum(1 for session in self.app[CLIENTS_KEY] if session.principal is not None)

    async def stop(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await self.runner.cleanup()


def make_settings(**overrides: Any) -> Settings:
    """Settings of an in-process test server: the test secret, any free port, and a state
    directory of its own (the terminal journal and handoff files are per server, so servers
    of parallel tests never claim each other's rows)."""
    settings = Settings(jwt_secret=SECRET, port=0,
                        state_dir=default_state_dir() / "tests" / uuid.uuid4().hex[:12])
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


async def start_server(**overrides: Any) -> RunningServer:
    settings = make_settings(**overrides)
    app = create_app(settings)
    runner = create_runner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningServer(settings, app, runner, port)


# --- containers ----------------------------------------------------------------------


async def docker(*args: str, check: bool = True, timeout: float = 60,
                 merge_stderr: bool = False) -> str:
    """`docker ARGS...` as a child process the loop awaits (the server under test keeps
    running meanwhile); its stdout (with its stderr when `merge_stderr`), stripped."""
    stderr = asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec("docker", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), scaled(timeout))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {(err or b'').decode().strip()}")
    return out.decode(errors="replace").strip()


def docker_sync(*args: str, check: bool = True, timeout: float = 60) -> str:
    """`docker` for sync fixtures and sync tests only (it blocks the calling thread)."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=scaled(timeout))
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def unique_name(prefix: str = "opws") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Containers:
    """Creates test containers from the offline busybox image and removes them after.

    The async methods are for async tests; `cleanup_sync` is for the sync fixture's teardown."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def _run_args(self, command: str, name: str | None, options: Sequence[str],
                  detach: bool) -> tuple[str, list[str]]:
        name = name or unique_name()
        self.names.append(name)
        return name, ["run", "-d" if detach else "--rm", "--name", name, *options, TEST_IMAGE,
                      "sh", "-c", command]

    async def run(self, command: str = "sleep 3600", *, name: str | None = None,
                  options: Sequence[str] = (), detach: bool = True) -> str:
        name, args = self._run_args(command, name, options, detach)
        await docker(*args)
        return name

    async def id_of(self, name: str) -> str:
        return await docker("inspect", "-f", "{{.Id}}", name)

    async def logs(self, name: str) -> str:
        """Everything `name` logged so far (stdout and stderr), by the Docker CLI."""
        return await docker("logs", name, check=False, merge_stderr=True)

    async def has_process(self, name: str, needle: str) -> bool:
        """Whether a live process in `name` has `needle` in its command line (`ps`)."""
        out = await docker("exec", name, "ps", "-o", "stat,args", check=False)
        return any(needle in row and not row.lstrip().startswith("Z") and "ps -o" not in row
                   for row in out.splitlines()[1:])

    async def wait_logged(self, name: str, text: str, timeout: float = 20.0) -> None:
        """Until `name` has logged `text` (the engine's own log, not the gateway's)."""
        async def logged() -> bool:
            return text in await self.logs(name)

        await eventually(logged, timeout, step=0.1, what=f"{name} logged {text!r}")

    async def cleanup(self) -> None:
        if self.names:
            await docker("rm", "-f", *self.names, check=False)
            self.names.clear()

    def cleanup_sync(self) -> None:
        if self.names:
            docker_sync("rm", "-f", *self.names, check=False)
            self.names.clear()


@contextlib.asynccontextmanager
async def running_server(**overrides: Any) -> AsyncIterator[RunningServer]:
    server = await start_server(**overrides)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def server_factory() -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """A factory of servers with settings overridden; every one is stopped on exit."""
    started: list[RunningServer] = []

    async def factory(**overrides: Any) -> RunningServer:
        srv = await start_server(**overrides)
        started.append(srv)
        return srv

    try:
        yield factory
    finally:
        for srv in started:
            await srv.stop()


async def run_for(*args: str, seconds: float) -> str:
    """Run a program for at most `seconds`; everything it printed until then."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    output = asyncio.ensure_future(proc.stdout.read())  # kept whole across the timeout
    try:
        await asyncio.wait_for(proc.wait(), seconds)
    except TimeoutError:
        proc.terminate()
        await proc.wait()
    return (await output).decode()


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0,
                     step: float = 0.05, what: str = "condition") -> None:
    """Until `predicate()` (a bool or an awaitable of one) is true; fails after `timeout`
    (scaled). `step` is only the polling period, never a wait for anything."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = predicate()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {scaled(timeout)}s")
        await asyncio.sleep(step)
