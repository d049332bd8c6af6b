"""A subscriber's history: plan, reorder, handover bound and fetch turns, with plain calls."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator

import orjson
import pytest

from fakes import Sink
from openpanel_ws.engine.client import EngineUnavailable
from openpanel_ws.engine.logs import ContainerLogLine, HandoverFilter, LogParser, Reorder
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.containers.history import (
    HANDOVER_WINDOW,
    HISTORY_TRUNCATED,
    HistoryLimits,
    HistoryPlan,
    HistorySender,
    Turns,
)
from openpanel_ws.gateways.containers.upstream import ContainersState
from openpanel_ws.outbound import ClientWriter, WriteScheduler
from openpanel_ws.protocol import parse_timestamp_nanos
from openpanel_ws.sendqueue import QueueLimits


def line(nanos: int, data: str = "", stream: str = "stdout") -> ContainerLogLine:
    return ContainerLogLine(stream, nanos, data or f"line {nanos}")


@pytest.mark.parametrize(
    ("tail", "plan"),
    [
        (0, HistoryPlan(HANDOVER_WINDOW, 0, False)),
        (5, HistoryPlan(HANDOVER_WINDOW, 5, False)),
        (100, HistoryPlan(100, None, False)),
        (5000, HistoryPlan(5000, None, False)),
        (20_000, HistoryPlan(10_000, None, True)),
        ("all", HistoryPlan(10_000, None, True)),
    ],
)
def test_the_plan_caps_tail_at_the_line_cap(tail: int | str, plan: HistoryPlan) -> None:
    assert HistoryPlan.of(tail, 10_000) == plan


def test_a_cap_below_the_handover_window_shows_the_last_lines_that_fit() -> None:
    assert HistoryPlan.of("all", 20) == HistoryPlan(HANDOVER_WINDOW, 20, True)


def test_reorder_gives_the_same_order_as_sorting_the_whole_history() -> None:
    rng = random.Random(7)
    # stdout and stderr interleaved with a skew of a few ms, equal stamps included.
    lines = []
    for i in range(20_000):
        nanos = i * 1_000_000 + (rng.randrange(5_000_000) if i % 3 == 0 else 0)
        lines.append(line(nanos, f"{i}", "stderr" if i % 3 == 0 else "stdout"))
    lines += [line(lines[-1].nanos, "same stamp a"), line(lines[-1].nanos, "same stamp b")]
    reorder = Reorder(window_nanos=100_000_000, max_lines=100_000)
    out: list[ContainerLogLine] = []
    for start in range(0, len(lines), 997):
        out += reorder.push(lines[start:start + 997])
        assert len(reorder) < 200  # a bounded window, not the whole history
    out += reorder.flush()
    assert out == sorted(lines, key=lambda x: x.nanos)


def test_reorder_holds_at_most_max_lines() -> None:
    reorder = Reorder(window_nanos=10**18, max_lines=10)
    assert reorder.push([line(i) for i in range(15)]) == [line(i) for i in range(5)]
    assert len(reorder) == 10
    assert reorder.flush() == [line(i) for i in range(5, 15)]


def test_the_handover_remembers_only_the_newest_lines_of_a_long_history() -> None:
    handover = HandoverFilter((), None, max_keys=10)
    for i in range(1, 1001):
        handover.note(line(i))
    assert len(handover._keys) == 10
    assert not handover.admit(line(1000))  # the newest are still recognised
    assert handover.admit(line(1000 + HandoverFilter.GRACE_NANOS + 1))
    assert handover.done


def test_the_handover_line_by_line_is_the_handover_of_the_whole_history() -> None:
    history = [line(i) for i in range(1, 50)]
    live = [line(i) for i in range(30, 80)]
    whole = HandoverFilter(history, 10)
    noted = HandoverFilter((), 10, max_keys=1000)
    for x in history:
        noted.note(x)
    assert [x for x in live if whole.admit(x)] == [x for x in live if noted.admit(x)]
    assert HandoverFilter((), None).done and not HandoverFilter((), 5).done


async def settle() -> None:
    """Let every ready task run (a released turn wakes the next waiter)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_turns_cap_per_user_and_in_all_and_keep_the_order() -> None:
    turns = Turns(per_user=1, total=2)
    started: list[str] = []
    gates = {name: asyncio.Event() for name in ("a1", "a2", "b1", "c1", "b2")}

    async def fetch(name: str) -> None:
        async with turns.turn(name[0]):
            started.append(name)
            await gates[name].wait()

    tasks = {}
    for name in gates:
        tasks[name] = asyncio.create_task(fetch(name))
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert started == ["a1", "b1"]  # a2 waits for a1 (per user), c1 for a slot
    assert turns.waiting == 3
    gates["a1"].set()
    await settle()
    assert started == ["a1", "b1", "a2"]  # the first waiter that fits goes first
    tasks["c1"].cancel()  # a waiter that leaves takes no turn
    gates["b1"].set()
    await settle()
    assert started == ["a1", "b1", "a2", "b2"]
    for name in ("a2", "b2"):
        gates[name].set()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert turns.waiting == 0 and turns._held == 0 and not turns._active


# --- the sender, with a fake socket and a scripted engine stream ------------------------


def sender_for(plan: HistoryPlan, limits: HistoryLimits) -> tuple[HistorySender, Sink]:
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, WriteScheduler(QueueLimits(10_000, 10_000_000), 1.0))
    sink.peer = writer
    session: Session[ContainersState] = Session("c1", writer)
    sender = HistorySender(session, "web", "local", plan, limits, floor=None, max_keys=1000,
                           subscribed=lambda: True)
    return sender, sink


def engine_bytes(numbers: range) -> bytes:
    """A TTY container's log: one timestamped line per number, a millisecond apart."""
    return b"".join(f"2026-11-27T10:00:00.{n:06d}000Z {n}\r\n".encode() for n in numbers)


async def chunks(data: bytes, size: int = 333, fail: bool = False) -> AsyncGenerator[bytes, None]:
    for start in range(0, len(data), size):
        yield data[start:start + size]
    if fail:
        raise EngineUnavailable("the stream broke off")


async def sent(sink: Sink, sender: HistorySender) -> list[dict[str, object]]:
    sender.session.close(1000, "")
    await asyncio.wait_for(sender.session.writer.wait_closed(), 2)
    return [orjson.loads(frame) for frame in sink.frames]


LIMITS = HistoryLimits(max_lines=1000, max_bytes=1 << 20, fetches_per_user=2, fetches=16)


async def test_the_sender_sends_every_line_in_order_and_notes_them_for_the_handover() -> None:
    sender, sink = sender_for(HistoryPlan.of(500, 1000), LIMITS)
    await sender.run(chunks(engine_bytes(range(1, 501))), LogParser(tty=True))
    sender.finish()
    messages = await sent(sink, sender)
    assert [m["data"] for m in messages] == [str(n) for n in range(1, 501)]
    newest = parse_timestamp_nanos("2026-11-27T10:00:00.000500000Z")
    assert not sender.handover.admit(line(newest, "500"))  # in the history: not repeated
    assert sender.handover.admit(line(newest + 1, "501"))


async def test_the_byte_cap_cuts_the_history_and_says_so() -> None:
    sender, sink = sender_for(HistoryPlan.of(500, 1000), HistoryLimits(1000, 2000, 2, 16))
    await sender.run(chunks(engine_bytes(range(1, 501))), LogParser(tty=True))
    sender.finish()
    *logs, marker = await sent(sink, sender)
    assert 0 < len(logs) < 500 and sum(len(orjson.dumps(m)) for m in logs) <= 2000
    assert [m["data"] for m in logs] == [str(n) for n in range(1, len(logs) + 1)]
    assert marker["type"] == "info" and marker["code"] == HISTORY_TRUNCATED
    assert (marker["reason"], marker["limit"], marker["sent"]) == ("bytes", 2000, len(logs))


async def test_a_short_tail_shows_the_last_lines_and_the_line_cap_says_so() -> None:
    sender, sink = sender_for(HistoryPlan.of("all", 20), HistoryLimits(20, 1 << 20, 2, 16))
    await sender.run(chunks(engine_bytes(range(1, 101))), LogParser(tty=True))
    sender.finish()
    *logs, marker = await sent(sink, sender)
    assert [m["data"] for m in logs] == [str(n) for n in range(81, 101)]
    assert (marker["reason"], marker["limit"], marker["sent"]) == ("lines", 20, 20)


async def test_what_was_read_before_the_stream_broke_off_is_sent() -> None:
    sender, sink = sender_for(HistoryPlan.of(500, 1000), LIMITS)
    with pytest.raises(EngineUnavailable):
        await sender.run(chunks(engine_bytes(range(1, 301)), fail=True), LogParser(tty=True))
    assert [m["data"] for m in await sent(sink, sender)] == [str(n) for n in range(1, 301)]
