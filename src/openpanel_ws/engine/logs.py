"""Container log streams, sans-I/O: bytes from the engine in, log lines out.

The engine is asked for `timestamps=1`, so every log message starts with an RFC 3339
nano timestamp and a space. Non-TTY containers send 8-byte-header frames
`[stream, 0, 0, 0, length:u32 BE]` (1 = stdout, 2 = stderr), one frame per log message;
TTY containers send the raw bytes (lines end in `\\r\\n`, all on stdout). HTTP chunks
split frames and lines anywhere, so everything incomplete is held until the rest arrives.

Also here: `FollowCursor`, which decides whether a line was already delivered, so a
stream re-opened with `since` (restart, engine hiccup) or a late subscriber's history
produce neither a gap nor a duplicate.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from openpanel_ws.engine.streams import time_param
from openpanel_ws.protocol import parse_timestamp_nanos, rfc3339_from_nanos

__all__ = [
    "ENGINE_PARTIAL_BYTES",
    "STDERR",
    "STDOUT",
    "ContainerLogLine",
    "FollowCursor",
    "HandoverFilter",
    "LogParser",
    "Reorder",
    "parse_all",
    "split_frames",
]

STDOUT = "stdout"
STDERR = "stderr"
_STREAMS = {0: STDOUT, 1: STDOUT, 2: STDERR}  # 0 is stdin: never sent for logs
_HEADER = 8
# "2026-11-27T00:07:54.913594017Z " (the engine pads to 9 digits; accept any fraction).
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) ")
_TIMESTAMP_MAX = 40  # longest prefix worth waiting for before deciding there is none
ENGINE_PARTIAL_BYTES = 16 * 1024  # the engine's log message size: longer lines are split


@dataclass(frozen=True, slots=True)
class ContainerLogLine:
    stream: str
    nanos: int  # the engine's timestamp of the line (0 when it had none)
    data: str

    @property
    def timestamp(self) -> str:
        return rfc3339_from_nanos(self.nanos)

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.nanos, self.stream, self.data)


class _Pending:
    """One stream's unfinished line: bytes so far and the timestamp of its first part."""

    __slots__ = ("data", "nanos")

    def __init__(self) -> None:
        self.data = bytearray()
        self.nanos = 0


def _split_point(data: bytes | bytearray, limit: int) -> int:
    """Largest cut <= limit that does not split a UTF-8 sequence (when avoidable)."""
    cut = limit
    # Back off over continuation bytes (10xxxxxx) to the start of a character.
    while cut > 0 and limit - cut < 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 and limit - cut < 4 else limit


def split_frames(buf: bytes | bytearray) -> tuple[list[tuple[str, bytes]], int]:
    """The complete 8-byte-header frames at the start of `buf` as (stream, payload),
    and how many bytes they used (the rest is an incomplete frame)."""
    frames: list[tuple[str, bytes]] = []
    pos = 0
    while len(buf) - pos >= _HEADER:
        size = int.from_bytes(buf[pos + 4 : pos + 8], "big")
        if len(buf) - pos - _HEADER < size:
            break
        frames.append((_STREAMS.get(buf[pos], STDOUT), bytes(buf[pos + _HEADER : pos + _HEADER + size])))
        pos += _HEADER + size
    return frames, pos


class LogParser:
    """Feed engine bytes, get complete `ContainerLogLine`s; `flush()` when the stream ends."""

    def __init__(self, *, tty: bool, max_line_bytes: int = 65536) -> None:
        if max_line_bytes < 4:
            raise ValueError("max_line_bytes must be at least 4")
        self.tty = tty
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()  # undecoded input (frame headers or TTY bytes)
        self._pending: dict[str, _Pending] = {STDOUT: _Pending(), STDERR: _Pending()}
        self._tty_at_line_start = True
        self._tty_run = 0  # payload bytes since the last timestamp prefix (TTY)

    def feed(self, chunk: bytes) -> list[ContainerLogLine]:
        out: list[ContainerLogLine] = []
        self._buf += chunk
        if self.tty:
            self._feed_tty(out)
        else:
            self._feed_frames(out)
        return out

    def flush(self) -> list[ContainerLogLine]:
        """End of stream: a partial line still counts (the container may not end with \\n)."""
        out: list[ContainerLogLine] = []
        if self.tty and self._buf:
            # Whatever remains is a line start that never got its timestamp completed.
            self._tty_take_timestamp(final=True)
            self._append(STDOUT, bytes(self._buf), out)
            self._buf.clear()
        for stream, pending in self._pending.items():
            if pending.data:
                self._emit(stream, pending, pending.data, out)
                pending.data = bytearray()
        self._tty_at_line_start = True
        self._tty_run = 0
        return out

    # --- multiplexed (non-TTY) -------------------------------------------------------

    def _feed_frames(self, out: list[ContainerLogLine]) -> None:
        frames, used = split_frames(self._buf)
        for stream, payload in frames:
            # One frame is one log message: it starts with its own timestamp, also when
            # it continues a partial (long) line.
            nanos, payload = _strip_timestamp(payload)
            pending = self._pending[stream]
            if not pending.data or not pending.nanos:
                pending.nanos = nanos
            self._append(stream, payload, out)
        del self._buf[:used]

    # --- raw (TTY) ----------------------------------------------------------------------

    def _feed_tty(self, out: list[ContainerLogLine]) -> None:
        while self._buf:
            if self._tty_at_line_start and not self._tty_take_timestamp(final=False):
                return  # wait for the rest of the timestamp
            # The engine stores a long line as 16 KiB messages, each with its own
            # timestamp prefix: mid-line in a raw stream, so look for it there.
            room = ENGINE_PARTIAL_BYTES - self._tty_run
            newline = self._buf.find(b"\n", 0, room)
            if newline >= 0:
                self._append(STDOUT, bytes(self._buf[: newline + 1]), out)
                del self._buf[: newline + 1]
                self._tty_run = 0
                self._tty_at_line_start = True
            elif len(self._buf) >= room:
                self._append(STDOUT, bytes(self._buf[:room]), out)
                del self._buf[:room]
                self._tty_run = 0
                self._tty_at_line_start = True  # a continuation prefix may follow
            else:
                self._append(STDOUT, bytes(self._buf), out)
                self._tty_run += len(self._buf)
                self._buf.clear()
                return

    def _tty_take_timestamp(self, *, final: bool) -> bool:
        """At a line start: strip the timestamp prefix. False when more bytes are needed."""
        if not self._tty_at_line_start:
            return True
        head = bytes(self._buf[:_TIMESTAMP_MAX])
        match = _TIMESTAMP.match(head)
        if match is None and not final and b" " not in head and b"\n" not in head \
                and len(head) < _TIMESTAMP_MAX:
            return False
        pending = self._pending[STDOUT]
        if match is not None:
            del self._buf[: match.end()]
            nanos = _nanos(match.group()[:-1])
            if not pending.data:
                pending.nanos = nanos
        self._tty_at_line_start = False
        return True

    # --- lines ----------------------------------------------------------------------------

    def _append(self, stream: str, payload: bytes, out: list[ContainerLogLine]) -> None:
        pending = self._pending[stream]
        data = pending.data
        data += payload
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            self._emit(stream, pending, data[start:newline], out)
            start = newline + 1
        if start:
            del data[:start]
        # A line longer than the bound goes out in pieces, each with the line's timestamp.
        while len(data) > self.max_line_bytes:
            cut = _split_point(data, self.max_line_bytes)
            self._emit(stream, pending, data[:cut], out)
            del data[:cut]

    @staticmethod
    def _emit(stream: str, pending: _Pending, raw: bytes | bytearray, out: list[ContainerLogLine]) -> None:
        # TTY lines end in \r\n, and a program's own \r\n becomes \r\r\n there.
        raw = raw.rstrip(b"\r")
        out.append(ContainerLogLine(stream, pending.nanos, bytes(raw).decode("utf-8", "replace")))


def _nanos(text: bytes) -> int:
    try:
        return parse_timestamp_nanos(text.decode("ascii"))
    except ValueError:
        return 0


def _strip_timestamp(payload: bytes) -> tuple[int, bytes]:
    match = _TIMESTAMP.match(payload[:_TIMESTAMP_MAX])
    if match is None:
        return 0, payload
    return _nanos(match.group()[:-1]), payload[match.end() :]


def parse_all(data: bytes, *, tty: bool, max_line_bytes: int = 65536) -> list[ContainerLogLine]:
    """A whole (non-follow) response at once."""
    parser = LogParser(tty=tty, max_line_bytes=max_line_bytes)
    return parser.feed(data) + parser.flush()


# --- delivery bookkeeping ----------------------------------------------------------------


class FollowCursor:
    """Where a stream got to, so that re-opening it with `since` repeats nothing.

    The engine writes stdout and stderr lines to its log in arrival order, but each
    line's timestamp is taken when it was read, so timestamps are not monotonic across
    the two streams. The cursor therefore keeps the *largest* timestamp delivered and
    the lines at it. Re-opened with `since` = that timestamp (inclusive), the engine
    returns only those lines again (dropped once each) and newer ones (kept).
    """

    __slots__ = ("_at_max", "_floor", "_replay", "nanos")

    def __init__(self) -> None:
        self.nanos: int | None = None
        self._at_max: Counter[tuple[int, str, str]] = Counter()
        self._floor: int | None = None
        self._replay: Counter[tuple[int, str, str]] = Counter()

    def admit(self, line: ContainerLogLine) -> bool:
        """True when `line` was not delivered before; records it."""
        if line.nanos and self._floor is not None:
            if line.nanos < self._floor:
                return False
            if line.nanos == self._floor and self._replay[line.key] > 0:
                self._replay[line.key] -= 1
                return False
        if line.nanos:
            if self.nanos is None or line.nanos > self.nanos:
                self.nanos = line.nanos
                self._at_max = Counter()
            if line.nanos == self.nanos:
                self._at_max[line.key] += 1
        return True

    def begin_replay(self) -> None:
        """The stream is being re-opened with `since_param()`."""
        self._floor = self.nanos
        self._replay = Counter(self._at_max)

    def since_param(self) -> str | None:
        return None if self.nanos is None else time_param(self.nanos)


class HandoverFilter:
    """Joins a late subscriber's history (a separate non-follow request) to the shared
    live stream it was attached to before that request was made.

    Live lines already in the history are dropped (exact match on timestamp, stream and
    text). Lines older than the history's window are the shared stream still replaying
    an earlier subscriber's backlog: dropped too. Once a live line is clearly past the
    history (a second after its newest line) the filter has nothing left to do.

    The history is given whole or line by line (`note`, before any `admit`). Only the
    newest `max_keys` lines are remembered: the live stream can repeat only the history's
    newest lines, those it delivered after the subscriber joined (held, at most the
    send-queue bound) and those it had not reached yet when the history ended.
    """

    GRACE_NANOS = 1_000_000_000

    __slots__ = ("_keys", "_max_keys", "_newest", "_oldest", "_order", "_since", "done")

    def __init__(self, history: Iterable[ContainerLogLine] = (), since_nanos: int | None = None,
                 *, max_keys: int | None = None) -> None:
        self._keys: Counter[tuple[int, str, str]] = Counter()
        self._order: deque[tuple[int, str, str]] | None = None if max_keys is None else deque()
        self._max_keys = max_keys
        self._oldest: int | None = None
        self._newest: int | None = None
        self._since = since_nanos
        self.done = since_nanos is None
        for line in history:
            self.note(line)

    def note(self, line: ContainerLogLine) -> None:
        """One more history line, in order."""
        if not line.nanos:
            return  # never matched: a line without a timestamp is always admitted
        key = line.key
        self._keys[key] += 1
        order = self._order
        if order is not None:
            order.append(key)
            if self._max_keys is not None and len(order) > self._max_keys:
                old = order.popleft()
                self._keys[old] -= 1
                if self._keys[old] <= 0:
                    del self._keys[old]
        nanos = line.nanos
        self._oldest = nanos if self._oldest is None else min(self._oldest, nanos)
        self._newest = nanos if self._newest is None else max(self._newest, nanos)
        self.done = False

    @property
    def _floor(self) -> int | None:
        floors = [n for n in (self._oldest, self._since) if n is not None]
        return max(floors) if floors else None

    def admit(self, line: ContainerLogLine) -> bool:
        if self.done or not line.nanos:
            return True
        self._order = None  # the history is complete
        if self._keys[line.key] > 0:
            self._keys[line.key] -= 1
            return False
        floor = self._floor
        if floor is not None and line.nanos < floor:
            return False
        limit = self._newest if self._newest is not None else floor
        if limit is not None and line.nanos > limit + self.GRACE_NANOS:
            self.done = True
            self._keys.clear()
        return True


class Reorder:
    """A history's lines back in time order, as they are read, within a bounded window.

    The engine logs stdout and stderr in arrival order, each line stamped when read, so
    timestamps are not monotonic across the two streams (by far less than a second). A
    line is released once a line `window_nanos` newer was read, or when more than
    `max_lines` wait; `flush` releases the rest. Equal timestamps keep their order."""

    __slots__ = ("_heap", "_newest", "_seq", "max_lines", "window_nanos")

    def __init__(self, window_nanos: int = 1_000_000_000, max_lines: int = 4096) -> None:
        self.window_nanos = window_nanos
        self.max_lines = max_lines
        self._heap: list[tuple[int, int, ContainerLogLine]] = []
        self._seq = 0
        self._newest = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, lines: Iterable[ContainerLogLine]) -> list[ContainerLogLine]:
        """Take `lines`; answer those now in order."""
        heap = self._heap
        for line in lines:
            heapq.heappush(heap, (line.nanos, self._seq, line))
            self._seq += 1
            self._newest = max(self._newest, line.nanos)
        out: list[ContainerLogLine] = []
        horizon = self._newest - self.window_nanos
        while heap and (len(heap) > self.max_lines or heap[0][0] < horizon):
            out.append(heapq.heappop(heap)[2])
        return out

    def flush(self) -> list[ContainerLogLine]:
        heap = self._heap
        out = [heapq.heappop(heap)[2] for _ in range(len(heap))]
        return out
