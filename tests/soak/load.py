"""The soak's clients: long-lived followers and subscribers, and the churn (connections,
containers, terminals), each a coroutine that records what it saw in a `Tally`.

Every client is a plain aiohttp WebSocket on 127.0.0.1 speaking the protocol
(docs/protocol.md); nothing here reaches into the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from openpanel_ws.auth import issue_token

Message = dict[str, Any]
RECONNECT_PAUSE = 1.0  # seconds before a lost long-lived client connects again


@dataclass
class Tally:
    """What the clients saw: lines and their sequence faults, messages per kind, cycles
    done, errors (kept short), reconnects."""

    lines: int = 0
    gaps: int = 0  # lines missing between two a follower received
    duplicates: int = 0  # lines a follower received again (or out of order)
    reconnects: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    cycles: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def count(self, kind: str, table: str = "messages") -> None:
        bucket = getattr(self, table)
        bucket[kind] = bucket.get(kind, 0) + 1

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 50:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {text[:300]}")


class Closed(Exception):
    """The server closed the connection (code in the message)."""


class Client:
    """One WebSocket: JSON in and out, JSON pings answered, the welcome read."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        await self.ws.send_str(orjson.dumps(message).decode())

    async def recv(self, timeout: float) -> Message:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is aiohttp.WSMsgType.TEXT:
                value: Message = orjson.loads(msg.data)
                if value.get("type") == "ping":
                    await self.send({"type": "pong"})
                    continue
                return value
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            raise Closed(f"closed ({msg.type.name}, code {self.ws.close_code})")

    async def expect(self, kind: str, timeout: float, tally: Tally | None = None,
                     where: Callable[[Message], bool] | None = None) -> Message:
        """The next message of `kind`; others are dropped (an `error` among them is
        recorded in `tally` and fails the wait)."""
        by = time.monotonic() + timeout
        while True:
            left = by - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} within {timeout:.0f}s")
            msg = await self.recv(left)
            if msg.get("type") == kind and (where is None or where(msg)):
                return msg
            if msg.get("type") in ("error", "terminal_error"):
                raise RuntimeError(f"{msg.get('type')} while waiting for {kind}: {msg}")

    async def close(self) -> None:
        await self.ws.close()

    def abort(self) -> None:
        """Drop the socket without a closing handshake (a client that vanished)."""
        transport = self.ws._response.connection.transport if self.ws._response.connection else None
        if transport is not None:
            transport.abort()


@dataclass
class Target:
    """Where the clients go, with what: the server, the secret, the followed container."""

    url: str
    secret: str
    container: str
    session: aiohttp.ClientSession
    timeout: float = 30.0
    users: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def token(self, sub: str | None = None, **claims: Any) -> str:
        subject = sub or f"soak-{next(self.users)}"
        claims.setdefault("roles", ("admin",))
        return issue_token(self.secret, subject=subject, ttl_seconds=6 * 3600, **claims)

    async def connect(self, path: str, token: str | None = "", read_welcome: bool = True) -> Client:
        ws = await self.session.ws_connect(self.url + path, max_msg_size=0, heartbeat=None)
        client = Client(ws)
        if read_welcome:
            await client.expect("connected", self.timeout)
        if token is not None:
            await client.send({"type": "auth", "token": token or self.token()})
            await client.expect("authenticated", self.timeout)
        return client


# --- long-lived clients ------------------------------------------------------------------


async def persistent(target: Target, tally: Tally, stop: asyncio.Event, name: str,
                     body: Callable[[Client], Awaitable[None]], path: str) -> None:
    """Run `body` on a connection of `path` until `stop`; a lost connection is an error
    and a reconnect."""
    first = True
    while not stop.is_set():
        if not first:
            tally.reconnects += 1
        first = False
        client: Client | None = None
        try:
            client = await target.connect(path)
            await body(client)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded, then reconnect
            if stop.is_set():
                return
            tally.error(f"{name}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(RECONNECT_PAUSE)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()


def follower(target: Target, tally: Tally, stop: asyncio.Event) -> Callable[[Client], Awaitable[None]]:
    """Follows the container's numbered lines from now on (tail 0): each must be the
    previous one plus one."""

    async def body(client: Client) -> None:
        await client.send({"type": "subscribe_logs", "containerId": target.container, "tail": 0})
        await client.expect("subscribed_logs", target.timeout)
        last: int | None = None
        while not stop.is_set():
            try:
                msg = await client.recv(5.0)
            except TimeoutError:
                continue
            kind = msg.get("type", "?")
            if kind != "log":
                tally.count(kind)
                if kind in ("error", "subscription_ended"):
                    raise RuntimeError(f"follower got {msg}")
                continue
            tally.lines += 1
            number = int(msg["data"])
            if last is not None:
                if number <= last:
                    tally.duplicates += 1
                elif number > last + 1:
                    tally.gaps += number - last - 1
            last = max(number, last or 0)

    return body


def subscriber(target: Target, tally: Tally, stop: asyncio.Event, subscribe: Message | None,
               ack: str | None) -> Callable[[Client], Awaitable[None]]:
    """Subscribes (if `subscribe`), then counts what arrives by type until `stop`."""

    async def body(client: Client) -> None:
        if subscribe is not None:
            await client.send(subscribe)
            assert ack is not None
            await client.expect(ack, target.timeout)
        while not stop.is_set():
            try:
                msg = await client.recv(5.0)
            except TimeoutError:
                continue
            kind = msg.get("type", "?")
            tally.count(kind)
            if kind in ("error", "subscription_ended"):
                raise RuntimeError(f"subscriber got {msg}")

    return body


# --- churn: one cycle each ----------------------------------------------------------------


async def churn_once(target: Target, tally: Tally, n: int) -> None:
    """One connect, authenticate, subscribe and leave: seven shapes in turn, on every
    gateway, each with a subject of its own."""
    shape = n % 7
    c = target.container
    t = target.timeout
    if shape == 0:  # history and live lines, unsubscribe, close
        client = await target.connect("/ws/containers")
        await client.send({"type": "subscribe_logs", "containerId": c, "tail": 5})
        await client.expect("subscribed_logs", t)
        await client.expect("log", t)
        await client.send({"type": "unsubscribe_logs", "containerId": c})
        await client.expect("unsubscribed_logs", t)
        await client.close()
    elif shape == 1:  # metrics' first sample
        client = await target.connect("/ws/metrics")
        await client.send({"type": "subscribe", "interval": 1000})
        await client.expect("metrics", t)
        await client.close()
    elif shape == 2:  # events with filters
        client = await target.connect("/ws/logs")
        await client.send({"type": "subscribe", "filters": {"type": ["container"]}})
        await client.expect("subscribed", t)
        await client.close()
    elif shape == 3:  # stats, then the socket vanishes without a close
        client = await target.connect("/ws/containers", target.token(roles=(), containers=[c]))
        await client.send({"type": "subscribe_stats", "containerId": c, "interval": 1000})
        await client.expect("stats", t)
        client.abort()
    elif shape == 4:  # never authenticates
        client = await target.connect("/ws/terminal", token=None)
        await client.close()
    elif shape == 5:  # re-authentication, a ping
        sub = f"reauth-{n}"
        client = await target.connect("/ws/containers", target.token(sub))
        await client.send({"type": "auth", "token": target.token(sub, permissions=["terminal"])})
        await client.expect("authenticated", t)
        await client.send({"type": "ping"})
        await client.expect("pong", t)
        await client.close()
    else:  # a refused token: error and close 4001 expected
        client = await target.connect("/ws/metrics", token=None)
        await client.send({"type": "auth", "token": "not-a-token"})
        with contextlib.suppress(Closed):
            await _until_closed(client, t)
        await client.close()
    tally.count(f"shape{shape}", "cycles")


async def _until_closed(client: Client, timeout: float) -> None:
    by = time.monotonic() + timeout
    while time.monotonic() < by:
        msg = await client.recv(max(0.01, by - time.monotonic()))
        if msg.get("type") not in ("error",):
            raise RuntimeError(f"unexpected {msg} after a refused token")
    raise TimeoutError("not closed after a refused token")


async def container_once(target: Target, tally: Tally, n: int, image: str,
                         docker: Callable[..., Awaitable[str]]) -> None:
    """A container created, its logs and stats subscribed, removed: both subscriptions
    end with `subscription_ended`."""
    name = f"soak-eph-{time.monotonic_ns():x}"
    await docker("run", "-d", "--name", name, "--label", "openpanel-ws-soak=1", image,
                 "sh", "-c", "echo hello; sleep 3600")
    client: Client | None = None
    try:
        client = await target.connect("/ws/containers")
        await client.send({"type": "subscribe_logs", "containerId": name, "tail": "all"})
        await client.expect("subscribed_logs", target.timeout)
        await client.expect("log", target.timeout)
        await client.send({"type": "subscribe_stats", "containerId": name, "interval": 1000})
        await client.expect("stats", target.timeout)
    finally:
        await docker("rm", "-f", name, check=False)
    assert client is not None
    ended = set()
    while len(ended) < 2:
        msg = await client.expect("subscription_ended", target.timeout)
        ended.add(msg["subscription"])
    await client.close()
    tally.count("container", "cycles")


class TerminalUser:
    """A terminal cycle: open, type, then close / drop and resume / drop and abandon
    (the grace period kills the last)."""

    def __init__(self, target: Target, tally: Tally) -> None:
        self.target = target
        self.tally = tally

    async def _open(self, sub: str, **fields: Any) -> tuple[Client, Message]:
        client = await self.target.connect("/ws/terminal", self.target.token(sub, roles=(),
                                                                                permissions=["terminal"]))
        await client.send({"type": "open_terminal", "containerId": self.target.container, **fields})
        opened = await client.expect("terminal_opened", self.target.timeout)
        return client, opened

    async def _echo(self, client: Client, n: int) -> int:
        """Types a command whose output (not its echo) has a marker; the seq after it."""
        await client.send({"type": "input", "data": f"echo x$(({n}+1))y\n"})
        text, seq = "", 0
        by = time.monotonic() + self.target.timeout
        while f"x{n + 1}y" not in text:
            msg = await client.recv(max(0.01, by - time.monotonic()))
            if msg.get("type") == "terminal_output":
                text += msg["data"]
                seq = msg["seq"]
            elif msg.get("type") != "ping":
                raise RuntimeError(f"terminal: unexpected {msg}")
        return seq

    async def once(self, n: int) -> None:
        shape = n % 3
        sub = f"term-{n}"
        client, opened = await self._open(sub)
        seq = await self._echo(client, n)
        if shape == 0:
            await client.send({"type": "close_terminal"})
            closed = await client.expect("terminal_closed", self.target.timeout)
            if closed.get("reason") != "User closed":
                raise RuntimeError(f"terminal closed: {closed}")
            await client.close()
        elif shape == 1:
            client.abort()
            again, resumed = await self._open(sub, sessionId=opened["sessionId"], lastSeq=seq)
            if not resumed.get("resumed"):
                raise RuntimeError(f"not resumed: {resumed}")
            await self._echo(again, n + 1000)
            await again.send({"type": "close_terminal"})
            await again.expect("terminal_closed", self.target.timeout)
            await again.close()
        else:
            client.abort()  # detached: the grace period ends it
        self.tally.count(f"terminal{shape}", "cycles")
