"""The configured Docker hosts (docs/hosts.md "Configuration"), parsed without I/O.

Two forms:

- TOML: ``[[hosts]]`` tables, each with ``id`` and ``engine`` and optional ``ca``, ``cert``,
  ``key`` (or ``certs``, a directory with ca.pem, cert.pem, key.pem), ``tls_verify``,
  ``known_hosts``, ``identity``, ``socket``, ``keepalive``, ``timeout``, ``terminals``,
  ``enabled``;
- ``OPENPANEL_WS_HOSTS``: ``id=URL,id=URL``; a ``?certs=DIR`` query gives a tcp:// host
  its TLS files.

With no hosts configured there is one, ``local``, on ``DOCKER_HOST`` (default: the local
socket).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from openpanel_ws.engine.target import DEFAULT_SOCKET, EngineTarget

__all__ = [
    "DEFAULT_HOST_ID",
    "HOST_ID_PATTERN",
    "HostConfig",
    "check_hosts",
    "hosts_from_env",
    "hosts_from_toml",
    "valid_host_id",
]

DEFAULT_HOST_ID = "local"
# A slug: lower-case letters, digits, '-' and '_', starting with a letter or a digit.
HOST_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

_TABLE_KEYS = frozenset({
    "id", "engine", "ca", "cert", "key", "certs", "tls_verify", "known_hosts", "identity",
    "socket", "keepalive", "timeout", "terminals", "enabled",
})


def valid_host_id(value: object) -> bool:
    return isinstance(value, str) and HOST_ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class HostConfig:
    id: str
    target: EngineTarget
    # Engine request timeout for this host (None: the gateway's engine_timeout).
    timeout: float | None = None
    # Terminals (/ws/terminal, exec) on this host; false refuses them with terminal_error.
    terminals: bool = True
    # A disabled host is listed with state `disabled` and never contacted.
    enabled: bool = True

    @classmethod
    def local(cls, docker_host: str = f"unix://{DEFAULT_SOCKET}") -> HostConfig:
        return cls(DEFAULT_HOST_ID, EngineTarget(docker_host))


def _path(value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a file path")
    return Path(os.path.expanduser(value))


def _certs(directory: Path) -> dict[str, Path]:
    return {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{what} must be true or false")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{what} must be a positive number")
    return float(value)


def _host_from_table(table: Mapping[str, Any], index: int) -> HostConfig:
    where = f"hosts[{index}]"
    unknown = sorted(set(table) - _TABLE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}'")
    host_id = table.get("id")
    if not valid_host_id(host_id):
        raise ValueError(f"{where}: id must be a slug (a-z, 0-9, '-', '_'), got {host_id!r}")
    assert isinstance(host_id, str)
    engine = table.get("engine")
    if not isinstance(engine, str) or not engine:
        raise ValueError(f"{where} ({host_id}): engine URL is required")
    files: dict[str, Path] = {}
    if "certs" in table:
        files.update(_certs(_path(table["certs"], f"{where}.certs")))
    for name in ("ca", "cert", "key"):
        if name in table:
            files[name] = _path(table[name], f"{where}.{name}")
    target = EngineTarget(
        engine, **files,
        tls_verify=_bool(table.get("tls_verify", True), f"{where}.tls_verify"),
        ssh_known_hosts=_path(table["known_hosts"], f"{where}.known_hosts")
        if "known_hosts" in table else None,
        ssh_identity=_path(table["identity"], f"{where}.identity") if "identity" in table else None,
        ssh_socket=str(table.get("socket", DEFAULT_SOCKET)),
        ssh_keepalive=_number(table.get("keepalive", 15.0), f"{where}.keepalive"),
    )
    try:
        target.check()
    except ValueError as exc:
        raise ValueError(f"{where} ({host_id}): {exc}") from None
    return HostConfig(
        host_id, target,
        timeout=_number(table["timeout"], f"{where}.timeout") if "timeout" in table else None,
        terminals=_bool(table.get("terminals", True), f"{where}.terminals"),
        enabled=_bool(table.get("enabled", True), f"{where}.enabled"),
    )


def hosts_from_toml(value: Any) -> tuple[HostConfig, ...]:
    """The ``hosts`` array of tables; ValueError naming the first bad entry."""
    if not isinstance(value, list):
        raise ValueError("hosts must be an array of tables ([[hosts]])")
    out = []
    for index, table in enumerate(value):
        if not isinstance(table, dict):
            raise ValueError(f"hosts[{index}] must be a table")
        out.append(_host_from_table(table, index))
    return check_hosts(out)


def hosts_from_env(value: str) -> tuple[HostConfig, ...]:
    """``id=URL,id=URL`` (``?certs=DIR`` on a tcp:// URL names its TLS directory)."""
    tables: list[dict[str, Any]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host_id, sep, url = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not id=URL")
        parts = urlsplit(url.strip())
        table: dict[str, Any] = {"id": host_id.strip()}
        query = parse_qs(parts.query)
        if "certs" in query:
            table["certs"] = query.pop("certs")[-1]
        if query:
            raise ValueError(f"{host_id}: unknown URL parameter '{sorted(query)[0]}'")
        table["engine"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        tables.append(table)
    return hosts_from_toml(tables)


def check_hosts(hosts: Iterable[HostConfig]) -> tuple[HostConfig, ...]:
    """Ids are unique; at least one host."""
    out = tuple(hosts)
    if not out:
        raise ValueError("no hosts configured (leave the setting out for the local socket)")
    seen: set[str] = set()
    for host in out:
        if host.id in seen:
            raise ValueError(f"host id '{host.id}' is configured twice")
        seen.add(host.id)
    return out
