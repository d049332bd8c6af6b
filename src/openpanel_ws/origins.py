"""Which browser origins may open a WebSocket (docs/protocol.md "Origin"), and the 403
with one throttled log line for those that may not."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from openpanel_ws.config import ORIGINS_SETTING, normalize_origin

__all__ = [
    "RefusedOrigins",
    "origin_allowed",
    "origin_refused",
]

# The refusal line keeps the server's logger name (where operators have looked for it).
log = logging.getLogger("openpanel_ws.server")


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str],
                   scheme: str | None = None) -> bool:
    """OWASP CSWSH: no Origin (non-browser) and same-origin pass; others need the list.

    Same origin means same host and, when `scheme` (the server's: http/https) is given,
    the matching scheme: an https:// page is not the origin of an http:// server."""
    if origin is None:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    with contextlib.suppress(ValueError):  # listed values compare as browsers send them
        normal = normalize_origin(origin)
        if any(a != "*" and normalize_origin(a) == normal for a in allowed):
            return True
    try:
        parts = urlsplit(origin)
        netloc = parts.netloc
    except ValueError:  # e.g. "http://[::1": not an origin, so not ours either
        return False
    if scheme is not None:
        expected = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme.lower())
        if parts.scheme.lower() != expected:
            return False
    return bool(host) and netloc.lower() == (host or "").lower()


class RefusedOrigins:
    """Logs a refused Origin at INFO, at most once per origin per `period` seconds, so
    an operator learns which setting to change without a flood (docs/protocol.md "Origin")."""

    MAX_REMEMBERED = 1024

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}

    def should_log(self, origin: str, now: float) -> bool:
        last = self._last.get(origin)
        if last is not None and now - last < self.period:
            return False
        if len(self._last) >= self.MAX_REMEMBERED:
            self._last = {o: t for o, t in self._last.items() if now - t < self.period}
            if len(self._last) >= self.MAX_REMEMBERED:
                return False  # a storm of distinct origins: stay quiet rather than grow
        self._last[origin] = now
        return True


def origin_refused(request: web.Request, origin: str, allowed: list[str],
                   refused: RefusedOrigins) -> web.Response:
    origin = origin[:256]  # a header is the client's: bounded, and printed with repr below
    if refused.should_log(origin, time.monotonic()):
        shown = origin if origin.isprintable() else repr(origin)
        log.info("refused WebSocket handshake on %s from Origin %s: not same-origin and not in "
                 "%s (now: %s)", request.path, shown, ORIGINS_SETTING,
                 ",".join(allowed) if allowed else "empty")
    return web.json_response({
        "error": "origin not allowed",
        "origin": origin,
        "setting": ORIGINS_SETTING,
        "message": f"Origin {origin} is not allowed; add it to {ORIGINS_SETTING} "
                   "(comma-separated scheme://host[:port])",
    }, status=403)
