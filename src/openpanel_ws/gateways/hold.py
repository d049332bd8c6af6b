"""The one gateway-side slow-consumer hold (sans-I/O): live items held back for one
client while its history is sent first, bounded like the send queue.

Two gateways hold live output for a client that asked for history: /ws/logs holds
live event frames while a `since` replay is fetched (`logs.fanout`), /ws/containers
holds a container's live log lines while a late subscriber's history is fetched
(`containers.logs`). Both hold in a `Hold` with the server's send-queue bound
(`QueueLimits` from the send-queue settings): a client whose hold passes it is a slow
consumer and is closed exactly as one whose send queue overflows, 1013 with
`protocol.SLOW_CONSUMER_REASON` (docs/protocol.md "Outbound path").
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from openpanel_ws import protocol
from openpanel_ws.gateways.base import Session
from openpanel_ws.sendqueue import Overflow, QueueLimits

__all__ = ["Hold", "cut_off"]

T = TypeVar("T")


class Hold(Generic[T]):
    """Ordered items held for one client, at most `limits` of them (frames and bytes).

    `push` past the bound drops everything held and answers an `Overflow` (once: later
    items are dropped, the client is being closed); `release` hands the items over."""

    __slots__ = ("_bytes", "_items", "limits", "overflowed")

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self._items: list[T] = []
        self._bytes = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T, size: int) -> Overflow | None:
        """Hold `item` of `size` bytes; the first push past the bound answers an
        `Overflow` (the same rule as `SendQueue.push`)."""
        if self.overflowed:
            return None
        items = self._items
        total = self._bytes + size
        limits = self.limits
        if len(items) >= limits.max_frames or total > limits.max_bytes:
            overflow = Overflow(len(items), self._bytes)
            self.overflowed = True
            self._items, self._bytes = [], 0
            return overflow
        items.append(item)
        self._bytes = total
        return None

    def release(self) -> list[T]:
        """Everything held, in order; the hold is left empty."""
        items, self._items, self._bytes = self._items, [], 0
        return items


def cut_off(session: Session[Any]) -> None:
    """Close a slow consumer: 1013 with the one slow-consumer reason."""
    session.close(protocol.CloseCode.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER_REASON)
