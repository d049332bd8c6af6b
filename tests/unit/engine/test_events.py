"""EventsHub's synchronous parts: line splitting, dedupe across a replay, resume point."""

from pathlib import Path
from typing import Any

import orjson

from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.eventdata import Deduper, event_nanos
from openpanel_ws.engine.events import RESUME_MARGIN_NS, EventsHub
from openpanel_ws.engine.streams import LineSplitter, time_param

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "logs" / "engine-events.jsonl"
LINES = [line for line in FIXTURE.read_bytes().splitlines() if line]


def test_line_splitter_rejoins_chunks_split_anywhere() -> None:
    stream = b"\n".join(LINES) + b"\n"
    for size in (1, 7, 300, len(stream)):
        splitter = LineSplitter()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += splitter.feed(stream[i:i + size])
        assert out == LINES


def test_line_splitter_drops_an_oversized_line_and_recovers() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"x" * 8) == []
    assert splitter.feed(b"y" * 8) == []  # over the bound: the buffer is dropped
    assert splitter.feed(b"zz\nok\n") == [b"ok"]
    assert splitter.dropped == 1


def test_deduper_is_bounded() -> None:
    d = Deduper(size=3)
    assert all(d.first_time((i,)) for i in range(5))
    assert len(d) == 3
    assert not d.first_time((4,))
    assert d.first_time((0,))  # forgotten


async def test_dedupe_keeps_only_keys_a_resumed_stream_can_replay() -> None:
    """Keys older than the resume point (last event - RESUME_MARGIN_NS) are never needed
    again: a hub that has seen hours of events holds seconds of keys, not thousands
    (the soak's growth, tests/soak). The overlap of a resume is still dropped."""
    hub = EventsHub(DockerEngine())
    got: list[dict[str, Any]] = []
    hub._listeners.append(got.append)
    second = 1_000_000_000
    lines = [orjson.dumps({"Type": "container", "Action": "start", "Actor": {"ID": f"c{i}"},
                           "id": f"c{i}", "timeNano": i * second // 4}) for i in range(20_000)]
    for line in lines:
        hub.handle_line(line)
    assert len(hub._dedupe) <= RESUME_MARGIN_NS * 4 // second + 1
    for line in lines[-8:]:  # what a resume at last - margin replays
        hub.handle_line(line)
    assert len(got) == len(lines)
    assert hub.duplicates_dropped == 8


async def test_replay_after_reconnect_delivers_each_event_once_even_out_of_order() -> None:
    hub = EventsHub(DockerEngine())
    got: list[dict[str, Any]] = []
    hub._listeners.append(got.append)  # a listener without starting the stream task
    first, rest = LINES[:40], LINES[40:]
    for line in first:
        hub.handle_line(line)
    # dockerd can emit two events out of time order: both must be delivered.
    swapped = [rest[1], rest[0], *rest[2:]]
    # A resumed stream replays from before the last event: the overlap is dropped.
    for line in first[-10:] + swapped:
        hub.handle_line(line)
    assert len(got) == len(LINES)
    assert hub.duplicates_dropped == 10
    assert hub.last_nanos == max(event_nanos(orjson.loads(line)) for line in LINES)


async def test_resume_point_and_since_syntax() -> None:
    hub = EventsHub(DockerEngine())
    hub._start_nanos = 1_000
    assert hub.resume_since() == 1_000
    hub.last_nanos = 5 * 10**9
    assert hub.resume_since() == 5 * 10**9 - RESUME_MARGIN_NS
    assert time_param(1795737972035269178) == "1795737972.035269178"
    assert time_param(7) == "0.000000007"


async def test_malformed_lines_are_ignored() -> None:
    hub = EventsHub(DockerEngine())
    got: list[dict[str, Any]] = []
    hub._listeners.append(got.append)
    for line in (b"{", b"[1]", b"null", b"\xff"):
        hub.handle_line(line)
    assert got == []
