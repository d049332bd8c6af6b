"""The asyncio edge of the client: aiohttp WebSockets driven by the sans-I/O core.

One `_Link` is one gateway connection that reconnects by itself (backoff, re-auth,
restore subscriptions). Consumers (`_Subscription`s) attach to a link; each owns a
queue that its async iterator drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp
import orjson

from openpanel_ws.client.messages import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    ConnectionFailed,
    ContainerNotFound,
    DockerEvent,
    Event,
    InvalidMessage,
    LogLine,
    MetricsSample,
    PermissionDenied,
    ServerError,
    StatsSample,
    SubscriptionEnded,
    SystemLog,
    TerminalError,
    TerminalOutput,
    error_from_message,
)
from openpanel_ws.client.sansio import (
    REFRESH_MARGIN,
    SERVER_RATE_LIMITS,
    Backoff,
    BackoffPolicy,
    Input,
    LogCursor,
    Outbox,
    Outgoing,
    refresh_delay,
    should_reconnect,
    split_input,
    token_expiry,
)
from openpanel_ws.protocol import CloseCode, Message, parse_timestamp, parse_timestamp_nanos, rfc3339
from openpanel_ws.ratelimit import RateLimit

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]
StatusCallback = Callable[[str], None]

DEFAULT_URL: Final = "ws://127.0.0.1:3001"
GATEWAYS: Final = ("containers", "logs", "metrics", "terminal")
_END: Final = object()
# How long a terminal tries to reattach after its connection was lost (the gateway's
# default grace period is 60 s; a session cannot outlive it).
RESUME_TIMEOUT: Final = 90.0
# Characters typed while a terminal is being reattached that are kept to send after it.
HELD_INPUT_LIMIT: Final = 65536


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


class _Transient(Exception):
    """This connection ended; another attempt may succeed."""

    def __init__(self, why: str, code: int | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.code = code


# --- subscriptions ------------------------------------------------------------------


class _Subscription:
    """One consumer of a link: what it (re)sends after auth and what it takes."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.ended = False
        self.ended_event = asyncio.Event()

    def subscribe_messages(self) -> list[Message]:
        return []

    def unsubscribe_messages(self) -> list[Message]:
        return []

    def handle(self, msg: Message) -> bool:
        """True when the message was this subscription's."""
        return False

    def handle_error(self, err: ServerError) -> bool:
        return False

    def on_disconnect(self, why: str) -> None:
        """The link lost its connection and will reconnect."""

    def end(self, item: object = _END) -> None:
        if not self.ended:
            self.ended = True
            self.ended_event.set()
            self.queue.put_nowait(item)

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _LogsSub(_Subscription):
    def __init__(self, container: str, tail: int | str | None, since: str | float | None,
                 follow: bool, quiet: float) -> None:
        super().__init__()
        self.container = container
        self.tail = tail
        self.since = since
        self.follow = follow
        self.cursor = LogCursor()
        self._quiet = quiet
        # Without -f: lines newer than the request (by the server's clock) are not shown.
        self.until_ns: int | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.confirmed = False  # the server answered our subscribe (ack or a line)

    def _base(self) -> Message:
        return {"type": "subscribe_logs", "containerId": self.container}

    def subscribe_messages(self) -> list[Message]:
        msg = self._base()
        if self.tail is not None:
            msg["tail"] = self.tail
        if self.since is not None:
            msg["since"] = self.since
        msg.update(self.cursor.resume())
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_logs", "containerId": self.container}]

    def handle(self, msg: Message) -> bool:
        kind = msg.get("type")
        if msg.get("containerId") != self.container:
            return False
        if kind == "log":
            self.confirmed = True
            line = LogLine.parse(msg)
            if not self.follow and self.until_ns is not None and _nanos(line.timestamp) > self.until_ns:
                self.end()  # newer than the request: `logs` without -f stops at "now"
                return False
            if self.cursor.accept(line.timestamp, line.stream, line.data) and not self.ended:
                self.queue.put_nowait(line)
            self._arm_idle()
            return False  # another subscription of the same container may want it too
        if kind == "subscribed_logs":
            self.confirmed = True
            self._arm_idle()
            return True
        if kind == "subscription_ended" and msg.get("subscription", "logs") == "logs":
            # e.g. the container was removed: nothing more will come
            self.end(SubscriptionEnded(self.container, _ended_reason(msg)))
            return False
        return kind == "unsubscribed_logs"

    def _arm_idle(self) -> None:
        # Without -f the protocol has no "end of backlog" marker: stop after a quiet spell.
        if self.follow or self.ended:
            return
        if self._idle is not None:
            self._idle.cancel()
        # A busy engine may take a while to start the backlog: wait longer for line one.
        wait = self._quiet if self.cursor.last_ns is not None else self._quiet * 3
        self._idle = asyncio.get_running_loop().call_later(wait, self.end)

    def handle_error(self, err: ServerError) -> bool:
        if err.container_id == self.container or _refuses(err, self.confirmed, ("tail", "since")):
            self.end(err)
            return True
        return False


def _refuses(err: ServerError, confirmed: bool, fields: tuple[str, ...]) -> bool:
    """An INVALID_MESSAGE naming a field of a subscribe not yet answered is its refusal
    (the server's error carries no containerId then): end it rather than wait forever."""
    return not confirmed and isinstance(err, InvalidMessage) and err.raw.get("field") in fields


class _StatsSub(_Subscription):
    def __init__(self, containers: list[str], interval: int | None) -> None:
        super().__init__()
        self.containers = containers
        self.interval = interval
        self.confirmed = False

    def subscribe_messages(self) -> list[Message]:
        out: list[Message] = []
        for c in self.containers:
            msg: Message = {"type": "subscribe_stats", "containerId": c}
            if self.interval is not None:
                msg["interval"] = self.interval
            out.append(msg)
        return out

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe_stats", "containerId": c} for c in self.containers]

    def handle(self, msg: Message) -> bool:
        if msg.get("containerId") not in self.containers:
            return False
        kind = msg.get("type")
        if kind in ("stats", "subscribed_stats"):
            self.confirmed = True
        if kind == "stats":
            self.queue.put_nowait(StatsSample.parse(msg))
            return False
        if kind == "subscription_ended" and msg.get("subscription", "stats") == "stats":
            # the others go on; the last one gone ends the iterator
            container = str(msg.get("containerId"))
            self.containers = [c for c in self.containers if c != container]
            if not self.containers:
                self.end(SubscriptionEnded(container, _ended_reason(msg)))
            return False
        return kind in ("subscribed_stats", "unsubscribed_stats")

    def handle_error(self, err: ServerError) -> bool:
        if err.container_id in self.containers or _refuses(err, self.confirmed, ("interval",)):
            self.end(err)
            return True
        return False


class _EventsSub(_Subscription):
    def __init__(self, filters: Mapping[str, list[str]] | None) -> None:
        super().__init__()
        self.filters = {k: list(v) for k, v in (filters or {}).items()}
        # With filters nothing is passed on before the server accepted them: until
        # then the connection still gets every event.
        self.confirmed = not self.filters

    def subscribe_messages(self) -> list[Message]:
        # Additive `subscribe` {filters} of /ws/logs (engine filter semantics).
        return [{"type": "subscribe", "filters": self.filters}] if self.filters else []

    def handle(self, msg: Message) -> bool:
        kind = msg.get("type")
        if kind == "subscribed":
            self.confirmed = True
            return True
        if kind == "docker_event":
            if self.confirmed:
                self.queue.put_nowait(DockerEvent.parse(msg))
            return True
        if kind == "system_log":
            if self.confirmed:
                self.queue.put_nowait(SystemLog.parse(msg))
            return True
        return False

    def on_disconnect(self, why: str) -> None:
        self.confirmed = not self.filters  # asked again on the next connection

    def handle_error(self, err: ServerError) -> bool:
        # A refused filter is the answer to our `subscribe`: end, don't stream unfiltered.
        if not self.confirmed and isinstance(err, InvalidMessage):
            self.end(err)
            return True
        return False


class _MetricsSub(_Subscription):
    def __init__(self, interval: int | None) -> None:
        super().__init__()
        self.interval = interval

    def subscribe_messages(self) -> list[Message]:
        msg: Message = {"type": "subscribe"}
        if self.interval is not None:
            msg["interval"] = self.interval
        return [msg]

    def unsubscribe_messages(self) -> list[Message]:
        return [{"type": "unsubscribe"}]

    def handle(self, msg: Message) -> bool:
        kind = msg.get("type")
        if kind == "metrics":
            self.queue.put_nowait(MetricsSample.parse(msg))
            return True
        return kind in ("subscribed", "unsubscribed")


class _TerminalSub(_Subscription):
    def __init__(self, container: str, shell: str | None, cols: int | None, rows: int | None,
                 *, command: Sequence[str] | None = None, tty: bool = True,
                 stdin: bool = True, resume: bool = True,
                 on_status: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.container = container
        self.shell = shell
        self.cols = cols
        self.rows = rows
        self.command = list(command) if command else None
        self.container_lost = False
        self.tty = tty
        self.stdin = stdin
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.exit_code: int | None = None
        self.reason: str | None = None
        self._sent_open = False
        # Terminal sessions (docs/protocol.md): after a reconnect the same session is
        # reattached with the `seq` of the last output received, so nothing is lost
        # or repeated.
        self.resume = resume
        self.session_id: str | None = None
        self.last_seq: int | None = None
        self.resuming = False
        self.resumes = 0
        self.close_code: int | None = None  # of the connection just lost
        # Typed while reattaching: sent right after the resume (bounded), and the last
        # size asked for, re-applied after a resume.
        self.held: list[Outgoing] = []
        self.held_chars = 0
        self.size: tuple[int, int] | None = None
        self.resume_timeout = RESUME_TIMEOUT
        self._give_up: asyncio.TimerHandle | None = None
        self._on_status = on_status

    def _status(self, text: str) -> None:
        if self._on_status is not None:
            self._on_status(text)

    def hold(self, items: list[Outgoing]) -> None:
        for item in items:
            size = len(item.data) if isinstance(item, Input) else 1
            if self.held_chars + size > HELD_INPUT_LIMIT:
                return  # beyond the bound typed input is dropped while disconnected
            self.held.append(item)
            self.held_chars += size

    def resume_items(self) -> list[Outgoing]:
        """After the resume request: the size, then what was typed meanwhile."""
        items: list[Outgoing] = []
        if self.size is not None:
            items.append({"type": "resize", "cols": self.size[0], "rows": self.size[1]})
        items.extend(self.held)
        self.held, self.held_chars = [], 0
        return items

    def subscribe_messages(self) -> list[Message]:
        if self._sent_open:
            if self.resuming and self.session_id is not None and not self.ended:
                msg: Message = {"type": "open_terminal", "containerId": self.container,
                                "sessionId": self.session_id}
                if self.last_seq is not None:
                    msg["lastSeq"] = self.last_seq
                return [msg]
            return []
        self._sent_open = True
        msg = {"type": "open_terminal", "containerId": self.container}
        if self.shell:
            msg["shell"] = self.shell
        if self.cols and self.rows:
            msg["cols"], msg["rows"] = self.cols, self.rows
        # Terminal extensions (docs/protocol.md): sent only when not the default.
        if self.command:
            msg["command"] = self.command
        if not self.tty:
            msg["tty"] = False
        if not self.stdin:
            msg["stdin"] = False
        return [msg]

    def _fail(self, exc: ClientError) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.end(exc)

    def handle(self, msg: Message) -> bool:
        kind = msg.get("type")
        if kind == "terminal_opened":
            if not self.opened.done():
                self.session_id = str(msg.get("sessionId", ""))
                self.opened.set_result(self.session_id)
            elif self.resuming and msg.get("resumed") is True:
                self.resuming = False
                self.resumes += 1
                if self._give_up is not None:
                    self._give_up.cancel()
                    self._give_up = None
                start = msg.get("seq")
                lost = (start - self.last_seq if isinstance(start, int)
                        and self.last_seq is not None and start > self.last_seq else 0)
                self._status("terminal session resumed" +
                             (f" ({lost} bytes of output were lost)" if lost else ""))
        elif kind == "terminal_output":
            seq = msg.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            stream = msg.get("stream")
            self.queue.put_nowait(TerminalOutput(str(msg.get("data", "")),
                                                 stream if isinstance(stream, str) else None))
        elif kind == "terminal_closed":
            code = msg.get("exitCode")
            self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            self.reason = str(msg.get("reason", ""))
            self.container_lost = msg.get("containerLost") is True
            if not self.opened.done():
                self.opened.set_exception(TerminalError(f"terminal closed: {self.reason}"))
            self.end()
        elif kind == "terminal_error":
            text = str(msg.get("message", "terminal error"))
            if self.resuming:
                self._fail(TerminalError(
                    f"the terminal session did not survive the reconnect ({text})"))
                return True
            if text.lower().startswith("container not found"):
                text = f"container '{self.container}' not found" + text[len("container not found"):]
            self._fail(TerminalError(text))
        else:
            return False
        return True

    def handle_error(self, err: ServerError) -> bool:
        # Before the terminal opened any error is its answer; afterwards only a refusal
        # ends it (a rejected resize must not kill the session: it is just reported).
        if (not self.opened.done() or self.resuming
                or isinstance(err, PermissionDenied | ContainerNotFound)):
            self._fail(TerminalError(f"the terminal session did not survive the reconnect ({err})")
                       if self.resuming else err)
            return True
        return False

    def on_disconnect(self, why: str) -> None:
        if self.close_code == CloseCode.GOING_AWAY and self.resume and self.opened.done():
            # A gateway that shuts down (not a reload, 1012) ends its terminals.
            self._fail(TerminalError(
                f"the terminal session did not survive: the gateway shut down ({why})"))
            return
        if self.resume and self.opened.done() and self.session_id and not self.ended:
            if not self.resuming:
                self._status(f"connection to the gateway lost ({why}); reattaching the terminal")
                self._give_up = asyncio.get_running_loop().call_later(
                    self.resume_timeout, self._fail, TerminalError(
                        "the terminal session did not survive the reconnect (gateway "
                        f"unreachable for {self.resume_timeout:g}s: {why})"))
            self.resuming = True
            return
        self._fail(TerminalError(f"connection to the gateway lost ({why})"))

    def end(self, item: object = _END) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        super().end(item)


def _ended_reason(msg: Message) -> str:
    text = str(msg.get("message") or msg.get("reason") or "subscription ended")
    return text[:1].lower() + text[1:]


def _nanos(timestamp: str) -> int:
    try:
        return parse_timestamp_nanos(timestamp)
    except ValueError:
        return 0


# --- one gateway connection -----------------------------------------------------------


class _Link:
    def __init__(self, client: OpenPanelClient, gateway: str, *, reconnect: bool = True) -> None:
        self.client = client
        self.gateway = gateway
        self.url = gateway_url(client.url, gateway)
        self.reconnect = reconnect
        self.subs: list[_Subscription] = []
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.closed = False
        self.user_id: str | None = None
        # server clock minus ours, from the welcome's timestamp (0 until connected)
        self.server_offset = 0.0
        self._outbox: Outbox | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _stamp(self, sub: _Subscription) -> None:
        if isinstance(sub, _LogsSub) and not sub.follow and sub.until_ns is None:
            sub.until_ns = time.time_ns() + int(self.server_offset * 1e9)

    def add(self, sub: _Subscription) -> None:
        self.subs.append(sub)
        if self.connected.is_set():
            self._stamp(sub)
            for msg in sub.subscribe_messages():
                self.send(msg)
        self.start()

    async def remove(self, sub: _Subscription) -> None:
        if sub in self.subs:
            self.subs.remove(sub)
        if not self.subs:
            await self.close()
            return
        if self.connected.is_set():
            # Keep what another consumer (same container, same kind) still uses.
            still = {(m["type"], m.get("containerId")) for s in self.subs for m in s.unsubscribe_messages()}
            for msg in sub.unsubscribe_messages():
                if (msg["type"], msg.get("containerId")) not in still:
                    self.send(msg)

    def send(self, item: Outgoing) -> None:
        if self._outbox is not None:
            self._outbox.push(item)
            self._wake.set()

    async def close(self) -> None:
        self.closed = True
        self.client._links.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for sub in self.subs:
            sub.end()

    def _fail_all(self, exc: ClientError) -> None:
        for sub in list(self.subs):
            if isinstance(sub, _TerminalSub):
                sub._fail(exc)
            else:
                sub.end(exc)

    async def _run(self) -> None:
        backoff = Backoff(self.client.backoff)
        while not self.closed:
            try:
                await self._connect_once(backoff)
                why, code = "connection closed", None
            except _Transient as exc:
                why, code = exc.why, exc.code
            except ClientError as exc:
                self._fail_all(exc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours must not hang the consumer
                log.exception("client link %s failed", self.url)
                self._fail_all(ClientError(f"internal client error: {exc!r}"))
                return
            for sub in list(self.subs):
                if isinstance(sub, _TerminalSub):
                    sub.close_code = code
                sub.on_disconnect(why)
            if self.subs and all(sub.ended for sub in self.subs):
                return  # nothing left to reconnect for (a terminal that cannot resume)
            if not self.reconnect or (not self.ever_connected and not self.client.wait_for_server):
                self._fail_all(ConnectionFailed(f"cannot connect to {self.url}: {why}"))
                return
            delay = backoff.next_delay()
            if delay is None:
                self._fail_all(ConnectionFailed(
                    f"{self.url}: gave up after {backoff.attempts} attempts ({why})"))
                return
            self.client._status(f"{self.url}: {why}; reconnecting in {delay:.1f}s", code)
            await asyncio.sleep(delay)

    async def _connect_once(self, backoff: Backoff) -> None:
        client = self.client
        session = await client._http()
        try:
            # WebSocket ping frames detect a dead server without the server's help and
            # never count against its rate limit; the JSON pings are answered too.
            ws = await asyncio.wait_for(session.ws_connect(
                self.url, autoping=True, max_msg_size=0, compress=0,
                heartbeat=client.heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            ), client.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise ConnectionFailed(f"{self.url}: HTTP {exc.status} {exc.message}") from None
            raise _Transient(f"HTTP {exc.status}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Transient(_describe_os_error(exc)) from None
        outbox = Outbox(client.rate_limits.get(self.gateway, SERVER_RATE_LIMITS["containers"]),
                        time.monotonic())
        sender: asyncio.Task[None] | None = None
        refresher: asyncio.Task[None] | None = None
        try:
            await self._expect_welcome(ws)
            token = await client._token()
            outbox.push({"type": "auth", "token": token})
            self._outbox = outbox
            sender = asyncio.get_running_loop().create_task(self._sender(ws, outbox))
            await self._await_auth(ws)
            if not isinstance(client.token, str):
                refresher = asyncio.get_running_loop().create_task(self._refresh(token, outbox))
            backoff.reset()
            if self.ever_connected:
                client._status(f"{self.url}: reconnected", None)
            self.ever_connected = True
            self.connected.set()
            for sub in list(self.subs):
                self._stamp(sub)
                for msg in sub.subscribe_messages():
                    outbox.push(msg)
                if isinstance(sub, _TerminalSub) and sub.resuming:
                    for item in sub.resume_items():
                        outbox.push(item)
            self._wake.set()
            await self._read_loop(ws)
        finally:
            self.connected.clear()
            self._outbox = None
            for task in (sender, refresher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    async def _refresh(self, token: str, outbox: Outbox) -> None:
        """Token refresh on the open connection: a fresh `auth` shortly before `exp`, from a
        token source that can refresh. A source with nothing newer ends this; the server
        then closes at `exp` and the reconnect asks the source again."""
        while (exp := token_expiry(token)) is not None:
            now = time.time() + self.server_offset
            await asyncio.sleep(refresh_delay(exp, now, self.client.token_refresh_margin))
            fresh = await self.client._token()
            if fresh == token:
                return
            token = fresh
            outbox.push({"type": "auth", "token": token})
            self._wake.set()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, timeout: float | None) -> Message:
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            raise _Transient(f"no message from the server for {timeout:g}s") from None
        if msg.type is aiohttp.WSMsgType.TEXT:
            try:
                value = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                return {}
            return value if isinstance(value, dict) else {}
        if msg.type is aiohttp.WSMsgType.BINARY:
            return {}
        code = ws.close_code if ws.close_code is not None else 1006
        reason = str(msg.extra or "") if msg.type is aiohttp.WSMsgType.CLOSE else ""
        if code == CloseCode.AUTH_FAILED:
            raise AuthenticationError("AUTH_FAILED", reason or "Invalid token")
        if not should_reconnect(code):
            raise ConnectionClosed(code, reason)
        raise _Transient(f"connection closed (code {code}{': ' + reason if reason else ''})", code)

    async def _expect_welcome(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        msg = await self._receive(ws, self.client.connect_timeout)
        if msg.get("type") != "connected":
            raise _Transient(f"unexpected first message {msg.get('type')!r}")
        with contextlib.suppress(ValueError, TypeError):
            self.server_offset = parse_timestamp(msg["timestamp"]) - time.time()

    async def _await_auth(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await self._receive(ws, self.client.connect_timeout)
            kind = msg.get("type")
            if kind == "authenticated":
                self.user_id = str(msg.get("userId", ""))
                return
            if kind == "ping":
                self._pong()
            elif kind == "error":
                err = error_from_message(msg)
                if isinstance(err, AuthenticationError):
                    raise err
                raise _Transient(f"auth refused: {err}")

    def _pong(self) -> None:
        if self._outbox is not None:
            self._outbox.push_free({"type": "pong", "timestamp": rfc3339()})
            self._wake.set()

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await self._receive(ws, self.client.idle_timeout)
            kind = msg.get("type")
            if kind == "ping":
                self._pong()
            elif kind == "error":
                err = error_from_message(msg)
                if isinstance(err, AuthenticationError):
                    raise err
                if not any(sub.handle_error(err) for sub in list(self.subs)):
                    log.warning("%s: %s", self.gateway, err)
                    self.client._status(f"server error: {err}", None)
            elif kind:
                for sub in list(self.subs):
                    if sub.handle(msg):
                        break

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse, outbox: Outbox) -> None:
        while True:
            self._wake.clear()
            msg, wait = outbox.pop(time.monotonic())
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

    def __init__(self, link: _Link, sub: _TerminalSub, session_id: str) -> None:
        self._link = link
        self._sub = sub
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
        if self._sub.resuming or not self._link.connected.is_set():
            self._sub.hold(list(split_input(data)))
            return
        for item in split_input(data):
            self._link.send(item)

    async def drain(self, max_pending: int = 32) -> None:
        """Wait while more than `max_pending` messages wait for the rate-limit mirror (a
        producer such as a large file on stdin then reads no faster than input is sent)."""
        # Polled: the outbox is plain synchronous code with no event to wait on.
        while (self._link._outbox is not None and len(self._link._outbox) > max_pending  # noqa: ASYNC110
               and not self._sub.ended):
            await asyncio.sleep(0.05)

    def eof(self) -> None:
        """End the program's standard input after what was written (terminal extension
        `eof`): like closing a pipe into `docker exec -i`."""
        self._link.send({"type": "eof"})

    def resize(self, cols: int, rows: int) -> None:
        def clamp(n: int) -> int:
            return max(1, min(1000, n))  # the gateway's accepted range

        self._sub.size = (clamp(cols), clamp(rows))
        if self._sub.resuming or not self._link.connected.is_set():
            return  # applied after the resume
        self._link.send({"type": "resize", "cols": clamp(cols), "rows": clamp(rows)})

    async def close(self) -> None:
        """Ask the server to end the shell (`close_terminal`), then wait for the end."""
        if not self._sub.ended and self._link.connected.is_set():
            self._link.send({"type": "close_terminal"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sub.ended_event.wait(), 5)
        await self._link.close()

    def __aiter__(self) -> AsyncIterator[str]:
        return (chunk.data async for chunk in self._sub.items())

    def output(self) -> AsyncIterator[TerminalOutput]:
        """The output with its stream ("stdout"/"stderr" when opened with tty=False)."""
        return self._sub.items()


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
        self.rate_limits = {**SERVER_RATE_LIMITS, **(rate_limits or {})}
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

    def _status_text(self, text: str) -> None:
        self._status(text, None)

    def _status(self, text: str, code: int | None) -> None:
        log.info("%s", text)
        if self.on_status is not None:
            self.on_status(text)

    def _link(self, gateway: str, *, shared: bool = False, reconnect: bool = True) -> _Link:
        if shared and self._containers is not None and not self._containers.closed:
            return self._containers
        link = _Link(self, gateway, reconnect=reconnect)
        self._links.add(link)
        if shared:
            self._containers = link
        return link

    async def _stream(self, link: _Link, sub: _Subscription) -> AsyncGenerator[Any, None]:
        link.add(sub)
        try:
            async for item in sub.items():
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
                            _LogsSub(container, tail, since, follow, quiet))

    def stats(self, *containers: str, interval: int | None = None) -> AsyncGenerator[StatsSample, None]:
        return self._stream(self._link("containers", shared=True), _StatsSub(list(containers), interval))

    def events(self, filters: Mapping[str, list[str]] | None = None) -> AsyncGenerator[Event, None]:
        """Docker events and system logs pushed by `/ws/logs`; `filters` like the
        engine's (`{"container": ["web"], "type": ["container"]}`) narrow the events."""
        return self._stream(self._link("logs"), _EventsSub(filters))

    def metrics(self, interval: int | None = None) -> AsyncGenerator[MetricsSample, None]:
        return self._stream(self._link("metrics"), _MetricsSub(interval))

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
        sub = _TerminalSub(container, shell, cols, rows, command=command, tty=tty, stdin=stdin,
                           resume=resume, on_status=self._status_text)
        link.add(sub)
        try:
            session_id = await asyncio.wait_for(asyncio.shield(sub.opened), timeout)
        except TimeoutError:
            await link.close()
            raise TerminalError(f"no answer to open_terminal within {timeout:g}s") from None
        except BaseException:
            await link.close()
            raise
        return TerminalSession(link, sub, session_id)


__all__ = ["DEFAULT_URL", "Input", "OpenPanelClient", "TerminalSession", "TokenSource", "gateway_url"]
