"""What one engine event says, as plain code (no I/O): its time, action, actor
attributes and identity (`event_key`), and the bounded `Deduper` of those keys.

`events` (the shared stream, `EventsHub`) and the /ws/logs fan-out use these; they
import without aiohttp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Deduper",
    "EngineEvent",
    "event_action",
    "event_attributes",
    "event_key",
    "event_nanos",
]

EngineEvent = dict[str, Any]

_SEEN_KEYS = 4096


def event_nanos(event: EngineEvent) -> int:
    nanos = event.get("timeNano")
    if isinstance(nanos, int) and not isinstance(nanos, bool):
        return nanos
    seconds = event.get("time")
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        return seconds * 1_000_000_000
    return 0


def event_attributes(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The actor's `Attributes` (name, image, labels, ...); empty when missing or malformed."""
    actor = event.get("Actor")
    if isinstance(actor, Mapping):
        attrs = actor.get("Attributes")
        if isinstance(attrs, Mapping):
            return attrs
    return {}


def event_action(event: Mapping[str, Any]) -> str:
    """`Action` (`status` on old engines); "" when missing or not text."""
    action = event.get("Action") or event.get("status")
    return action if isinstance(action, str) else ""


def event_key(event: EngineEvent) -> tuple[Any, ...]:
    actor = event.get("Actor") or {}
    return (
        event_nanos(event),
        event.get("Type"),
        event.get("Action") or event.get("status"),
        actor.get("ID") if isinstance(actor, dict) else None,
        event.get("id"),
    )


class Deduper:
    """Remembers the keys of the last `size` events; memory stays bounded.

    `forget_before(nanos)` drops the keys of events stamped before `nanos` (a key's first
    item is its time): the hub calls it with its resume point, before which no replay
    reaches, so a quiet hub holds a few seconds of keys rather than the last `size`."""

    __slots__ = ("_order", "_seen")

    def __init__(self, size: int = _SEEN_KEYS) -> None:
        self._order: deque[tuple[Any, ...]] = deque(maxlen=size)
        self._seen: set[tuple[Any, ...]] = set()

    def first_time(self, key: tuple[Any, ...]) -> bool:
        if key in self._seen:
            return False
        if len(self._order) == self._order.maxlen:
            self._seen.discard(self._order[0])
        self._order.append(key)
        self._seen.add(key)
        return True

    def forget_before(self, nanos: int) -> None:
        order, seen = self._order, self._seen
        while order and order[0][0] < nanos:
            seen.discard(order.popleft())

    def clear(self) -> None:
        self._order.clear()
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)
