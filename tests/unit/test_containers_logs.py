"""Log stream parsing and delivery bookkeeping on recorded engine payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from openpanel_ws.engine.logs import (
    ContainerLogLine,
    FollowCursor,
    HandoverFilter,
    LogParser,
    parse_all,
)
from openpanel_ws.engine.streams import time_param
from openpanel_ws.protocol import parse_timestamp_nanos

FIXTURES = Path(__file__).parent.parent / "fixtures" / "containers"
TS = "2026-11-27T00:07:54.913594017Z"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def feed_in_pieces(
    data: bytes, step: int, *, tty: bool, max_line_bytes: int = 65536
) -> list[ContainerLogLine]:
    parser = LogParser(tty=tty, max_line_bytes=max_line_bytes)
    out: list[ContainerLogLine] = []
    for i in range(0, len(data), step):
        out += parser.feed(data[i : i + step])
    return out + parser.flush()


@pytest.mark.parametrize("step", [1, 3, 8, 9, 64, 100000])
def test_multiplexed_frames_keep_their_stream_and_timestamp(step: int) -> None:
    lines = feed_in_pieces(fixture("logs_mux_timestamps.bin"), step, tty=False)
    assert [(line.stream, line.data) for line in lines] == (
        [("stdout", f"out {i}") for i in range(1, 6)] + [("stderr", f"err {i}") for i in range(1, 6)])
    assert lines[0].timestamp == TS
    assert lines[0].nanos == parse_timestamp_nanos(TS)


@pytest.mark.parametrize("step", [1, 5, 31, 100000])
def test_tty_raw_stream_strips_cr_and_is_stdout(step: int) -> None:
    lines = feed_in_pieces(fixture("logs_tty_timestamps.bin"), step, tty=True)
    assert [(line.stream, line.data) for line in lines] == [
        ("stdout", "hello"), ("stdout", "\ufffd\ufffdbad"), ("stdout", "done")]
    assert lines[0].timestamp == "2026-11-27T00:11:05.300430073Z"


LONG_LINES = [("logs_mux_long_line.bin", False), ("logs_tty_long_line.bin", True)]


@pytest.mark.parametrize(("name", "tty"), LONG_LINES)
@pytest.mark.parametrize("step", [1, 4096, 1000000])
def test_engine_partial_messages_are_joined(name: str, tty: bool, step: int) -> None:
    lines = feed_in_pieces(fixture(name), step, tty=tty)
    assert [len(line.data) for line in lines] == [40000, 9]
    assert len(set(lines[0].data)) == 1 and lines[1].data == "tail-line"


@pytest.mark.parametrize(("name", "tty"), LONG_LINES)
def test_long_lines_are_split_at_the_bound_with_the_line_timestamp(name: str, tty: bool) -> None:
    lines = feed_in_pieces(fixture(name), 997, tty=tty, max_line_bytes=16000)
    assert [len(line.data) for line in lines] == [16000, 16000, 8000, 9]
    assert len({line.nanos for line in lines[:3]}) == 1


def test_split_never_breaks_a_utf8_character() -> None:
    text = "é" * 10  # 2 bytes each
    data = frame(1, f"{TS} {text}\n".encode())
    lines = parse_all(data, tty=False, max_line_bytes=5)
    assert "".join(line.data for line in lines) == text
    assert all("\ufffd" not in line.data for line in lines)


def test_partial_line_is_held_until_newline_and_flushed_at_end() -> None:
    parser = LogParser(tty=False)
    assert parser.feed(frame(1, f"{TS} half".encode())) == []
    assert parser.feed(frame(2, f"{TS} err\n".encode()))[0].data == "err"
    assert [line.data for line in parser.feed(frame(1, f"{TS} -done\n".encode()))] == ["half-done"]
    assert parser.feed(frame(1, f"{TS} no newline".encode())) == []
    assert [line.data for line in parser.flush()] == ["no newline"]
    tty = LogParser(tty=True)
    assert tty.feed(f"{TS} prompt> ".encode()) == []
    assert [line.data for line in tty.flush()] == ["prompt> "]


def test_invalid_utf8_is_replaced_never_fatal() -> None:
    data = frame(1, TS.encode() + b" caf\xc3 \xff\xfe ok\n")
    [line] = parse_all(data, tty=False)
    assert line.data == "caf\ufffd \ufffd\ufffd ok"
    [line] = parse_all(TS.encode() + b" \x80abc\r\n", tty=True)
    assert line.data == "\ufffdabc"


def test_garbage_input_does_not_raise() -> None:
    for junk in (b"\x00" * 7, b"\x05\x00\x00\x00\x00\x00\x00\x03abc", b"no timestamp here\n", b"\n\n"):
        parse_all(junk, tty=False)
        parse_all(junk, tty=True)
    [line] = parse_all(b"plain line\n", tty=True)
    assert (line.data, line.nanos) == ("plain line", 0)


def line(nanos: int, data: str, stream: str = "stdout") -> ContainerLogLine:
    return ContainerLogLine(stream, nanos, data)


def test_cursor_resume_drops_the_replayed_lines_only() -> None:
    cursor = FollowCursor()
    # stdout and stderr arrive out of timestamp order: nothing is dropped while live.
    delivered = [line(10, "a"), line(30, "b"), line(20, "c", "stderr"), line(30, "d", "stderr")]
    assert all(cursor.admit(x) for x in delivered)
    assert cursor.since_param() == time_param(30)
    cursor.begin_replay()
    # The engine's `since` is inclusive: it sends the lines at 30 again, then new ones.
    replay = [line(30, "b"), line(30, "d", "stderr"), line(31, "e"), line(30, "f", "stderr")]
    assert [cursor.admit(x) for x in replay] == [False, False, True, True]
    assert cursor.admit(line(25, "late")) is False  # older than the resume point


def test_cursor_without_lines_has_no_since() -> None:
    assert FollowCursor().since_param() is None
    assert time_param(1_795_738_074_000_000_001) == "1795738074.000000001"


def test_handover_drops_history_and_older_backlog_keeps_new() -> None:
    history = [line(100, "h1"), line(110, "h2"), line(105, "h3", "stderr")]
    handover = HandoverFilter(history)
    assert handover.admit(line(50, "old backlog of the shared stream")) is False
    assert handover.admit(line(110, "h2")) is False  # in the history already
    assert handover.admit(line(105, "h3", "stderr")) is False
    assert handover.admit(line(108, "new but out of order", "stderr")) is True
    assert handover.admit(line(111, "new")) is True
    assert not handover.done
    assert handover.admit(line(110 + 2_000_000_000, "much later")) is True
    assert handover.done


def test_handover_with_empty_history() -> None:
    assert HandoverFilter([]).done
    since = HandoverFilter([], since_nanos=1000)
    assert since.admit(line(999, "before since")) is False
    assert since.admit(line(1000, "at since")) is True
