"""A host's status and the rules that change it (docs/hosts.md "Status"), no I/O.

connecting -> up | down; up -> down; down -> up. `disabled` is final (configured off).
Probes run every `up_interval` while up (mostly /_ping, /info now and then); while
connecting or down they are retried with capped exponential backoff and jitter, so a
fleet of gateways that lost one host does not retry in step. Every change of state is a
new `HostStatus`, which `/ws/logs` sends as `host_status`; while down the error is kept
current (`GET /api/hosts` shows the last one) without a new announcement, so a probe and a
stream failing with different words do not announce the same outage again and again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from openpanel_ws.backoff import Backoff
from openpanel_ws.protocol import rfc3339

__all__ = [
    "HostMonitor",
    "HostState",
    "HostStatus",
]


class HostState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class HostStatus:
    host: str
    state: HostState
    since: float  # wall-clock seconds of the last change
    error: str | None = None  # the last error, while down
    version: str | None = None  # the engine's version, once seen
    containers: int | None = None  # the engine's container count at the last probe

    def message(self) -> dict[str, Any]:
        """The `host_status` line of /ws/logs (docs/protocol.md "Hosts")."""
        out: dict[str, Any] = {"type": "host_status", "host": self.host, "state": str(self.state),
                               "timestamp": rfc3339(self.since)}
        if self.error is not None:
            out["error"] = self.error
        return out

    def summary(self) -> dict[str, Any]:
        """One host of GET /api/hosts."""
        return {"id": self.host, "state": str(self.state), "error": self.error,
                "version": self.version, "containers": self.containers}


class HostMonitor:
    """The status of one host, fed probe results; answers when to probe next."""

    def __init__(self, host: str, *, enabled: bool = True, now: float = 0.0,
                 up_interval: float = 1.0, info_every: int = 15,
                 backoff: Backoff | None = None) -> None:
        state = HostState.CONNECTING if enabled else HostState.DISABLED
        self.status = HostStatus(host, state, now)
        # While up: a cheap liveness probe (/_ping) every `up_interval`, so a host that
        # hangs is down within its engine timeout plus this; every `info_every`-th probe,
        # and every probe while not up, asks /info (version, container count).
        self.up_interval = up_interval
        self.info_every = info_every
        self._pings = 0
        self.backoff = backoff or Backoff(0.5, 30.0, jitter=0.5)

    def wants_info(self) -> bool:
        """Whether the next probe should be the full one (/info) rather than /_ping."""
        if self.status.state is not HostState.UP:
            return True
        self._pings = (self._pings + 1) % self.info_every
        return self._pings == 0

    @property
    def disabled(self) -> bool:
        return self.status.state is HostState.DISABLED

    def succeeded(self, now: float, *, version: str | None = None,
                  containers: int | None = None) -> HostStatus | None:
        """A probe (or any engine answer) succeeded; the new status if the state changed."""
        if self.disabled:
            return None
        self.backoff.reset()
        old = self.status
        version = version or old.version
        containers = containers if containers is not None else old.containers
        if old.state is HostState.UP:
            self.status = replace(old, version=version, containers=containers)
            return None
        self.status = HostStatus(old.host, HostState.UP, now, None, version, containers)
        return self.status

    def failed(self, now: float, error: str) -> HostStatus | None:
        """A probe (or a stream) failed; the new status if the state changed (the error is
        updated either way)."""
        if self.disabled:
            return None
        old = self.status
        if old.state is HostState.DOWN:
            self.status = replace(old, error=error)
            return None
        self.status = replace(old, state=HostState.DOWN, since=now, error=error)
        return self.status

    def next_probe(self) -> float:
        """Seconds until the next probe."""
        if self.status.state is HostState.UP:
            return self.up_interval
        delay = self.backoff.next_delay()
        return self.up_interval if delay is None else delay
