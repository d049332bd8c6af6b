"""`pump`, the one loop that feeds engine stream chunks to a parser, and `JsonLines`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from openpanel_ws.engine.client import EngineUnavailable
from openpanel_ws.engine.logs import ContainerLogLine, LogParser, parse_all
from openpanel_ws.engine.streams import JsonLines, pump

FIXTURES = Path(__file__).parent.parent / "fixtures" / "containers"
TS = "2026-11-27T00:07:54.913594017Z"


class Chunks:
    """An engine stream stand-in: yields `data` in `step`-byte chunks, then ends or fails."""

    def __init__(self, data: bytes, step: int, fail: bool = False) -> None:
        self.data, self.step, self.fail = data, step, fail
        self.read = 0
        self.closed = False

    async def gen(self) -> AsyncGenerator[bytes, None]:
        try:
            for i in range(0, len(self.data), self.step):
                self.read += 1
                yield self.data[i:i + self.step]
            if self.fail:
                raise EngineUnavailable("stream interrupted: test")
        finally:
            self.closed = True


def tty_bytes() -> bytes:
    return f"{TS} one\r\n{TS} two\r\n{TS} no newline at the end".encode()


async def test_pump_feeds_every_chunk_and_flushes_at_the_end() -> None:
    data = tty_bytes()
    for step in (1, 5, len(data)):
        batches: list[list[ContainerLogLine]] = []
        chunks = Chunks(data, step)
        await pump(chunks.gen(), LogParser(tty=True), batches.append)
        lines = [line for batch in batches for line in batch]
        assert lines == parse_all(data, tty=True)
        assert [line.data for line in lines] == ["one", "two", "no newline at the end"]
        assert all(batches) and chunks.closed


async def test_pump_flushes_what_it_holds_when_the_stream_fails() -> None:
    lines: list[ContainerLogLine] = []
    chunks = Chunks(tty_bytes(), 7, fail=True)
    with pytest.raises(EngineUnavailable):
        await pump(chunks.gen(), LogParser(tty=True), lines.extend)
    assert [line.data for line in lines] == ["one", "two", "no newline at the end"]
    assert chunks.closed


async def test_a_sink_returning_true_stops_reading_and_closes_the_stream() -> None:
    data = b"".join(b'{"n": %d}\n' % i for i in range(100))
    seen: list[dict[str, object]] = []

    def sink(items: list[dict[str, object]]) -> bool:
        seen.extend(items)
        return len(seen) >= 3

    chunks = Chunks(data, 9)
    await pump(chunks.gen(), JsonLines(), sink)
    assert [item["n"] for item in seen] == [0, 1, 2]
    assert chunks.closed and chunks.read < 10


@pytest.mark.parametrize(("name", "tty"), [
    ("logs_mux_timestamps.bin", False), ("logs_mux_long_line.bin", False),
    ("logs_tty_timestamps.bin", True), ("logs_tty_long_line.bin", True)])
async def test_recorded_streams_through_pump_match_the_whole_parse(name: str, tty: bool) -> None:
    data = (FIXTURES / name).read_bytes()
    lines: list[ContainerLogLine] = []
    await pump(Chunks(data, 1000).gen(), LogParser(tty=tty), lines.extend)
    assert lines and lines == parse_all(data, tty=tty)


def test_json_lines_skips_what_is_not_an_object() -> None:
    parser = JsonLines(max_line=64)
    out = parser.feed(b'{"a": 1}\n\n[1, 2]\nnot json\n{"b"')
    out += parser.feed(b': 2}\n' + b"x" * 100 + b"\n")
    assert out == [{"a": 1}, {"b": 2}]
    assert parser.malformed == 2 and parser.dropped == 1
    assert parser.feed(b'{"c": 3') == [] and parser.flush() == []  # unterminated: dropped
