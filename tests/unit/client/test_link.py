"""The asyncio shell of one gateway connection, against a scripted socket: `Link.apply`
carries out every action (no network, no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from openpanel_ws.client.actions import (
    Deliver,
    Disconnect,
    FetchToken,
    Finish,
    Shutdown,
    Status,
    TerminalOpened,
    TerminalRefused,
    UnhandledError,
)
from openpanel_ws.client.link import Consumer, Link
from openpanel_ws.client.messages import ClientError, ServerError, TerminalError
from openpanel_ws.client.policy import BackoffPolicy
from openpanel_ws.client.sansio import ClientSubscription, ConnectionConfig
from openpanel_ws.client.subscriptions import MetricsSubscription
from openpanel_ws.client.terminal import TerminalSubscription

URL = "ws://h:1/ws/metrics"


class ScriptedSocket:
    """What `ws_connect` returns: the messages the test puts, the texts the link sends."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed = False

    def put(self, msg: dict[str, Any]) -> None:
        self.incoming.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, orjson.dumps(msg).decode(), None))

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        return await self.incoming.get()

    async def send_str(self, text: str) -> None:
        self.sent.put_nowait(orjson.loads(text))

    async def close(self) -> None:
        self.closed = True


class ScriptedSession:
    """What `http()` returns: each `ws_connect` hands out the next socket, or fails."""

    def __init__(self, sockets: list[ScriptedSocket]) -> None:
        self.sockets = sockets
        self.attempts = 0

    async def ws_connect(self, url: str, **_: Any) -> ScriptedSocket:
        self.attempts += 1
        if not self.sockets:
            raise aiohttp.ClientConnectionError("connection refused")
        return self.sockets.pop(0)


def make_link(session: ScriptedSession, statuses: list[str], *, token: Any = None,
              backoff: BackoffPolicy | None = None) -> Link:
    async def http() -> Any:
        return session

    async def fixed_token() -> str:
        return "tok"

    config = ConnectionConfig(URL, backoff=backoff or BackoffPolicy(base=0.01, cap=0.01))
    return Link("metrics", config, heartbeat=None, refreshable=False, http=http,
                token=token or fixed_token, status=statuses.append, forget=lambda link: None)


async def next_sent(ws: ScriptedSocket) -> dict[str, Any]:
    return await asyncio.wait_for(ws.sent.get(), 5)


async def authenticate(ws: ScriptedSocket) -> None:
    ws.put({"type": "connected", "clientId": "c1", "timestamp": "2026-01-01T00:00:00Z"})
    assert await next_sent(ws) == {"type": "auth", "token": "tok"}
    ws.put({"type": "authenticated", "userId": "u1"})


async def test_a_socket_from_welcome_to_delivered_samples_and_a_lost_connection() -> None:
    first, second = ScriptedSocket(), ScriptedSocket()
    session, statuses = ScriptedSession([first, second]), []
    link = make_link(session, statuses)
    sub = MetricsSubscription(interval=None)
    consumer = link.add(sub)
    await authenticate(first)
    assert await next_sent(first) == {"type": "subscribe"}
    first.put({"type": "metrics", "timestamp": "2026-01-01T00:00:01Z", "cpu": {}})
    sample = await asyncio.wait_for(consumer.queue.get(), 5)
    assert sample.timestamp == "2026-01-01T00:00:01Z"
    # Lost (Disconnect): the socket is closed, then Retry connects again and resubscribes.
    first.incoming.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None))
    await authenticate(second)
    assert await next_sent(second) == {"type": "subscribe"}
    assert first.closed and session.attempts == 2
    assert any("reconnecting in" in text for text in statuses)
    assert statuses[-1] == f"{URL}: reconnected"
    await link.close()
    assert second.closed and consumer.ended.is_set()


async def test_retry_is_carried_out_until_the_attempts_are_exhausted() -> None:
    session, statuses = ScriptedSession([]), []
    link = make_link(session, statuses, backoff=BackoffPolicy(base=0.01, cap=0.01, max_attempts=2))
    consumer = link.add(MetricsSubscription(interval=None))
    with pytest.raises(ClientError, match="gave up after 2 attempts"):
        async with asyncio.timeout(5):
            async for _ in consumer.items():
                pass
    assert session.attempts == 3 and link.closed
    assert [t for t in statuses if "reconnecting in" in t] == [
        f"{URL}: connection refused; reconnecting in 0.0s"] * 2


async def test_a_token_source_that_fails_ends_the_link_with_its_error() -> None:
    ws = ScriptedSocket()

    async def broken() -> str:
        raise ClientError("cannot obtain a token: boom")

    link = make_link(ScriptedSession([ws]), [], token=broken)
    consumer = link.add(MetricsSubscription(interval=None))
    ws.put({"type": "connected", "clientId": "c1", "timestamp": "2026-01-01T00:00:00Z"})
    with pytest.raises(ClientError, match="boom"):
        async with asyncio.timeout(5):
            async for _ in consumer.items():
                pass
    assert link.closed and ws.closed


async def test_apply_carries_out_the_consumer_actions() -> None:
    statuses: list[str] = []
    never = asyncio.Event()

    async def http() -> Any:
        await never.wait()  # no socket: only apply() is exercised

    link = Link("terminal", ConnectionConfig(URL), heartbeat=None, refreshable=False, http=http,
                token=http, status=statuses.append, forget=lambda link: None)
    a, b = ClientSubscription(), TerminalSubscription("web", None, None, None)
    ca, cb = link.add(a), link.add(b)
    refused = TerminalError("no")
    link.apply([
        Deliver(a, 1), Deliver(a, 2), Finish(a, None),
        TerminalOpened(b, "s1"), TerminalRefused(b, refused),  # the first answer counts
        Status("hello"), UnhandledError(ServerError("INTERNAL_ERROR", "oops")),
        FetchToken(), Disconnect("gone"), Shutdown(),  # no socket: nothing to do
    ])
    assert [item async for item in ca.items()] == [1, 2] and ca.ended.is_set()
    assert cb.opened.result() == "s1"
    assert statuses == ["hello", "server error: oops [INTERNAL_ERROR]"]
    link.apply([Finish(b, refused)])
    with pytest.raises(TerminalError):
        await anext(cb.items())
    await link.close()


def test_a_consumer_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        Consumer()
