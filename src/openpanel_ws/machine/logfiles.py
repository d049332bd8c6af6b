"""Tail host log files (e.g. /var/log/syslog) as readable lines, surviving rotation.

`FileTailer.poll()` is plain synchronous file I/O with no event loop: it returns the
complete lines written since the last poll. It starts at the end of an existing file
(only new lines), and follows the path like `tail -F`:

- truncation (copytruncate): the size drops below our offset -> read from the start;
- rename rotation (logrotate's default): the path names a new inode -> finish the old
  file to its end, then read the new one from its start;
- a missing file is waited for; when it appears it is new, so it is read from the start.

`MachineLogTailer` runs the polls off the event loop, one task for all files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO, Final

__all__ = ["MAX_LINE_BYTES", "FileTailer", "LineSink", "MachineLogTailer", "guess_level", "source_names"]

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 16 * 1024  # longer lines are cut (a log line, not a payload)
READ_CHUNK: Final = 256 * 1024  # per file per poll, so one noisy file cannot starve others
ROTATION_DRAIN_CHUNKS: Final = 64  # up to 16 MiB read from a file rotated away

_ERROR = re.compile(
    r"\b(error|err|fatal|crit|critical|panic|emerg|emergency|alert|failed|failure"
    r"|out of memory|segfault)\b",
    re.IGNORECASE,
)
_WARNING = re.compile(r"\b(warn|warning|warnings)\b", re.IGNORECASE)
_DEBUG = re.compile(r"\b(debug|trace)\b", re.IGNORECASE)


def guess_level(line: str) -> str:
    """error / warning / debug from keywords in the line; info otherwise."""
    if _ERROR.search(line):
        return "error"
    if _WARNING.search(line):
        return "warning"
    if _DEBUG.search(line):
        return "debug"
    return "info"


def source_names(paths: Sequence[str]) -> dict[str, str]:
    """`source` for each path: the file's name, or the full path when two share a name."""
    names = [os.path.basename(p.rstrip("/")) or p for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names, strict=True)}


class FileTailer:
    def __init__(self, path: str, *, from_start: bool = False) -> None:
        self.path = path
        self._fh: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._offset = 0
        self._partial = bytearray()
        self._last_read = 0  # bytes the last read returned
        self._from_start = from_start
        self._started = False
        # Existed but could not be opened at first: still only new lines once readable.
        self._open_at_end = False
        self._warned = False
        self.rotations = 0
        self.truncations = 0

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
            self._ident = None

    def poll(self) -> list[str]:
        """New complete lines since the last poll (decoded, invalid UTF-8 replaced)."""
        first = not self._started
        self._started = True
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        lines: list[str] = []
        if self._fh is not None and st is not None and (st.st_dev, st.st_ino) != self._ident:
            # Renamed away and replaced: the writer may have appended before switching,
            # so finish the old file (bounded) before it is closed for good.
            for _ in range(ROTATION_DRAIN_CHUNKS):
                more = self._read()
                if not more and not self._last_read:
                    break
                lines += more
            lines += self._flush_partial()
            self.close()
            self.rotations += 1
        if self._fh is None:
            if st is None:
                return lines
            at_end = not self._from_start and (first or self._open_at_end)
            if not self._open(at_end=at_end):
                self._open_at_end = at_end
                return lines
            self._open_at_end = False
        elif st is not None and st.st_size < self._offset:
            self.truncations += 1
            self._partial.clear()
            self._seek(0)
        lines += self._read()
        return lines

    def _open(self, *, at_end: bool) -> bool:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held across polls, closed in close()
        except OSError as exc:
            if not self._warned:  # once, not every poll
                self._warned = True
                log.warning("cannot read host log file %s: %s", self.path, exc.strerror or exc)
            return False
        st = os.fstat(fh.fileno())
        self._fh = fh
        self._ident = (st.st_dev, st.st_ino)
        self._partial.clear()
        self._seek(st.st_size if at_end else 0)
        return True

    def _seek(self, offset: int) -> None:
        assert self._fh is not None
        self._fh.seek(offset)
        self._offset = offset

    def _read(self) -> list[str]:
        if self._fh is None:
            return []
        try:
            data = self._fh.read(READ_CHUNK)
        except OSError:
            data = b""
        self._last_read = len(data)
        if not data:
            return []
        self._offset += len(data)
        parts = (bytes(self._partial) + data).split(b"\n")
        self._partial = bytearray(parts.pop()[:MAX_LINE_BYTES])
        return [_decode(p) for p in parts if p.strip()]

    def _flush_partial(self) -> list[str]:
        rest, self._partial = bytes(self._partial), bytearray()
        return [_decode(rest)] if rest.strip() else []


def _decode(raw: bytes) -> str:
    return raw[:MAX_LINE_BYTES].rstrip(b"\r").decode("utf-8", "replace")


LineSink = Callable[[str, str], None]  # (source, line)


class MachineLogTailer:
    """Polls every configured file on a worker thread; hands lines to `sink` on the loop."""

    def __init__(self, paths: Sequence[str], sink: LineSink, interval: float = 0.25) -> None:
        self._names = source_names(list(dict.fromkeys(paths)))
        self._tailers = [FileTailer(p) for p in self._names]
        self._sink = sink
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # A cancelled `to_thread` poll keeps running: closing waits for it.
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start_now(self) -> None:
        """Pin the end of each file, then poll in the background.

        The pinning poll runs here, on the caller's thread: a stat and an open per file,
        so a line written right after a client is told it is in is not missed.
        """
        if self.running or not self._tailers:
            return
        self._poll_all()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="host-log-tailer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._close_all)

    def _close_all(self) -> None:
        with self._lock:
            for tailer in self._tailers:
                tailer.close()
            # A later start begins at the end of each file again.
            self._tailers = [FileTailer(p) for p in self._names]

    def _poll_all(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        with self._lock:
            for tailer in self._tailers:
                try:
                    out += [(self._names[tailer.path], line) for line in tailer.poll()]
                except Exception:
                    log.exception("tailing %s failed", tailer.path)
        return out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            for source, line in await asyncio.to_thread(self._poll_all):
                self._sink(source, line)
