"""The asyncio shell of one gateway connection: aiohttp sockets driven by the sans-I/O core.

A `Link` owns a `ClientConnection` (`openpanel_ws.client.sansio`), which decides
everything: the link feeds it what the socket did and the clock, and carries out the
actions it returns in one place, `Link.apply`, as the server's connection objects do.
Each subscription's items go to its `Consumer`'s queue, which its async iterator drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, assert_never

import aiohttp
import orjson

from openpanel_ws.client.actions import (
    Action,
    AuthAccepted,
    Deliver,
    Disconnect,
    FetchToken,
    Finish,
    Retry,
    Shutdown,
    Status,
    Subscription,
    TerminalOpened,
    TerminalRefused,
    UnhandledError,
)
from openpanel_ws.client.messages import ClientError, ConnectionFailed
from openpanel_ws.client.outbox import Outgoing
from openpanel_ws.client.sansio import ClientConnection, ClientSubscription, ConnectionConfig

__all__ = ["END", "Consumer", "Link"]

log = logging.getLogger(__name__)

# What a finished subscription without an error puts at the end of its queue.
END: Final = object()


class Consumer:
    """The asyncio side of one subscription: its queue, its end, its terminal's open."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def end(self, item: object) -> None:
        self.ended.set()
        self.queue.put_nowait(item)

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Socket:
    """One open WebSocket: the tasks that serve it (reader, sender, token fetch, refresh)
    and how it ended (`Disconnect`, `Shutdown`, or the exception a task raised)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.tasks: list[asyncio.Task[None]] = []
        self.end: asyncio.Future[Disconnect | Shutdown] = asyncio.get_running_loop().create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(self._task_done)
        self.tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A task's error (a token source that failed, a bug of ours) ends the socket with
        # it, so that the link fails loudly instead of hanging its consumers.
        if not task.cancelled() and (exc := task.exception()) is not None and not self.end.done():
            self.end.set_exception(exc)

    def finish(self, end: Disconnect | Shutdown) -> None:
        """The first end wins."""
        if not self.end.done():
            self.end.set_result(end)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


class Link:
    """One gateway connection for its consumers: the socket, the sender, the refresher
    and the timer around a `ClientConnection`, whose actions `apply` carries out."""

    def __init__(self, gateway: str, config: ConnectionConfig, *, heartbeat: float | None,
                 refreshable: bool, http: Callable[[], Awaitable[aiohttp.ClientSession]],
                 token: Callable[[], Awaitable[str]], status: Callable[[str], None],
                 forget: Callable[[Link], None]) -> None:
        self.gateway = gateway
        self.url = config.url
        self.connection = ClientConnection(config)
        self._heartbeat = heartbeat
        self._refreshable = refreshable  # a token source that may hand out a newer token
        self._http = http
        self._token = token
        self._status = status
        self._forget = forget
        self._consumers: dict[Subscription, Consumer] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: _Socket | None = None

    @property
    def closed(self) -> bool:
        return self.connection.closed

    @property
    def is_open(self) -> bool:
        return self.connection.is_open

    def add(self, sub: ClientSubscription) -> Consumer:
        consumer = self._consumers[sub] = Consumer()
        self.connection.add(sub)
        self.poke()
        if self._task is None:
            self._attempt()
        return consumer

    async def remove(self, sub: ClientSubscription) -> None:
        self._consumers.pop(sub, None)
        if self.connection.remove(sub):
            await self.close()
        else:
            self.poke()

    def send(self, items: Sequence[Outgoing]) -> None:
        self.connection.send_all(items)
        self.poke()

    def pending(self) -> int:
        return self.connection.pending()

    async def close(self) -> None:
        actions = self.connection.close()
        self._forget(self)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.apply(actions)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def poke(self) -> None:
        """Something may have changed: wake the sender, re-arm the timer."""
        self._wake.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.connection.next_deadline()
        if deadline is not None and not self.connection.closed:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.apply(self.connection.tick(asyncio.get_running_loop().time()))

    # --- the one place where actions are carried out --------------------------------------

    def apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            match action:
                case Deliver(subscription, item):
                    if (consumer := self._consumers.get(subscription)) is not None:
                        consumer.queue.put_nowait(item)
                case Finish(subscription, error):
                    if (consumer := self._consumers.get(subscription)) is not None:
                        consumer.end(error if error is not None else END)
                case TerminalOpened(subscription, session_id):
                    if (opened := self._unsettled(subscription)) is not None:
                        opened.set_result(session_id)
                case TerminalRefused(subscription, error):
                    if (opened := self._unsettled(subscription)) is not None:
                        opened.set_exception(error)
                case Status(text):
                    self._status(text)
                case UnhandledError(error):
                    log.warning("%s: %s", self.gateway, error)
                    self._status(f"server error: {error}")
                case FetchToken():
                    self._spawn(self._authenticate())
                case AuthAccepted():
                    if self._refreshable:
                        self._spawn(self._refresh())
                case Disconnect() | Shutdown():
                    if self._socket is not None:
                        self._socket.finish(action)
                case Retry(delay):
                    self._retry = asyncio.get_running_loop().call_later(delay, self._attempt)
                case _:
                    assert_never(action)
        self.poke()

    def _unsettled(self, sub: Subscription) -> asyncio.Future[str] | None:
        """The terminal's open, while not yet answered."""
        consumer = self._consumers.get(sub)
        return consumer.opened if consumer is not None and not consumer.opened.done() else None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task of the current socket (actions that need one come from what it did)."""
        if self._socket is None:
            coro.close()
            return
        self._socket.spawn(coro)

    # --- attempts and sockets ---------------------------------------------------------

    def _attempt(self) -> None:
        self._retry = None
        if not self.connection.closed:
            self._task = asyncio.get_running_loop().create_task(self._run_attempt())

    async def _run_attempt(self) -> None:
        """One socket, until it ends; then the core says whether to `Retry`."""
        try:
            lost = await self._connect_once()
        except asyncio.CancelledError:
            raise
        except ClientError as exc:
            self.apply(self.connection.fail(exc))
            return
        except Exception as exc:  # a bug of ours must not hang the consumer
            log.exception("client link %s failed", self.url)
            self.apply(self.connection.fail(ClientError(f"internal client error: {exc!r}")))
            return
        if lost is not None:
            self.apply(self.connection.connection_lost(*lost, asyncio.get_running_loop().time()))

    async def _connect_once(self) -> tuple[str, int | None] | None:
        """One socket, until it ends: (why, close code) when another attempt may succeed,
        None when the connection is over for good."""
        opened = await self._open_socket()
        if isinstance(opened, str):
            return opened, None
        self.connection.socket_opened()
        socket = self._socket = _Socket(opened)
        socket.spawn(self._reader(socket))
        socket.spawn(self._sender(opened))
        try:
            end = await socket.end
        finally:
            self._socket = None
            self.connection.socket_closed()
            await socket.close()
        return (end.why, end.code) if isinstance(end, Disconnect) else None

    async def _open_socket(self) -> aiohttp.ClientWebSocketResponse | str:
        """The WebSocket, or why it could not be opened this time (raises when no attempt can
        succeed: the server refused the handshake with 401, 403 or 404)."""
        session = await self._http()
        try:
            # WebSocket ping frames detect a dead server without the server's help and
            # never count against its rate limit; the JSON pings are answered too.
            return await asyncio.wait_for(session.ws_connect(
                self.url, autoping=True, max_msg_size=0, compress=0,
                heartbeat=self._heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            ), self.connection.config.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise ConnectionFailed(f"{self.url}: HTTP {exc.status} {exc.message}") from None
            return f"HTTP {exc.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _describe_os_error(exc)

    async def _reader(self, socket: _Socket) -> None:
        while not socket.end.done():
            self.apply(await self._receive(socket.ws))

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> list[Action]:
        try:
            msg = await ws.receive(timeout=self.connection.receive_timeout())
        except TimeoutError:
            return self.connection.timed_out()
        now = asyncio.get_running_loop().time()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return self.connection.receive_text(msg.data, now)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return self.connection.receive_binary(now)
        reason = str(msg.extra or "") if msg.type is aiohttp.WSMsgType.CLOSE else ""
        return self.connection.receive_close(ws.close_code, reason)

    async def _authenticate(self) -> None:
        """`FetchToken`: the token source's answer becomes the socket's `auth`."""
        token = await self._token()
        self.connection.send_auth(token, asyncio.get_running_loop().time())
        self.poke()

    async def _refresh(self) -> None:
        """Token refresh on the open connection: a fresh `auth` shortly before `exp`, from a
        token source that can refresh (docs/protocol.md "Python client")."""
        while (delay := self.connection.refresh_delay()) is not None:
            await asyncio.sleep(delay)
            try:
                fresh = await self._token()
            except ClientError as exc:
                # Not fatal: the server ends the connection at `exp` and the reconnect
                # asks the source again.
                log.debug("%s: token refresh failed: %s", self.gateway, exc)
                return
            if not self.connection.refresh_token(fresh):
                return
            self.poke()

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            msg, wait = self.connection.next_message(loop.time())
            if msg is not None:
                try:
                    await ws.send_str(orjson.dumps(msg).decode())
                except (ConnectionError, aiohttp.ClientError, RuntimeError):
                    return  # the reader sees the close and reconnects
            elif wait == float("inf"):
                await self._wake.wait()
            else:
                await asyncio.sleep(wait)


def _describe_os_error(exc: BaseException) -> str:
    """'connection refused' rather than aiohttp's 'Connect call failed (...)'."""
    seen: list[BaseException] = []
    inner: BaseException | None = exc
    while inner is not None and inner not in seen:
        seen.append(inner)
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        inner = getattr(inner, "os_error", None) or inner.__cause__
    for item in seen:
        if isinstance(item, OSError) and item.errno is not None and item.strerror:
            return str(item.strerror).lower()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
