"""The shared timer wheel that drives every connection's `tick` (no timer per connection):
driven by hand with `fire_due(now)` on a fake clock, no sleeps."""

from typing import Any

from openpanel_ws.clock import TimerWheel


class Entry:
    """Like `ServerConnection` in the wheel: a deadline every `interval`, `rounds` times."""

    def __init__(self, name: str, first: float, interval: float, rounds: int, fired: list[Any]) -> None:
        self.name, self.deadline, self.interval = name, first, interval
        self.rounds, self.fired = rounds, fired
        self.slot = -1

    def next_deadline(self) -> float:
        return self.deadline

    def fire(self, now: float) -> bool:
        if now < self.deadline:
            return True
        self.fired.append((self.name, now - self.deadline))
        self.rounds -= 1
        self.deadline = now + self.interval
        return self.rounds > 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_deadlines_fire_in_order_at_most_one_slot_late_and_rearm() -> None:
    clock = Clock()
    wheel = TimerWheel(resolution=0.02, monotonic=clock)
    fired: list[Any] = []
    for name, first in (("b", 0.10), ("a", 0.05), ("c", 0.15)):
        wheel.add(Entry(name, clock.now + first, 0.1, 2, fired))
    for _ in range(100):  # 1 s in steps of 10 ms
        clock.now += 0.01
        wheel.fire_due(clock.now)
    assert [n for n, _ in fired[:3]] == ["a", "b", "c"]  # due slots fire in order
    assert sorted(n for n, _ in fired) == ["a", "a", "b", "b", "c", "c"]
    assert all(0 <= late <= 0.02 + 1e-9 for _, late in fired)  # never early, one slot late at most
    assert len(wheel) == 0  # finished entries left the wheel
    wheel.stop()


async def test_a_removed_entry_never_fires() -> None:
    clock = Clock()
    wheel = TimerWheel(resolution=0.01, monotonic=clock)
    fired: list[Any] = []
    keep = Entry("keep", clock.now + 0.05, 1.0, 1, fired)
    gone = Entry("gone", clock.now + 0.03, 1.0, 1, fired)
    wheel.add(keep)
    wheel.add(gone)
    wheel.remove(gone)
    for _ in range(20):
        clock.now += 0.01
        wheel.fire_due(clock.now)
    assert [n for n, _ in fired] == ["keep"]  # "gone" was due first
    wheel.stop()


async def test_the_loop_timer_fires_the_wheel() -> None:
    import asyncio

    wheel = TimerWheel(resolution=0.001)
    fired: list[Any] = []
    loop = asyncio.get_running_loop()
    wheel.add(Entry("x", loop.time() - 1.0, 1.0, 1, fired))  # overdue: fires next turn
    for _ in range(1000):
        if fired:
            break
        await asyncio.sleep(0)
    wheel.stop()
    assert [n for n, _ in fired] == ["x"]
