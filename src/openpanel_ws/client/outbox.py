"""What leaves the client, paced by a mirror of the server's token bucket.

Plain synchronous code with the clock passed in; `ClientConnection` owns one `Outbox`
per authenticated socket and the asyncio shell sends what `pop` hands out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from openpanel_ws.protocol import Message
from openpanel_ws.ratelimit import RateLimit, TokenBucket

__all__ = ["Input", "Outbox", "Outgoing", "mirror_limit", "split_input"]


def mirror_limit(limit: RateLimit, margin: float = 0.8) -> RateLimit:
    """A slightly stricter copy of the server's limit: network jitter can bunch messages
    that left us evenly spaced, so we keep one token spare and refill a bit slower."""
    count = max(1, limit.count - 1)
    return RateLimit(count, count / (limit.rate * margin))


@dataclass(frozen=True, slots=True)
class Input:
    """Terminal keystrokes: consecutive ones may travel together in one `input`."""

    data: str


Outgoing = Message | Input


class Outbox:
    """Messages waiting for a token of the client-side bucket, in order.

    While tokens are plentiful every message leaves at once (keystrokes are not delayed);
    when the bucket runs dry, consecutive `Input`s queued meanwhile are merged into one
    `input` message: a held key or a paste is coalesced, never dropped or rejected.
    """

    # Raw characters per merged input; JSON escaping can grow control characters 6x
    # and the server's default message size limit is 64 KiB.
    MAX_INPUT_CHARS: Final = 8192

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._limit = mirror_limit(limit)
        self._bucket = TokenBucket(self._limit, now)
        self._queue: deque[Outgoing] = deque()
        # Messages the server never counts (heartbeat `pong`): no token, ahead of the rest.
        self._free: deque[Message] = deque()

    def __len__(self) -> int:
        return len(self._queue) + len(self._free)

    def push_free(self, message: Message) -> None:
        self._free.append(message)

    def push(self, item: Outgoing) -> None:
        if isinstance(item, Input) and not item.data:
            return
        self._queue.append(item)

    def pop(self, now: float) -> tuple[Message | None, float]:
        """(message to send now, 0) or (None, seconds to wait; inf when empty)."""
        if self._free:
            return self._free.popleft(), 0.0
        if not self._queue:
            return None, float("inf")
        if not self._bucket.try_take(now):
            # `tokens` was just brought up to date by try_take.
            return None, max(0.001, (1.0 - self._bucket.tokens) / self._limit.rate)
        head = self._queue.popleft()
        if not isinstance(head, Input):
            return head, 0.0
        parts = [head.data]
        size = len(head.data)
        while self._queue and isinstance(self._queue[0], Input):
            nxt = self._queue[0]
            assert isinstance(nxt, Input)
            if size + len(nxt.data) > self.MAX_INPUT_CHARS:
                break
            self._queue.popleft()
            parts.append(nxt.data)
            size += len(nxt.data)
        return {"type": "input", "data": "".join(parts)}, 0.0


def split_input(data: str, size: int = Outbox.MAX_INPUT_CHARS) -> list[Input]:
    """A paste longer than one message may carry, as several inputs."""
    return [Input(data[i:i + size]) for i in range(0, len(data), size)]
