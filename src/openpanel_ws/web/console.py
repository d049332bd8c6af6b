"""Sans-I/O parts of the web console: static asset table, HTTP caching, the container list
of every host, the host list.

Nothing here touches the network or the engine; `routes.py` is the aiohttp edge.
See docs/console.md.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpanel_ws.auth import AuthError, Principal, TokenVerifier
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.hosts.status import HostStatus
from openpanel_ws.protocol import rfc3339

__all__ = [
    "API_CACHE_CONTROL",
    "ASSET_CACHE_CONTROL",
    "COMPRESSIBLE",
    "CONTENT_SECURITY_POLICY",
    "CONTENT_TYPES",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "BadAuthorization",
    "StaticFile",
    "accepts_gzip",
    "bearer_principal",
    "bearer_token",
    "build_static_table",
    "container_summary",
    "engine_time",
    "etag_matches",
    "host_row",
    "host_state",
    "list_response",
    "own_names",
    "visible_containers",
]

STATIC_DIR = Path(__file__).parent / "static"

# Scripts only from this origin, never inline; sockets and fetch only to this origin.
# style-src needs 'unsafe-inline' because xterm.js sizes its grid with <style> elements
# it creates at run time (it has no nonce support); no container byte ever becomes markup
# (the console renders container data with textContent only), so no one can inject CSS.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = frozenset({".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt"})

# Every asset is revalidated (a 304 costs one small round trip) so an upgraded gateway
# never runs a mix of old and new modules; the ETag is the content hash.
ASSET_CACHE_CONTROL = "no-cache"
API_CACHE_CONTROL = "no-store"


@dataclass(frozen=True)
class StaticFile:
    path: str  # URL path below /static/ ("js/main.js"); "index.html" for the page
    content_type: str
    body: bytes
    gzipped: bytes | None
    etag: str


def build_static_table(root: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Read every servable file once; only files listed here can ever be served."""
    table: dict[str, StaticFile] = {}
    for file in sorted(root.rglob("*")):
        if not file.is_file():
            continue
        content_type = CONTENT_TYPES.get(file.suffix)
        if content_type is None:  # LICENSE, VERSIONS, package.json: text for humans
            if file.suffix == "" or file.name == "package.json":
                content_type = CONTENT_TYPES[".txt"]
            else:
                continue
        rel = file.relative_to(root).as_posix()
        body = file.read_bytes()
        packed = gzip.compress(body, 9, mtime=0) if (file.suffix in COMPRESSIBLE or file.suffix == "") \
            and len(body) > 1024 else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        table[rel] = StaticFile(rel, content_type, body, packed, etag)
    return table


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list against our strong ETag."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in {"gzip", "*"}:
            q = params.strip().removeprefix("q=")
            return not (params and q.replace(".", "", 1).isdigit() and float(q) == 0)
    return False


# --- GET /api/containers ------------------------------------------------------------


class BadAuthorization(Exception):
    """No usable `Authorization: Bearer` header; str() is the client-facing reason."""


def bearer_token(header: str | None) -> str:
    if not header:
        raise BadAuthorization("missing Authorization: Bearer token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadAuthorization("Authorization must be 'Bearer <token>'")
    return token.strip()


def bearer_principal(header: str | None, verifier: TokenVerifier) -> Principal | None:
    """The principal of a valid `Authorization: Bearer` token; None for anything else."""
    try:
        return verifier.verify(bearer_token(header))
    except (BadAuthorization, AuthError):
        return None


def own_names(entry: Mapping[str, Any]) -> list[str]:
    """The container's own name(s) from a /containers/json entry, without the '/'.

    Legacy links add alias names such as "/other/alias"; those are not the container's
    name (inspect's `Name` never shows them), so scopes never match on them.
    """
    names = entry.get("Names")
    if not isinstance(names, list):
        return []
    out = []
    for name in names:
        if isinstance(name, str) and name:
            bare = name.lstrip("/")
            if bare and "/" not in bare:
                out.append(bare)
    return out


def visible_containers(principal: Principal, entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The entries this principal may see: the same rule as the WebSocket gateways."""
    return [e for e in entries if principal.may_access_container(own_names(e))]


def engine_time(value: Any) -> str | None:
    """The engine's RFC 3339 nano times, with its zero time ("0001-01-01…") as None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    return value


def container_summary(entry: Mapping[str, Any], state: Mapping[str, Any] | None,
                      host: str | None = None) -> dict[str, Any]:
    """One row of the list: list-entry fields plus, when inspected, the State times;
    `host` is the id of the container's host."""
    names = own_names(entry)
    created = entry.get("Created")
    row: dict[str, Any] = {
        "id": entry.get("Id", ""),
        "host": host,
        "name": names[0] if names else str(entry.get("Id", ""))[:12],
        "image": entry.get("Image", ""),
        "state": entry.get("State", ""),
        "status": entry.get("Status", ""),
        "created": rfc3339(float(created)) if isinstance(created, int | float) else None,
        "startedAt": None,
        "finishedAt": None,
        "exitCode": None,
        "health": None,
    }
    if state:
        row["startedAt"] = engine_time(state.get("StartedAt"))
        row["finishedAt"] = engine_time(state.get("FinishedAt"))
        code = state.get("ExitCode")
        row["exitCode"] = code if isinstance(code, int) and row["state"] != "running" else None
        health = state.get("Health")
        if isinstance(health, Mapping) and isinstance(health.get("Status"), str):
            row["health"] = health["Status"]
    return row


def list_response(rows: list[dict[str, Any]], now: float,
                  unavailable: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The list: running first, then by name (then host); `unavailable` names each host
    that did not answer (additive; its containers are missing)."""
    rows = sorted(rows, key=lambda r: (r["state"] != "running", r["name"], r.get("host") or ""))
    out: dict[str, Any] = {"containers": rows, "timestamp": rfc3339(now)}
    if unavailable is not None:
        out["unavailable"] = unavailable
    return out


# --- GET /api/hosts -----------------------------------------------------------------


def host_state(status: HostStatus) -> dict[str, Any]:
    """One host of an authenticated /readyz: its id, state and last error."""
    return {"id": status.host, "state": str(status.state), "error": status.error}


def host_row(status: HostStatus, config: HostConfig) -> dict[str, Any]:
    """One host of GET /api/hosts: its status plus its configuration, without secrets."""
    return {**status.summary(), "engine": config.target.describe(),
            "terminals": config.terminals}
