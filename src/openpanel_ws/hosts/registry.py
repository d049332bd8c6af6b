"""The Docker hosts of this gateway: one `Host` each (engine, events hub, status), and the
registry that looks them up and watches their status (docs/hosts.md).

Each host has its own engine client (its own aiohttp session and connection pool, its own
timeout) and its own events hub, so a host that hangs costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from openpanel_ws.engine.client import DockerEngine, EngineError
from openpanel_ws.engine.events import LOST, EventsHub
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.hosts.status import HostMonitor, HostState, HostStatus

if TYPE_CHECKING:
    from openpanel_ws.auth import Principal

__all__ = [
    "EngineFactory",
    "Host",
    "HostRegistry",
    "StatusListener",
]

log = logging.getLogger(__name__)

# Called with the new status on every change of any host's state.
StatusListener = Callable[[HostStatus], None]
# Makes a host's engine client from its configuration and request timeout.
EngineFactory = Callable[[HostConfig, float], DockerEngine]


def engine_of(config: HostConfig, timeout: float) -> DockerEngine:
    return DockerEngine(config.target, timeout)


class Host:
    """One Docker host: its id, its engine, its events stream, its status."""

    def __init__(self, config: HostConfig, default_timeout: float, *,
                 clock: Callable[[], float] = time.time,
                 engine: EngineFactory = engine_of) -> None:
        self.config = config
        self.id = config.id
        self.engine = engine(config, config.timeout or default_timeout)
        self.events = EventsHub(self.engine)
        self.monitor = HostMonitor(config.id, enabled=config.enabled, now=clock())

    @property
    def status(self) -> HostStatus:
        return self.monitor.status

    @property
    def up(self) -> bool:
        return self.monitor.status.state is HostState.UP

    @property
    def terminals(self) -> bool:
        return self.config.terminals

    @property
    def on_this_machine(self) -> bool:
        """Its engine runs on the gateway's machine (host metrics describe it)."""
        return self.config.target.on_this_machine

    def __repr__(self) -> str:
        return f"Host({self.id!r}, {self.config.target.describe()})"


class HostRegistry:
    """Every configured host, the default one, and their status watch."""

    def __init__(self, configs: tuple[HostConfig, ...], default_id: str | None = None, *,
                 default_timeout: float = 5.0, clock: Callable[[], float] = time.time,
                 engine: EngineFactory = engine_of) -> None:
        if not configs:
            raise ValueError("at least one host")
        self._clock = clock
        self._hosts = {c.id: Host(c, default_timeout, clock=clock, engine=engine)
                       for c in configs}
        self.default = self._hosts[default_id or configs[0].id]
        self._listeners: list[StatusListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        for host in self._hosts.values():
            # The events stream is the quickest witness: broken is down at once, and an
            # open stream is an engine that answers.
            host.events.add_status_listener(self._stream_status(host))
            host.events.add_open_listener(self._stream_opened(host))

    def __iter__(self) -> Iterator[Host]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, host_id: str) -> Host | None:
        return self._hosts.get(host_id)

    def visible_to(self, principal: Principal) -> list[Host]:
        """The hosts this principal's `hosts` claim lets it see, in configuration order."""
        return [h for h in self._hosts.values() if principal.may_access_host(h.id)]

    # -- status -------------------------------------------------------------------------
    def add_status_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def remove_status_listener(self, listener: StatusListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _changed(self, status: HostStatus | None) -> None:
        if status is None:
            return
        if status.state is HostState.DOWN:
            log.warning("host %s is down: %s", status.host, status.error)
        else:
            log.info("host %s is %s", status.host, status.state)
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                log.exception("host status listener failed")

    def succeeded(self, host: Host, **info: Any) -> None:
        self._changed(host.monitor.succeeded(self._clock(), **info))

    def failed(self, host: Host, error: str) -> None:
        self._changed(host.monitor.failed(self._clock(), error))

    def _stream_status(self, host: Host) -> Callable[[bool, str], None]:
        def on_stream(connected: bool, detail: str) -> None:
            if connected:
                self.succeeded(host)
            else:
                self.failed(host, detail.removeprefix(LOST))
        return on_stream

    def _stream_opened(self, host: Host) -> Callable[[], None]:
        return lambda: self.succeeded(host)

    async def probe(self, host: Host, *, full: bool = True) -> None:
        """Ask the engine for /info (or only /_ping) once; the status follows the answer."""
        try:
            info = await host.engine.get("/info" if full else "/_ping")
        except EngineError as exc:
            self.failed(host, exc.message)
            return
        except Exception as exc:  # a transport's own failure: still just "down"
            log.debug("probe of host %s failed", host.id, exc_info=True)
            self.failed(host, str(exc) or type(exc).__name__)
            return
        version = info.get("ServerVersion") if isinstance(info, dict) else None
        count = info.get("Containers") if isinstance(info, dict) else None
        self.succeeded(host, version=version if isinstance(version, str) else None,
                       containers=count if isinstance(count, int) else None)

    async def _watch(self, host: Host) -> None:
        while True:
            await self.probe(host, full=host.monitor.wants_info())
            await asyncio.sleep(host.monitor.next_probe())

    async def start(self) -> None:
        """Start each enabled host's status watch (none waits for another)."""
        for host in self._hosts.values():
            if not host.monitor.disabled:
                self._tasks.append(asyncio.create_task(self._watch(host), name=f"host-{host.id}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for host in self._hosts.values():
            await host.events.close()
            await host.engine.close()
