"""Terminal recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

A recording is a header line, then one JSON array per event: `[seconds, "o", text]`
for output, `[seconds, "r", "COLSxROWS"]` for a resize and, only when configured,
`[seconds, "i", text]` for input. Files are created with mode 0600, named
`<UTC time>_<user>_<container>_<session>.cast`. A write that fails (disk full) is
logged once and ends the recording; the terminal goes on.

Also the reading side used by `openpanel-ws recordings list|play`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = [
    "SUFFIX",
    "CastError",
    "CastInfo",
    "CastRecorder",
    "header",
    "list_casts",
    "play",
    "read_cast",
    "recording_name",
]

log = logging.getLogger(__name__)

SUFFIX: Final = ".cast"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _part(text: str, limit: int = 64) -> str:
    return _UNSAFE.sub("-", text).strip("-.")[:limit] or "unknown"


def recording_name(started_at: float, user: str, container: str, session_id: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
    return f"{stamp}_{_part(user)}_{_part(container)}_{_part(session_id)}{SUFFIX}"


def header(cols: int, rows: int, started_at: float, term: str, *, title: str = "",
           command: str = "", host: str = "") -> dict[str, Any]:
    """The header line; `host` (the Docker host's id) is an extra key that asciicast
    players ignore."""
    out: dict[str, Any] = {"version": 2, "width": cols, "height": rows,
                           "timestamp": int(started_at), "env": {"TERM": term}}
    if command:
        out["command"] = command
    if title:
        out["title"] = title
    if host:
        out["host"] = host
    return out


class CastRecorder:
    """Writes one asciicast v2 file through a raw descriptor (one write per event)."""

    def __init__(self, fd: int, path: str, started: float, *, record_input: bool = False) -> None:
        self.fd: int | None = fd
        self.path = path
        self.started = started  # monotonic clock of the header
        self.record_input = record_input

    @classmethod
    def create(cls, directory: Path, name: str, head: dict[str, Any], now: float, *,
               record_input: bool = False) -> CastRecorder:
        """Create the file (0600, never over an existing one) and write its header.
        Raises OSError."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        recorder = cls(fd, str(path), now, record_input=record_input)
        recorder.write_header(head)
        if recorder.fd is None:
            raise OSError(f"cannot write the recording header to {path}")
        return recorder

    @classmethod
    def reopen(cls, path: str, started: float, *, record_input: bool) -> CastRecorder:
        """Go on appending to an existing recording (after a reload). Raises OSError."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(fd, path, started, record_input=record_input)

    def write_header(self, head: dict[str, Any]) -> None:
        self._write(orjson.dumps(head) + b"\n")

    @property
    def active(self) -> bool:
        return self.fd is not None

    def output(self, text: str, now: float) -> None:
        self._event(now, "o", text)

    def input(self, text: str, now: float) -> None:
        if self.record_input:
            self._event(now, "i", text)

    def resize(self, cols: int, rows: int, now: float) -> None:
        self._event(now, "r", f"{cols}x{rows}")

    def _event(self, now: float, code: str, data: str) -> None:
        if self.fd is None or not data:
            return
        elapsed = round(max(0.0, now - self.started), 6)
        self._write(orjson.dumps([elapsed, code, data]) + b"\n")

    def _write(self, line: bytes) -> None:
        assert self.fd is not None
        try:
            view = memoryview(line)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            log.error("terminal recording %s stopped: %s", self.path, exc)
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


# --- reading (the `recordings` command) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CastInfo:
    path: Path
    header: dict[str, Any]
    duration: float
    events: int


class CastError(Exception):
    """Not an asciicast v2 file."""


def read_cast(path: Path) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    """Header and events; a truncated last line (recording cut short) is ignored."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise CastError(f"{path}: {exc.strerror}") from None
    try:
        head = orjson.loads(lines[0]) if lines else None
    except orjson.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("version") != 2:
        raise CastError(f"{path}: not an asciicast v2 recording")
    events: list[tuple[float, str, str]] = []
    for line in lines[1:]:
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int | float)
                and isinstance(item[1], str) and isinstance(item[2], str)):
            events.append((float(item[0]), item[1], item[2]))
    return head, events


def list_casts(directory: Path) -> Iterator[CastInfo]:
    for path in sorted(directory.glob("*" + SUFFIX)):
        try:
            head, events = read_cast(path)
        except CastError:
            continue
        yield CastInfo(path, head, events[-1][0] if events else 0.0, len(events))


def play(events: list[tuple[float, str, str]], write: Callable[[str], None],
         sleep: Callable[[float], None], *, speed: float = 1.0, max_wait: float = 2.0) -> None:
    """Output events to `write` at their pace / `speed` (pauses capped at `max_wait`)."""
    last = 0.0
    for at, code, data in events:
        if code != "o":
            continue
        delay = min(max(0.0, at - last), max_wait) / speed
        last = at
        if delay > 0:
            sleep(delay)
        write(data)
