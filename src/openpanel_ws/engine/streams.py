"""Engine stream bodies -> parsed items: the one loop that feeds chunks to a parser.

Every engine stream (container logs, stats, events) is read the same way: each chunk
goes to a sans-I/O parser (`feed(chunk) -> items`), what it returns goes to a sink, and
whatever the parser still holds when the stream ends, normally or not, is flushed to
the sink too. `pump` is that loop; the parsers here and in `engine.logs` /
`engine.stats` are plain synchronous code, unit-tested on recorded engine bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final, Protocol, TypeVar

import orjson

__all__ = ["MAX_JSON_LINE", "JsonLines", "LineSplitter", "StreamParser", "pump", "time_param"]

T = TypeVar("T")

# One engine event or stats sample is a JSON line of a few hundred bytes to a few KiB;
# a line past this is dropped.
MAX_JSON_LINE: Final = 1 << 20


class StreamParser(Protocol[T]):
    """Bytes in (split anywhere), complete items out."""

    def feed(self, chunk: bytes) -> list[T]: ...

    def flush(self) -> list[T]: ...


# What `pump` hands the items to; a true result stops reading (the stream is closed).
Sink = Callable[[list[T]], bool | None]


async def pump(chunks: AsyncGenerator[bytes, None], parser: StreamParser[T], sink: Sink[T]) -> None:
    """Feed every chunk to `parser` and every non-empty batch of items to `sink`, until
    the stream ends or `sink` returns true; then flush the parser into `sink` (also when
    the stream failed: a partial line still counts) and close the stream.

    Errors of the stream (`EngineError` from `DockerEngine.stream_chunks`) propagate.
    """
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                items = parser.feed(chunk)
                if items and sink(items):
                    return
    finally:
        rest = parser.flush()
        if rest:
            sink(rest)


class LineSplitter:
    """Bytes of a newline-delimited stream -> complete lines, with a bounded buffer."""

    __slots__ = ("_buf", "_max", "_skipping", "dropped")

    def __init__(self, max_line: int = MAX_JSON_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._skipping = False  # inside a line that was too long: drop up to its newline
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                self._buf += data[start:end]
                if len(self._buf) <= self._max:
                    lines.append(bytes(self._buf))
                else:
                    self.dropped += 1
            self._buf.clear()
            start = end + 1
        if not self._skipping:
            self._buf += data[start:]
            if len(self._buf) > self._max:
                self.dropped += 1
                self._buf.clear()
                self._skipping = True
        return lines

    def flush(self) -> list[bytes]:
        """An unterminated last line is incomplete JSON for the engine's streams: dropped."""
        self._buf.clear()
        self._skipping = False
        return []


class JsonLines:
    """Newline-delimited JSON objects (events, stats samples) -> dicts. Blank lines,
    lines that are not JSON objects and over-long lines are skipped and counted."""

    __slots__ = ("_lines", "malformed")

    def __init__(self, max_line: int = MAX_JSON_LINE) -> None:
        self._lines = LineSplitter(max_line)
        self.malformed = 0

    @property
    def dropped(self) -> int:
        return self._lines.dropped

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self._lines.feed(chunk):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.malformed += 1
                continue
            if isinstance(value, dict):
                out.append(value)
            else:
                self.malformed += 1
        return out

    def flush(self) -> list[dict[str, Any]]:
        self._lines.flush()
        return []

def time_param(nanos: int) -> str:
    """The engine's `since`/`until` syntax for an exact instant: `<seconds>.<nanoseconds>`."""
    seconds, fraction = divmod(max(0, nanos), 1_000_000_000)
    return f"{seconds}.{fraction:09d}"
