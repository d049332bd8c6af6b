"""Terminal recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

A recording is a header line, then one JSON array per event: `[seconds, "o", text]`
for output, `[seconds, "r", "COLSxROWS"]` for a resize and, only when configured,
`[seconds, "i", text]` for input. Files are created with mode 0600, named
`<UTC time>_<user>_<container>_<session>.cast`. A write that fails (disk full), or
that would take the file past its cap or the directory past its cap (`RecordingQuota`),
is logged once and ends the recording; the terminal goes on.

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

from openpanel_ws import statedir

__all__ = [
    "SUFFIX",
    "CastError",
    "CastInfo",
    "CastRecorder",
    "RecordingFull",
    "RecordingQuota",
    "directory_bytes",
    "header",
    "list_casts",
    "play",
    "quota_for",
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


class RecordingFull(OSError):
    """The recording directory is at its cap: no new recording is started."""


@dataclass(slots=True)
class RecordingQuota:
    """The caps of the recordings in one directory: `file_max` bytes per file, `dir_max`
    for all its files. `dir_used` is shared by every recording of this process there."""

    file_max: int
    dir_max: int
    dir_used: int = 0

    def refusal(self, file_size: int, more: int) -> str | None:
        """Why `more` bytes cannot be added to a file of `file_size` bytes (None: they can)."""
        if file_size + more > self.file_max:
            return f"the file reached its cap of {self.file_max} bytes (terminal_record_max_bytes)"
        if self.dir_used + more > self.dir_max:
            return (f"the recording directory reached its cap of {self.dir_max} bytes "
                    "(terminal_record_dir_max_bytes)")
        return None


_QUOTAS: dict[str, RecordingQuota] = {}


def directory_bytes(directory: Path) -> int:
    """The size of the recordings in `directory` (0 when it does not exist yet)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    total = 0
    for entry in entries:
        if entry.name.endswith(SUFFIX):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def quota_for(directory: Path, file_max: int, dir_max: int) -> RecordingQuota:
    """The quota of `directory`, its use measured again (files removed meanwhile no
    longer count). Raises OSError when it cannot be read."""
    quota = _QUOTAS.setdefault(os.path.abspath(directory), RecordingQuota(file_max, dir_max))
    quota.file_max, quota.dir_max = file_max, dir_max
    quota.dir_used = directory_bytes(directory)
    return quota


class CastRecorder:
    """Writes one asciicast v2 file through a raw descriptor (one write per event),
    within `quota` (none: no caps)."""

    def __init__(self, fd: int, path: str, started: float, *, record_input: bool = False,
                 quota: RecordingQuota | None = None, size: int = 0) -> None:
        self.fd: int | None = fd
        self.path = path
        self.started = started  # monotonic clock of the header
        self.record_input = record_input
        self.quota = quota
        self.size = size  # bytes in the file

    @classmethod
    def create(cls, directory: Path, name: str, head: dict[str, Any], now: float, *,
               record_input: bool = False, quota: RecordingQuota | None = None) -> CastRecorder:
        """Create the file (0600, never over an existing one) and write its header.
        Raises RecordingFull when the directory is at its cap, OSError."""
        if quota is not None and quota.dir_used >= quota.dir_max:
            raise RecordingFull(f"the recording directory reached its cap of {quota.dir_max} "
                                "bytes (terminal_record_dir_max_bytes)")
        statedir.ensure_private_dir(directory, "recording directory")
        path = directory / name
        fd = statedir.open_new(path, os.O_WRONLY | os.O_APPEND)
        recorder = cls(fd, str(path), now, record_input=record_input, quota=quota)
        recorder.write_header(head)
        if recorder.fd is None:
            raise OSError(f"cannot write the recording header to {path}")
        return recorder

    @classmethod
    def reopen(cls, path: str, started: float, *, record_input: bool,
               quota: RecordingQuota | None = None) -> CastRecorder:
        """Go on appending to an existing recording (after a reload). Raises OSError."""
        fd = statedir.open_append(Path(path), "terminal recording")
        return cls(fd, path, started, record_input=record_input, quota=quota,
                   size=os.fstat(fd).st_size)

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
        refusal = self.quota.refusal(self.size, len(line)) if self.quota is not None else None
        if refusal is not None:
            log.warning("terminal recording %s stopped: %s", self.path, refusal)
            self.close()
            return
        try:
            view = memoryview(line)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
                self.size += written
                if self.quota is not None:
                    self.quota.dir_used += written
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
