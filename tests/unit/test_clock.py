"""The shared timer wheel that drives every connection's `tick` (no timer per connection)."""

import asyncio
import time
from typing import Any

from openpanel_ws.clock import ConnectionClock, TimerWheel
from openpanel_ws.connection import Send, State


class FakeConn:
    """`next_deadline` / `tick` like `Connection`: a ping every `interval`, `rounds` times."""

    def __init__(self, name: str, first: float, interval: float, rounds: int, fired: list[Any]) -> None:
        self.name, self.deadline, self.interval = name, first, interval
        self.rounds, self.fired = rounds, fired
        self.state = State.OPEN

    def next_deadline(self) -> float:
        return self.deadline

    def tick(self, now: float) -> list[Any]:
        if now < self.deadline:
            return []
        self.fired.append((self.name, now - self.deadline))
        self.rounds -= 1
        if self.rounds == 0:
            self.state = State.CLOSED
        self.deadline = now + self.interval
        return [Send({"type": "ping"})]


class FakeSession:
    closed = False

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> bool:
        self.sent.append(message)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = True


async def test_deadlines_fire_in_order_at_most_one_slot_late_and_rearm() -> None:
    wheel = TimerWheel(resolution=0.02)
    fired: list[Any] = []
    now = time.monotonic()
    sessions = []
    for name, first in (("b", 0.10), ("a", 0.05), ("c", 0.15)):
        session = FakeSession()
        sessions.append(session)
        wheel.add(ConnectionClock(FakeConn(name, now + first, 0.1, 2, fired), session))  # type: ignore[arg-type]
    for _ in range(500):  # until every clock fired twice (no timing assertion)
        if len(fired) == 6:
            break
        await asyncio.sleep(0.01)
    assert [n for n, _ in fired[:3]] == ["a", "b", "c"]  # due slots fire in order
    assert sorted(n for n, _ in fired) == ["a", "a", "b", "b", "c", "c"]
    assert all(late >= 0 for _, late in fired)  # never before the deadline
    assert all(len(s.sent) == 2 for s in sessions)
    assert len(wheel) == 0  # closed connections left the wheel
    wheel.stop()


async def test_a_removed_clock_never_fires() -> None:
    wheel = TimerWheel(resolution=0.01)
    fired: list[Any] = []
    now = time.monotonic()
    keep = ConnectionClock(FakeConn("keep", now + 0.05, 1.0, 1, fired), FakeSession())  # type: ignore[arg-type]
    gone = ConnectionClock(FakeConn("gone", now + 0.03, 1.0, 1, fired), FakeSession())  # type: ignore[arg-type]
    wheel.add(keep)
    wheel.add(gone)
    wheel.remove(gone)
    for _ in range(500):
        if fired:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert [n for n, _ in fired] == ["keep"]  # "gone" was due first
    wheel.stop()
