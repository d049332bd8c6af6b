"""One timer for every connection's clock (`Connection.tick` / `next_deadline`).

A connection's deadlines (auth timeout, heartbeat) are far apart and need no sub-tick
precision, so each connection sits in the slot of a shared wheel that its next deadline
rounds up to (`resolution` seconds); one loop `TimerHandle` is armed for the earliest
non-empty slot. No timer, task or context object per connection.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from typing import Protocol

from openpanel_ws.outbound import OP_PING, control_frame

__all__ = [
    "PING_FRAME",
    "Timed",
    "TimerWheel",
]

# A ping frame (docs/protocol.md, "Heartbeat"): built once, the same bytes for everyone.
PING_FRAME = control_frame(OP_PING)


class Timed(Protocol):
    """What sits in the wheel: one connection (`endpoint.ServerConnection`)."""

    slot: int  # the wheel's slot, -1 when not in the wheel (the wheel sets it)

    def next_deadline(self) -> float: ...

    def fire(self, now: float) -> bool:
        """The deadline came: True while the entry still needs its clock."""
        ...


class TimerWheel:
    """The slots and their heap; `fire_due(now)` is plain code, the loop timer is armed
    for the earliest non-empty slot."""

    __slots__ = ("_armed", "_handle", "_heap", "_slots", "monotonic", "resolution")

    def __init__(self, resolution: float = 0.1, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.resolution = resolution
        self.monotonic = monotonic
        self._slots: dict[int, dict[Timed, None]] = {}
        self._heap: list[int] = []  # slot numbers that have (or had) clocks
        self._armed = -1  # the slot the loop timer is armed for
        self._handle: asyncio.TimerHandle | None = None

    def add(self, clock: Timed, min_slot: int = 0) -> None:
        """(Re)schedule `clock` at its next deadline."""
        self.remove(clock)
        slot = max(min_slot, math.ceil(clock.next_deadline() / self.resolution))
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = {}
            heapq.heappush(self._heap, slot)
        members[clock] = None
        clock.slot = slot
        if self._handle is None or slot < self._armed:
            self._arm(slot)

    def remove(self, clock: Timed) -> None:
        members = self._slots.get(clock.slot)
        if members is not None:
            members.pop(clock, None)
        clock.slot = -1

    def __len__(self) -> int:
        return sum(len(m) for m in self._slots.values())

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, slot * self.resolution - self.monotonic())
        self._armed = slot
        self._handle = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.fire_due(self.monotonic())

    def fire_due(self, now: float) -> None:
        """Fire every entry whose slot is due at `now`, re-add those that ask, re-arm."""
        due_slot = math.floor(now / self.resolution)
        heap = self._heap
        while heap and heap[0] <= due_slot:
            slot = heapq.heappop(heap)
            members = self._slots.pop(slot, None)
            for clock in members or ():
                clock.slot = -1
                if clock.fire(now):
                    self.add(clock, due_slot + 1)  # never a slot being fired (float rounding)
        while heap and not self._slots.get(heap[0]):
            self._slots.pop(heapq.heappop(heap), None)  # emptied by remove()
        if heap and (self._handle is None or heap[0] < self._armed):
            self._arm(heap[0])

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
