"""The asyncio client: `OpenPanelClient` and its `TerminalSession` (aiohttp).

Every gateway the client uses is one `Link` (`openpanel_ws.client.link`), a connection
that reconnects by itself and carries out what its sans-I/O `ClientConnection`
(`openpanel_ws.client.sansio`) decides; the `/ws/containers` link is shared by `logs`
and `stats`. Each subscription's items reach the caller through its async iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, overload
from urllib.parse import quote

import aiohttp

from openpanel_ws.client.link import Consumer, Link
from openpanel_ws.client.messages import (
    AuthenticationError,
    ClientError,
    ConnectionFailed,
    Event,
    HostStatus,
    LogLine,
    MetricsSample,
    StatsSample,
    TerminalError,
    TerminalOutput,
)
from openpanel_ws.client.policy import REFRESH_MARGIN, BackoffPolicy
from openpanel_ws.client.sansio import ClientSubscription, ConnectionConfig
from openpanel_ws.client.subscriptions import (
    EventsSubscription,
    LogsSubscription,
    MetricsSubscription,
    StatsSubscription,
)
from openpanel_ws.client.terminal import TerminalSubscription
from openpanel_ws.protocol import DEFAULT_RATE_LIMITS
from openpanel_ws.ratelimit import RateLimit

__all__ = ["DEFAULT_URL", "OpenPanelClient", "TerminalSession", "TokenSource", "api_url", "gateway_url"]

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]
StatusCallback = Callable[[str], None]

DEFAULT_URL: Final = "ws://127.0.0.1:3001"
GATEWAYS: Final = ("containers", "logs", "metrics", "terminal")


def gateway_url(base: str, gateway: str, host_route: str | None = None) -> str:
    """ws://host:port[/ws/x] or http(s)://… -> ws(s)://host:port/ws/<gateway>; with
    `host_route`, the route of that Docker host: …/hosts/<id>/ws/<gateway>
    (docs/protocol.md "Addressing"). A base URL that ends in /hosts/<id> works too."""
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
    if host_route is not None:
        return f"{url}/hosts/{quote(host_route, safe='')}/ws/{gateway}"
    return f"{url}/ws/{gateway}"


def api_url(base: str, path: str) -> str:
    """The HTTP address of `path` (/api/...) on the gateway of the base URL."""
    url = gateway_url(base, "containers")[: -len("/ws/containers")]
    url = re.sub(r"/hosts/[^/]+$", "", url)  # a host route's base: the API is the gateway's
    if url.startswith("ws://"):
        return "http://" + url[len("ws://"):] + path
    return "https://" + url[len("wss://"):] + path


# --- terminal ---------------------------------------------------------------------------


class TerminalSession:
    """An interactive terminal: `write()` keystrokes, `resize()`, iterate the output."""

    def __init__(self, link: Link, sub: TerminalSubscription, consumer: Consumer,
                 session_id: str) -> None:
        self._link = link
        self._sub = sub
        self._consumer = consumer
        self.session_id = session_id
        self.container_id = sub.container

    @property
    def host(self) -> str | None:
        """The host of the container: the one named, else the one the gateway said."""
        return self._sub.host

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
        self._link.send(self._sub.write(data, link_open=self._link.is_open))

    async def drain(self, max_pending: int = 32) -> None:
        """Wait while more than `max_pending` messages wait for the rate-limit mirror (a
        producer such as a large file on stdin then reads no faster than input is sent)."""
        # Polled: the outbox is plain synchronous code with no event to wait on.
        while self._link.pending() > max_pending and not self._sub.ended:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def eof(self) -> None:
        """End the program's standard input after what was written (terminal extension
        `eof`): like closing a pipe into `docker exec -i`."""
        self._sub.eof_sent = True
        self._link.send([{"type": "eof"}])

    def resize(self, cols: int, rows: int) -> None:
        """Clamped to the gateway's range; while reattaching, applied after the resume."""
        self._link.send(self._sub.resize(cols, rows, link_open=self._link.is_open))

    async def close(self) -> None:
        """Ask the server to end the shell (`close_terminal`), then wait for the end."""
        if not self._sub.ended and self._link.is_open:
            self._link.send([{"type": "close_terminal"}])
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

    `host` is the Docker host of every container named without one (None: the gateway's
    default host); each call may name another (`logs("web", host="prod-2")`).
    `host_route` connects to the routes of one host (`/hosts/{id}/ws/*`) instead of
    the plain `/ws/*` endpoints that serve every host.
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
        host: str | None = None,
        host_route: str | None = None,
    ) -> None:
        self.url = url
        self.host = host
        self.host_route = host_route
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
        self._links: set[Link] = set()
        self._containers: Link | None = None

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

    async def hosts(self) -> list[dict[str, Any]]:
        """`GET /api/hosts`: the Docker hosts the token may see, each
        {id, engine, state, error, version, containers, terminals}."""
        http = await self._http()
        headers = {"Authorization": f"Bearer {await self._token()}"}
        url = api_url(self.url, "/api/hosts")
        try:
            async with http.get(url, headers=headers) as resp:
                if resp.status == 401:
                    raise AuthenticationError("AUTH_FAILED", "Invalid token")
                if resp.status != 200:
                    raise ClientError(f"GET {url}: HTTP {resp.status}")
                body = await resp.json()
        except aiohttp.ClientError as exc:
            raise ConnectionFailed(f"cannot connect to {url}: {exc}") from exc
        if not isinstance(body, list):
            raise ClientError(f"GET {url}: expected a list of hosts")
        return [h for h in body if isinstance(h, dict)]

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

    def _link(self, gateway: str, *, shared: bool = False, reconnect: bool = True) -> Link:
        if shared and self._containers is not None and not self._containers.closed:
            return self._containers
        config = ConnectionConfig(
            gateway_url(self.url, gateway, self.host_route),
            rate_limit=self.rate_limits[gateway],
            backoff=self.backoff, reconnect=reconnect, wait_for_server=self.wait_for_server,
            connect_timeout=self.connect_timeout, idle_timeout=self.idle_timeout,
            refresh_margin=self.token_refresh_margin)
        link = Link(gateway, config, heartbeat=self.heartbeat,
                     refreshable=not isinstance(self.token, str), http=self._http,
                     token=self._token, status=self._status, forget=self._links.discard)
        self._links.add(link)
        if shared:
            self._containers = link
        return link

    async def _stream(self, link: Link, sub: ClientSubscription) -> AsyncGenerator[Any, None]:
        consumer = link.add(sub)
        try:
            async for item in consumer.items():
                yield item
        finally:
            await link.remove(sub)

    def logs(self, container: str, *, tail: int | str | None = None,
             since: str | float | None = None, follow: bool = True,
             quiet: float = 1.0, host: str | None = None) -> AsyncGenerator[LogLine, None]:
        """Log lines of one container; resumes after a reconnect with no gap or duplicate.

        `follow=False` ends once the backlog is delivered: at the first line newer than
        the request (server clock), or after `quiet` seconds without a line (3x that
        before the first line).
        """
        return self._stream(self._link("containers", shared=True),
                            LogsSubscription(container, tail, since, follow, quiet,
                                             host or self.host))

    def stats(self, *containers: str | tuple[str | None, str], interval: int | None = None,
              host: str | None = None) -> AsyncGenerator[StatsSample, None]:
        """Samples of containers, each a name (on `host`) or a (host, name) pair."""
        return self._stream(self._link("containers", shared=True),
                            StatsSubscription(list(containers), interval, host or self.host))

    @overload
    def events(self, filters: Mapping[str, list[str]] | None = None, *,
               host_status: Literal[False] = False) -> AsyncGenerator[Event, None]: ...

    @overload
    def events(self, filters: Mapping[str, list[str]] | None = None, *,
               host_status: Literal[True]) -> AsyncGenerator[Event | HostStatus, None]: ...

    def events(self, filters: Mapping[str, list[str]] | None = None, *,
               host_status: bool = False) -> AsyncGenerator[Event | HostStatus, None]:
        """Docker events and system logs pushed by `/ws/logs`; `filters` like the
        engine's (`{"container": ["web"], "type": ["container"]}`) narrow the events.
        With `host_status`, the `HostStatus` of hosts that change state too."""
        return self._stream(self._link("logs"), EventsSubscription(filters, host_status))

    def metrics(self, interval: int | None = None,
                host: str | None = None) -> AsyncGenerator[MetricsSample, None]:
        """Metrics of the gateway's machine, or of the machine of `host` (only a host
        on the gateway's machine has them: a remote one is `InvalidMessage`)."""
        return self._stream(self._link("metrics"), MetricsSubscription(interval, host or self.host))

    async def terminal(self, container: str, *, shell: str | None = None,
                       cols: int | None = None, rows: int | None = None,
                       command: Sequence[str] | None = None, tty: bool = True,
                       stdin: bool = True, timeout: float = 30.0,
                       resume: bool = True, host: str | None = None) -> TerminalSession:
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
                                   stdin=stdin, resume=resume, host=host or self.host)
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

