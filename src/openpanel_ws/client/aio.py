"""The asyncio shell of the client: aiohttp WebSockets driven by the sans-I/O core.

One `_Link` is one gateway connection that reconnects by itself. It owns a
`ClientConnection` (`openpanel_ws.client.sansio`), which decides everything: the link
feeds it what the socket did and the clock, carries out the actions it returns, and
hands each subscription's items to the consumer's queue, which its async iterator drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp
import orjson

from openpanel_ws.client.messages import (
    ClientError,
    ConnectionFailed,
    Event,
    LogLine,
    MetricsSample,
    StatsSample,
    TerminalError,
    TerminalOutput,
)
from openpanel_ws.client.outbox import Outgoing
from openpanel_ws.client.sansio import (
    REFRESH_MARGIN,
    Action,
    AuthAccepted,
    BackoffPolicy,
    ClientConnection,
    ClientSubscription,
    Deliver,
    Disconnect,
    FetchToken,
    Finish,
    LinkConfig,
    Retry,
    Shutdown,
    Status,
    TerminalOpened,
    TerminalRefused,
    UnhandledError,
)
from openpanel_ws.client.subscriptions import (
    EventsSubscription,
    LogsSubscription,
    MetricsSubscription,
    StatsSubscription,
    TerminalSubscription,
)
from openpanel_ws.protocol import DEFAULT_RATE_LIMITS
from openpanel_ws.ratelimit import RateLimit

__all__ = ["DEFAULT_URL", "OpenPanelClient", "TerminalSession", "TokenSource", "gateway_url"]

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]
StatusCallback = Callable[[str], None]

DEFAULT_URL: Final = "ws://127.0.0.1:3001"
GATEWAYS: Final = ("containers", "logs", "metrics", "terminal")
_END: Final = object()


def gateway_url(base: str, gateway: str) -> str:
    """ws://host:port[/ws/x] or http(s)://… -> ws(s)://host:port/ws/<gateway>."""
    url = base.strip().rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    elif "://" not in url:
        url = "ws://" + url
    for name in GATEWAYS:
        if url.endswith("/ws/" + name):
            url = url[: -len("/ws/" + name)]
    return f"{url}/ws/{gateway}"


class _Consumer:
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
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


# --- one gateway connection -----------------------------------------------------------


class _Link:
    """One gateway connection for its consumers: the socket, the sender, the refresher
    and the timer around a `ClientConnection`, whose actions it carries out."""

    def __init__(self, gateway: str, config: LinkConfig, *, heartbeat: float | None,
                 refreshable: bool, http: Callable[[], Awaitable[aiohttp.ClientSession]],
                 token: Callable[[], Awaitable[str]], status: Callable[[str], None],
                 forget: Callable[[_Link], None]) -> None:
        self.gateway = gateway
        self.url = config.url
        self.connection = ClientConnection(config)
        self._heartbeat = heartbeat
        self._refreshable = refreshable  # a token source that may hand out a newer token
        self._http = http
        self._token = token
        self._status = status
        self._forget = forget
        self._consumers: dict[ClientSubscription, _Consumer] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self.connection.closed

    @property
    def is_open(self) -> bool:
        return self.connection.is_open

    def add(self, sub: ClientSubscription) -> _Consumer:
        consumer = self._consumers[sub] = _Consumer()
        self.connection.add(sub)
        self.poke()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return consumer

    async def remove(self, sub: ClientSubscription) -> None:
        self._consumers.pop(sub, None)
        if self.connection.remove(sub):
            await self.close()
        else:
            self.poke()

    def send(self, item: Outgoing) -> None:
        self.connection.send(item)
        self.poke()

    def write(self, sub: TerminalSubscription, data: str) -> None:
        self.connection.terminal_write(sub, data)
        self.poke()

    def resize(self, sub: TerminalSubscription, cols: int, rows: int) -> None:
        self.connection.terminal_resize(sub, cols, rows)
        self.poke()

    def pending(self) -> int:
        return self.connection.pending()

    async def close(self) -> None:
        actions = self.connection.close()
        self._forget(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._apply(actions)
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
        self._apply(self.connection.tick(asyncio.get_running_loop().time()))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                if (consumer := self._consumers.get(action.subscription)) is not None:
                    consumer.queue.put_nowait(action.item)
            elif isinstance(action, Finish):
                if (consumer := self._consumers.get(action.subscription)) is not None:
                    consumer.end(action.error if action.error is not None else _END)
            elif isinstance(action, TerminalOpened | TerminalRefused):
                consumer = self._consumers.get(action.subscription)
                if consumer is not None and not consumer.opened.done():
                    if isinstance(action, TerminalOpened):
                        consumer.opened.set_result(action.session_id)
                    else:
                        consumer.opened.set_exception(action.error)
            elif isinstance(action, Status):
                self._status(action.text)
            elif isinstance(action, UnhandledError):
                log.warning("%s: %s", self.gateway, action.error)
                self._status(f"server error: {action.error}")
        self.poke()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.connection.closed:
            try:
                lost = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except ClientError as exc:
                self._apply(self.connection.fail(exc))
                return
            except Exception as exc:  # a bug of ours must not hang the consumer
                log.exception("client link %s failed", self.url)
                self._apply(self.connection.fail(ClientError(f"internal client error: {exc!r}")))
                return
            if lost is None:
                return
            actions = self.connection.connection_lost(*lost, loop.time())
            self._apply(actions)
            retry = next((a for a in actions if isinstance(a, Retry)), None)
            if retry is None:
                return
            await asyncio.sleep(retry.delay)

    async def _connect_once(self) -> tuple[str, int | None] | None:
        """One socket, until it ends: (why, close code) when another attempt may succeed,
        None when the connection is over for good."""
        config = self.connection.config
        session = await self._http()
        try:
            # WebSocket ping frames detect a dead server without the server's help and
            # never count against its rate limit; the JSON pings are answered too.
            ws = await asyncio.wait_for(session.ws_connect(
                self.url, autoping=True, max_msg_size=0, compress=0,
                heartbeat=self._heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            ), config.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise ConnectionFailed(f"{self.url}: HTTP {exc.status} {exc.message}") from None
            return f"HTTP {exc.status}", None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _describe_os_error(exc), None
        loop = asyncio.get_running_loop()
        self.connection.socket_opened()
        tasks = [loop.create_task(self._sender(ws))]
        try:
            while True:
                actions = await self._receive(ws)
                self._apply(actions)
                for action in actions:
                    if isinstance(action, Disconnect):
                        return action.why, action.code
                    if isinstance(action, Shutdown):
                        return None
                    if isinstance(action, FetchToken):
                        self.connection.send_auth(await self._token(), loop.time())
                        self.poke()
                    elif isinstance(action, AuthAccepted) and self._refreshable:
                        tasks.append(loop.create_task(self._refresh()))
        finally:
            self.connection.socket_closed()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

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

    async def _refresh(self) -> None:
        """Token refresh on the open connection: a fresh `auth` shortly before `exp`, from a
        token source that can refresh (docs/protocol.md "Python client")."""
        while (delay := self.connection.refresh_delay()) is not None:
            await asyncio.sleep(delay)
            if not self.connection.refresh_token(await self._token()):
                return
            self.poke()

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            msg, wait = self.connection.next_frame(loop.time())
            if msg is not None:
                try:
                    await ws.send_str(orjson.dumps(msg).decode())
                except (ConnectionError, aiohttp.ClientError, RuntimeError):
                    return  # the read loop sees the close and reconnects
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


# --- terminal ---------------------------------------------------------------------------


class TerminalSession:
    """An interactive terminal: `write()` keystrokes, `resize()`, iterate the output."""

    def __init__(self, link: _Link, sub: TerminalSubscription, consumer: _Consumer,
                 session_id: str) -> None:
        self._link = link
        self._sub = sub
        self._consumer = consumer
        self.session_id = session_id
        self.container_id = sub.container

    @property
    def exit_code(self) -> int | None:
        """The shell's exit code once `terminal_closed` arrived (None if unknown)."""
        return self._sub.exit_code

    @property
    def reason(self) -> str | None:
        return self._sub.reason

    @property
    def resumes(self) -> int:
        """How many times this terminal was reattached after a lost connection."""
        return self._sub.resumes

    @property
    def container_lost(self) -> bool:
        """The program ended because its container stopped, restarted or was removed."""
        return self._sub.container_lost

    def write(self, data: str) -> None:
        """Queue keystrokes; they are coalesced when the rate-limit mirror runs low.
        While the terminal is being reattached they are held (up to 64 KiB) and sent
        right after the resume."""
        self._link.write(self._sub, data)

    async def drain(self, max_pending: int = 32) -> None:
        """Wait while more than `max_pending` messages wait for the rate-limit mirror (a
        producer such as a large file on stdin then reads no faster than input is sent)."""
        # Polled: the outbox is plain synchronous code with no event to wait on.
        while self._link.pending() > max_pending and not self._sub.ended:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def eof(self) -> None:
        """End the program's standard input after what was written (terminal extension
        `eof`): like closing a pipe into `docker exec -i`."""
        self._link.send({"type": "eof"})

    def resize(self, cols: int, rows: int) -> None:
        """Clamped to the gateway's range; while reattaching, applied after the resume."""
        self._link.resize(self._sub, cols, rows)

    async def close(self) -> None:
        """Ask the server to end the shell (`close_terminal`), then wait for the end."""
        if not self._sub.ended and self._link.is_open:
            self._link.send({"type": "close_terminal"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._consumer.ended.wait(), 5)
        await self._link.close()

    def __aiter__(self) -> AsyncIterator[str]:
        return (chunk.data async for chunk in self._consumer.items())

    def output(self) -> AsyncIterator[TerminalOutput]:
        """The output with its stream ("stdout"/"stderr" when opened with tty=False)."""
        return self._consumer.items()


# --- the client -----------------------------------------------------------------------


class OpenPanelClient:
    """Client of the four gateways of one server.

    `token` is a string or an async callable returning one; it is called again before
    every re-authentication, so an expiring token can be refreshed: on reconnect, and on
    the open connection `token_refresh_margin` seconds before the current token's `exp`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: TokenSource = "",
        *,
        backoff: BackoffPolicy | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        wait_for_server: bool = True,
        connect_timeout: float = 15.0,
        heartbeat: float | None = 30.0,
        idle_timeout: float | None = None,
        on_status: StatusCallback | None = None,
        token_refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.url = url
        self.token = token
        # With a callable token source, a fresh `auth` goes out this long before `exp`.
        self.token_refresh_margin = token_refresh_margin
        self.backoff = backoff or BackoffPolicy()
        self.rate_limits = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self.wait_for_server = wait_for_server
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.on_status = on_status
        self._session: aiohttp.ClientSession | None = None
        self._links: set[_Link] = set()
        self._containers: _Link | None = None

    async def __aenter__(self) -> OpenPanelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for link in list(self._links):
            await link.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _token(self) -> str:
        if isinstance(self.token, str):
            return self.token
        try:
            return await self.token()
        except ClientError:
            raise
        except Exception as exc:
            raise ClientError(f"cannot obtain a token: {exc}") from exc

    def _status(self, text: str) -> None:
        log.info("%s", text)
        if self.on_status is not None:
            self.on_status(text)

    def _link(self, gateway: str, *, shared: bool = False, reconnect: bool = True) -> _Link:
        if shared and self._containers is not None and not self._containers.closed:
            return self._containers
        config = LinkConfig(
            gateway_url(self.url, gateway),
            rate_limit=self.rate_limits[gateway],
            backoff=self.backoff, reconnect=reconnect, wait_for_server=self.wait_for_server,
            connect_timeout=self.connect_timeout, idle_timeout=self.idle_timeout,
            refresh_margin=self.token_refresh_margin)
        link = _Link(gateway, config, heartbeat=self.heartbeat,
                     refreshable=not isinstance(self.token, str), http=self._http,
                     token=self._token, status=self._status, forget=self._links.discard)
        self._links.add(link)
        if shared:
            self._containers = link
        return link

    async def _stream(self, link: _Link, sub: ClientSubscription) -> AsyncGenerator[Any, None]:
        consumer = link.add(sub)
        try:
            async for item in consumer.items():
                yield item
        finally:
            await link.remove(sub)

    def logs(self, container: str, *, tail: int | str | None = None,
             since: str | float | None = None, follow: bool = True,
             quiet: float = 1.0) -> AsyncGenerator[LogLine, None]:
        """Log lines of one container; resumes after a reconnect with no gap or duplicate.

        `follow=False` ends once the backlog is delivered: at the first line newer than
        the request (server clock), or after `quiet` seconds without a line (3x that
        before the first line).
        """
        return self._stream(self._link("containers", shared=True),
                            LogsSubscription(container, tail, since, follow, quiet))

    def stats(self, *containers: str, interval: int | None = None) -> AsyncGenerator[StatsSample, None]:
        return self._stream(self._link("containers", shared=True),
                            StatsSubscription(list(containers), interval))

    def events(self, filters: Mapping[str, list[str]] | None = None) -> AsyncGenerator[Event, None]:
        """Docker events and system logs pushed by `/ws/logs`; `filters` like the
        engine's (`{"container": ["web"], "type": ["container"]}`) narrow the events."""
        return self._stream(self._link("logs"), EventsSubscription(filters))

    def metrics(self, interval: int | None = None) -> AsyncGenerator[MetricsSample, None]:
        return self._stream(self._link("metrics"), MetricsSubscription(interval))

    async def terminal(self, container: str, *, shell: str | None = None,
                       cols: int | None = None, rows: int | None = None,
                       command: Sequence[str] | None = None, tty: bool = True,
                       stdin: bool = True, timeout: float = 30.0,
                       resume: bool = True) -> TerminalSession:
        """Open an interactive terminal.

        With `resume` (default) a lost connection is re-established and the same shell
        reattached, its missed output delivered exactly once (docs/protocol.md
        "Terminal sessions"); when the session did not survive (the gateway restarted,
        or the grace period is over) the output iterator raises TerminalError saying so.

        `command`, `tty=False` and `stdin=False` use the gateway's terminal extensions
        (docs/protocol.md): a program instead of a shell, no TTY (output per stream),
        no standard input.
        """
        link = self._link("terminal", reconnect=resume)
        sub = TerminalSubscription(container, shell, cols, rows, command=command, tty=tty,
                                   stdin=stdin, resume=resume)
        consumer = link.add(sub)
        try:
            session_id = await asyncio.wait_for(asyncio.shield(consumer.opened), timeout)
        except TimeoutError:
            await link.close()
            raise TerminalError(f"no answer to open_terminal within {timeout:g}s") from None
        except BaseException:
            await link.close()
            raise
        return TerminalSession(link, sub, consumer, session_id)

