"""The command line's text, as pure functions: option values in, tables and lines out.

`docker stats`-like sizes and tables, `docker events`-like lines, the hosts table, and
the parsing of `--since` (a duration such as `10m` means that long ago), `--tail` and
`HOST/CONTAINER`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from openpanel_ws.client.messages import Event, HostStatus, MetricsSample, StatsSample, SystemLog

__all__ = [
    "UsageError",
    "event_json",
    "format_event",
    "hosts_table",
    "human_bytes",
    "metrics_table",
    "since_option",
    "split_target",
    "stats_table",
    "tail_option",
]


class UsageError(Exception):
    """A wrong invocation: one line, exit status 2."""


def human_bytes(value: float, *, binary: bool = True) -> str:
    """Sizes as `docker stats` shows them: MiB/GiB for memory, kB/MB for network."""
    step = 1024.0 if binary else 1000.0
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] if binary else ["B", "kB", "MB", "GB", "TB", "PB"]
    n = float(value)
    for unit in units:
        if abs(n) < step or unit == units[-1]:
            # docker's go-units: BytesSize is %.4g, HumanSizeWithPrecision(3) is %.3g
            return f"{n:.4g}{unit}" if binary else f"{n:.3g}{unit}"
        n /= step
    raise AssertionError("unreachable")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def since_option(text: str, now: float | None = None) -> str | float:
    """`--since`: RFC 3339 or unix seconds pass through; `10m`, `1h30m` mean that long ago."""
    value = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    else:
        if pos == len(value) and pos > 0:
            return round((time.time() if now is None else now) - total, 3)
    with contextlib.suppress(ValueError):
        return float(value)
    if re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return value
    raise UsageError(f"--since: expected RFC 3339, unix seconds or a duration like 10m, got {text!r}")


def tail_option(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError(f"--tail: expected a number >= 0 or 'all', got {text!r}")
    return n


HOST_SEPARATOR: Final = "/"


def split_target(text: str, host: str | None = None) -> tuple[str | None, str]:
    """`ID/container` -> (ID, container); a bare name is on `host` (--host, or None for
    the gateway's default host). A container name never contains '/', so the first
    '/' is the separator."""
    if HOST_SEPARATOR not in text:
        if not text:
            raise UsageError("expected a container name or id")
        return host, text
    named, _, container = text.partition(HOST_SEPARATOR)
    if not named or not container or HOST_SEPARATOR in container:
        raise UsageError(f"expected CONTAINER or HOST/CONTAINER, got {text!r}")
    return named, container


def stats_table(samples: Mapping[str, StatsSample | None]) -> str:
    """One row per container, named as given (`host/name` when a host was named)."""
    rows = [("CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O")]
    for name, s in samples.items():
        if s is None:  # no sample yet (or not running)
            rows.append((name, "--", "-- / --", "--", "-- / --"))
            continue
        rows.append((
            name,
            f"{s.cpu_percent:.2f}%",
            f"{human_bytes(s.memory_usage)} / {human_bytes(s.memory_limit)}",
            f"{s.memory_percent:.2f}%",
            f"{human_bytes(s.rx_bytes, binary=False)} / {human_bytes(s.tx_bytes, binary=False)}",
        ))
    return _columns(rows)


def metrics_table(m: MetricsSample) -> str:
    def usage(part: dict[str, float]) -> str:
        return f"{human_bytes(part.get('used', 0))} / {human_bytes(part.get('total', 0))}"

    rows = [
        ("CPU %", "CORES", "MEM USAGE / TOTAL", "MEM %", "DISK USED / TOTAL", "DISK %", "NET RX / TX"),
        (f"{m.cpu_percent:.2f}%", str(m.cores), usage(m.memory), f"{m.memory.get('percent', 0):.2f}%",
         usage(m.disk), f"{m.disk.get('percent', 0):.2f}%",
         f"{human_bytes(m.network.get('rx_bytes', 0), binary=False)} / "
         f"{human_bytes(m.network.get('tx_bytes', 0), binary=False)}"),
    ]
    return _columns(rows)


def hosts_table(hosts: Sequence[Mapping[str, Any]]) -> str:
    """`GET /api/hosts` as a table (a missing value is "-")."""
    def cell(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    rows: list[tuple[str, ...]] = [
        ("HOST", "STATE", "ENGINE", "VERSION", "CONTAINERS", "TERMINALS", "ERROR")]
    rows += [tuple(cell(h.get(k)) for k in
                   ("id", "state", "engine", "version", "containers", "terminals", "error"))
             for h in hosts]
    return _columns(rows)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def format_event(item: Event | HostStatus) -> str:
    """One line like `docker events` (and `[level] source: message` for system logs),
    with `host=ID` after the time when the gateway names the host."""
    if isinstance(item, HostStatus):
        error = f": {item.error}" if item.error else ""
        return f"{item.timestamp} host={item.host} host {item.state}{error}"
    where = f"{item.timestamp} host={item.host}" if item.host else item.timestamp
    if isinstance(item, SystemLog):
        return f"{where} [{item.level}] {item.source}: {item.message}"
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(item.attributes.items()))
    return f"{where} {item.type} {item.action} {item.actor_id}" + (f" ({attrs})" if attrs else "")


def event_json(item: Event | HostStatus) -> dict[str, Any]:
    """The message as the gateway sent it (`host` only when it named one)."""
    out: dict[str, Any]
    if isinstance(item, HostStatus):
        out = {"type": "host_status", "host": item.host, "state": item.state,
               "timestamp": item.timestamp}
        if item.error:
            out["error"] = item.error
        return out
    if isinstance(item, SystemLog):
        out = {"type": "system_log", "timestamp": item.timestamp, "level": item.level,
               "message": item.message, "source": item.source}
    else:
        out = {"type": "docker_event", "timestamp": item.timestamp, "event": item.event}
    if item.host is not None:
        out["host"] = item.host
    return out
