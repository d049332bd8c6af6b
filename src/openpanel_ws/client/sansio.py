"""The client's decisions as plain synchronous code: no sockets, no event loop.

Backoff schedule, close-code policy, the mirror of the server's token bucket with
keystroke coalescing, and the log cursor that makes a resumed subscription gap-free
and duplicate-free. The asyncio edge (`openpanel_ws.client.aio`) only moves bytes.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from openpanel_ws.protocol import CloseCode, Message, parse_timestamp_nanos, rfc3339_from_nanos
from openpanel_ws.ratelimit import RateLimit, TokenBucket

# The specification's per-gateway limits; the server's defaults (DECISIONS.md).
SERVER_RATE_LIMITS: Final[dict[str, RateLimit]] = {
    "containers": RateLimit(10, 1.0),
    "terminal": RateLimit(10, 1.0),
    "logs": RateLimit(100, 60.0),
    "metrics": RateLimit(100, 60.0),
}


# --- token refresh --------------------------------------------------------------------

# Re-authenticate this long before the token's `exp`: the server ends a connection whose
# token expired (docs/protocol.md "Hostile clients"); the JS client uses the same margin.
REFRESH_MARGIN: Final[float] = 30.0


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (unix seconds), read without verifying it: the client only
    schedules its refresh from it; the server verifies. None when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


def refresh_delay(exp: float, now: float, margin: float = REFRESH_MARGIN) -> float:
    """Seconds to wait before asking for a fresh token; at least 1 s, so a source that
    keeps returning a token about to expire is not polled in a loop."""
    return max(exp - margin - now, 1.0)


# --- reconnect ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).

    `max_attempts` None means retry forever (the default, as the specification's
    "Reconexão" section recommends reconnecting; its example's limit of 5 is a choice).
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int | None = None


class Backoff:
    def __init__(self, policy: BackoffPolicy | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy or BackoffPolicy()
        self._rand = rand
        self.attempts = 0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None once attempts are exhausted."""
        p = self.policy
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return None
        ceiling = min(p.cap, p.base * float(1 << min(self.attempts, 62)))
        self.attempts += 1
        return float(self._rand()) * ceiling

    def reset(self) -> None:
        """After a successful (authenticated) connection, start over from `base`."""
        self.attempts = 0


# Closes after which reconnecting cannot help: a bad token, a policy refusal, or a
# message of ours the server cannot take. Everything else (1001 shutdown, 1006 lost,
# 1013 slow consumer, 4002 heartbeat, 1011 ...) is transient.
FINAL_CLOSE_CODES: Final = frozenset({
    CloseCode.AUTH_FAILED, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG,
})


def should_reconnect(close_code: int | None) -> bool:
    return close_code not in FINAL_CLOSE_CODES


# --- outbound pacing ----------------------------------------------------------------


def mirror_limit(limit: RateLimit, margin: float = 0.8) -> RateLimit:
    """A slightly stricter copy of the server's limit: network jitter can bunch frames
    that left us evenly spaced, so we keep one token spare and refill a bit slower."""
    count = max(1, limit.count - 1)
    return RateLimit(count, count / (limit.rate * margin))


@dataclass(frozen=True, slots=True)
class Input:
    """Terminal keystrokes: consecutive ones may travel together in one `input`."""

    data: str


Outgoing = Message | Input


class Outbox:
    """Frames waiting for a token of the client-side bucket, in order.

    While tokens are plentiful every frame leaves at once (keystrokes are not delayed);
    when the bucket runs dry, consecutive `Input`s queued meanwhile are merged into one
    `input` message: a held key or a paste is coalesced, never dropped or rejected.
    """

    # Raw characters per merged input; JSON escaping can grow control characters 6x
    # and the server's default frame limit is 64 KiB.
    MAX_INPUT_CHARS: Final = 8192

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._limit = mirror_limit(limit)
        self._bucket = TokenBucket(self._limit, now)
        self._queue: deque[Outgoing] = deque()
        # Frames the server never counts (heartbeat `pong`): no token, ahead of the rest.
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

    def clear(self) -> None:
        self._queue.clear()
        self._free.clear()


def split_input(data: str, size: int = Outbox.MAX_INPUT_CHARS) -> list[Input]:
    """A paste longer than one frame may carry, as several inputs."""
    return [Input(data[i:i + size]) for i in range(0, len(data), size)] or []


# --- log resume ---------------------------------------------------------------------


class LogCursor:
    """Where a logs subscription stands, so a resumed one shows no gap and no duplicate.

    The engine's `since` is inclusive and a server may round it, so a resume asks for
    a little before the last line seen and drops, client-side, what was already shown:
    every line older than the last timestamp, and at that very timestamp the lines
    already delivered (counted, since two identical lines may share a timestamp).
    """

    RESUME_OVERLAP_NS: Final = 1_000_000_000

    def __init__(self) -> None:
        self.last_ns: int | None = None
        self.last_text: str | None = None
        self._at_last: Counter[tuple[str, str]] = Counter()
        self._replay: Counter[tuple[str, str]] = Counter()
        self.dropped = 0

    def accept(self, timestamp: str, stream: str, data: str) -> bool:
        """True when the line is new and should be shown."""
        try:
            ns = parse_timestamp_nanos(timestamp)
        except ValueError:
            return True  # no usable time: cannot be a replay we asked for
        key = (stream, data)
        if self.last_ns is not None:
            if ns < self.last_ns:
                self.dropped += 1
                return False
            if ns == self.last_ns and self._replay[key] > 0:
                self._replay[key] -= 1
                self.dropped += 1
                return False
        if ns != self.last_ns:
            self.last_ns = ns
            self._at_last.clear()
            self._replay.clear()
        self.last_text = timestamp
        self._at_last[key] += 1
        return True

    def resume(self) -> dict[str, Any]:
        """Fields of `subscribe_logs` for a resumed subscription ({} before any line)."""
        if self.last_ns is None:
            return {}
        self._replay = Counter(self._at_last)
        since = max(0, self.last_ns - self.RESUME_OVERLAP_NS)
        # tail "all": everything since then, not only the last 100 lines of it.
        return {"since": rfc3339_from_nanos(since), "tail": "all"}
