"""The handshake guard: sockets that never finish the upgrade, too many unauthenticated
sockets, file-descriptor exhaustion and handshake resets (docs/protocol.md "Handshake and
sockets"), and the open-files limit.

`PendingSockets`, `LogThrottle` and `loop_error_kind` are plain synchronous code (tested
with a fake clock); `HandshakeGuard` is what aiohttp's per-connection hooks and the event
loop's exception handler call (installed by `openpanel_ws.aiohttp_edge`, the one module
that touches aiohttp internals).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "LOG_EVERY_SECONDS",
    "MESSAGES",
    "HandshakeGuard",
    "LogThrottle",
    "PendingSockets",
    "loop_error_kind",
    "raise_nofile_limit",
]

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class PendingSockets:
    """Counts sockets not yet authenticated, in total and per client address."""

    __slots__ = ("_by_ip", "count", "per_ip", "total")

    def __init__(self, total: int, per_ip: int = 0) -> None:
        self.total = total
        self.per_ip = per_ip  # 0: no per-address cap
        self.count = 0
        self._by_ip: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        if self.count >= self.total:
            return False
        if self.per_ip and self._by_ip.get(ip, 0) >= self.per_ip:
            return False
        self.count += 1
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        self.count -= 1
        left = self._by_ip.get(ip, 0) - 1
        if left > 0:
            self._by_ip[ip] = left
        else:
            self._by_ip.pop(ip, None)


class LogThrottle:
    """At most one line per `every` seconds per kind, carrying how many were folded in."""

    __slots__ = ("_counts", "_last", "every")

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def note(self, kind: str, now: float) -> int:
        """Record one occurrence; returns the count to log now, or 0 (folded)."""
        self._counts[kind] = self._counts.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            return 0
        return self.take(kind, now)

    def take(self, kind: str, now: float) -> int:
        """The folded count (resets it); call when the window ends."""
        count = self._counts.pop(kind, 0)
        if count:
            self._last[kind] = now
        return count

    def due(self, kind: str) -> float | None:
        """When the folded count of `kind` may be logged, or None when nothing is folded."""
        if not self._counts.get(kind):
            return None
        return self._last.get(kind, 0.0) + self.every


MESSAGES = {
    "refused": "refused %d new socket(s): too many unauthenticated connections",
    "handshake_timeout": "closed %d socket(s) that did not finish a request (WebSocket upgrade "
                         "or HTTP) in time",
    "emfile": "out of file descriptors (%d time(s)): new connections wait; "
              "raise the open-files limit (ulimit -n)",
    "reset": "%d client(s) reset the connection during the handshake",
}


class _Pending:
    __slots__ = ("authenticated", "ip", "timer", "transport")

    def __init__(self, ip: str, transport: asyncio.Transport) -> None:
        self.ip = ip
        self.transport = transport
        self.timer: asyncio.TimerHandle | None = None  # the handshake clock; None once upgraded or expired
        self.authenticated = False


class HandshakeGuard:
    """Per-connection hooks: cap unauthenticated sockets, time out unfinished upgrades."""

    def __init__(self, handshake_timeout: float, max_total: int, max_per_ip: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.handshake_timeout = handshake_timeout
        self.pending = PendingSockets(max_total, max_per_ip)
        self.throttle = LogThrottle()
        self._clock = clock
        self._conns: dict[Any, _Pending] = {}
        self._flush: dict[str, asyncio.TimerHandle] = {}

    # --- what aiohttp's per-connection hooks call (aiohttp_edge.install_guard) ------

    def on_made(self, handler: Any, transport: asyncio.Transport) -> bool:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.pending.admit(ip):
            self.note("refused")
            transport.abort()
            return False
        state = self._conns[handler] = _Pending(ip, transport)
        self._arm(handler, state)
        return True

    def _arm(self, handler: Any, state: _Pending) -> None:
        if state.timer is not None:
            state.timer.cancel()
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(self.handshake_timeout, self._expire, handler)

    def on_lost(self, handler: Any) -> None:
        state = self._conns.pop(handler, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        if not state.authenticated:
            self.pending.release(state.ip)

    def upgraded(self, handler: Any) -> None:
        """The WebSocket upgrade completed: the handshake clock stops (auth has its own)."""
        state = self._conns.get(handler)
        if state is not None and state.timer is not None:
            state.timer.cancel()
            state.timer = None

    def authenticated(self, handler: Any) -> None:
        """First successful auth: the socket no longer counts as unauthenticated."""
        state = self._conns.get(handler)
        if state is not None and not state.authenticated:
            state.authenticated = True
            self.pending.release(state.ip)

    def responded(self, handler: Any) -> None:
        """A plain HTTP response (not an upgrade) started on this socket: the clock bounds
        each request, not the socket's life, so the socket's next request gets a fresh
        `handshake_timeout`. A keep-alive socket that then stays idle, or trickles its
        next request, is still closed when that runs out."""
        state = self._conns.get(handler)
        if state is not None and state.timer is not None:
            self._arm(handler, state)

    def _expire(self, handler: Any) -> None:
        state = self._conns.get(handler)
        if state is None:
            return
        state.timer = None
        self.note("handshake_timeout")
        state.transport.abort()

    # --- throttled log lines -----------------------------------------------------------

    def note(self, kind: str) -> None:
        count = self.throttle.note(kind, self._clock())
        if count:
            log.warning(MESSAGES[kind], count)
        elif kind not in self._flush:
            due = self.throttle.due(kind)
            if due is not None:
                loop = asyncio.get_running_loop()
                self._flush[kind] = loop.call_later(max(0.0, due - self._clock()),
                                                    self._flush_kind, kind)

    def _flush_kind(self, kind: str) -> None:
        self._flush.pop(kind, None)
        count = self.throttle.take(kind, self._clock())
        if count:
            log.warning(MESSAGES[kind], count)

    def close(self) -> None:
        for handle in self._flush.values():
            handle.cancel()
        self._flush.clear()

    def loop_error(self, context: dict[str, Any]) -> bool:
        """An error the event loop reports (aiohttp_edge installs the handler): True when
        it was one of ours, noted as one throttled line, never a traceback."""
        kind = loop_error_kind(context)
        if kind is None:
            return False
        self.note(kind)
        return True


def loop_error_kind(context: dict[str, Any]) -> str | None:
    """EMFILE and friends ("emfile") and handshake resets ("reset"); None for anything else."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return "emfile"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    return None


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    log.info("open-files limit: %d (hard %d)", soft, hard)
    return soft, hard
