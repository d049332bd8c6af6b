"""The send-queue policy of one client, sans-I/O (see docs/protocol.md, "Outbound path").

Ordered frames (replies, logs, events, terminal output) keep their order and are bounded:
past `QueueLimits` the client is a slow consumer and `push` returns an `Overflow`, which
the caller turns into a 1013 close. Latest-value frames (stats, metrics) are conflated by
key: a newer frame replaces an unsent one in place, so a slow client gets the newest
sample, never a growing queue. `discard` drops an unsent latest-value frame and its
place. `pop_all` hands every queued frame over, in order, for one write.

No asyncio, no sockets: every rule is tested with plain calls (tests/unit/test_sendqueue.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Overflow",
    "QueueLimits",
    "SendQueue",
]


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """The slow-consumer bound, shared by every queue of a server."""

    max_frames: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Overflow:
    """`push` refused a frame: the ordered backlog would pass the bound (it was dropped)."""

    frames: int
    bytes: int


class SendQueue:
    __slots__ = ("_bytes", "_latest", "entries", "limits")

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        # bytes: an ordered frame; str: a key into `_latest` (its place in the order).
        # Read-only outside this class (the writer tests it for emptiness per flush).
        self.entries: list[bytes | str] = []
        self._latest: dict[str, bytes] | None = None  # created on first use (memory)
        self._bytes = 0  # bytes of the ordered frames queued

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def backlog(self) -> float:
        """How full the queue is: 0.0 empty, 1.0 at the slow-consumer bound."""
        limits = self.limits
        return max(len(self.entries) / limits.max_frames, self._bytes / limits.max_bytes)

    def push(self, frame: bytes) -> Overflow | None:
        """Queue an ordered frame; an `Overflow` (the queue is cleared) past the bound.
        The byte bound counts payload bytes (a WebSocket frame's 2/4/10-byte header is
        left out, from the frame's length alone)."""
        entries = self.entries
        n = len(frame)
        size = self._bytes + n - (2 if n < 128 else 4 if n < 65540 else 10)
        limits = self.limits
        if len(entries) >= limits.max_frames or size > limits.max_bytes:
            overflow = Overflow(len(entries), self._bytes)
            self.clear()
            return overflow
        entries.append(frame)
        self._bytes = size
        return None

    def push_latest(self, key: str, frame: bytes) -> None:
        """Queue a latest-value frame; an unsent frame of the same key is replaced in place."""
        latest = self._latest
        if latest is None:
            latest = self._latest = {}
        if key not in latest:
            self.entries.append(key)
        latest[key] = frame

    def discard(self, key: str) -> None:
        """Drop an unsent latest-value frame and its place: a later frame of the same key
        queues behind what is queued meanwhile (e.g. unsubscribe, then subscribe again)."""
        if self._latest is not None and self._latest.pop(key, None) is not None:
            self.entries.remove(key)

    def pop_all(self) -> list[bytes]:
        """Every queued frame, in order; the queue is left empty."""
        entries = self.entries
        self.entries = []
        self._bytes = 0
        latest = self._latest
        if not latest:
            return entries  # type: ignore[return-value]  # only bytes without latest keys
        self._latest = None
        return [latest[e] if isinstance(e, str) else e for e in entries]

    def clear(self) -> None:
        self.entries = []
        self._latest = None
        self._bytes = 0
