"""Token-bucket rate limiting and flood detection, with the clock passed in (no I/O)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

__all__ = [
    "FloodDetector",
    "RateLimit",
    "TokenBucket",
]

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"(?P<count>\d+)\s*/\s*(?P<number>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)")


@dataclass(frozen=True)
class RateLimit:
    """`count` messages per `per_seconds`; the bucket holds `count` tokens."""

    count: int
    per_seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.per_seconds

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """'10/s', '100/min', '5/10s' -> RateLimit. Raises ValueError."""
        match = _RATE_RE.fullmatch(text.strip().lower())
        if not match:
            raise ValueError(f"expected COUNT/UNIT like '10/s' or '100/min', got {text!r}")
        if match["unit"] not in _UNITS:
            raise ValueError(f"unknown time unit {match['unit']!r} in {text!r}")
        count = int(match["count"])
        seconds = float(match["number"] or 1) * _UNITS[match["unit"]]
        if count <= 0 or seconds <= 0:
            raise ValueError(f"rate limit must be positive: {text!r}")
        return cls(count, seconds)

    def __str__(self) -> str:
        per = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.per_seconds, f"{self.per_seconds:g}s")
        return f"{self.count}/{per}"


class TokenBucket:
    """Starts full; refills continuously at `limit.rate` tokens per second."""

    __slots__ = ("_capacity", "_rate", "_tokens", "_updated")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._capacity = float(limit.count)
        self._rate = limit.rate
        self._tokens = self._capacity
        self._updated = now

    def try_take(self, now: float) -> bool:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        return self._tokens


class FloodDetector:
    """True once `threshold` rejections fall within `window` seconds."""

    __slots__ = ("_rejections", "_threshold", "_window")

    def __init__(self, threshold: int, window: float) -> None:
        self._threshold = threshold
        self._window = window
        # Created on the first rejection: an empty deque is ~600 bytes per connection.
        self._rejections: deque[float] | None = None

    def record_rejection(self, now: float) -> bool:
        rejections = self._rejections
        if rejections is None:
            rejections = self._rejections = deque()
        rejections.append(now)
        while rejections and now - rejections[0] > self._window:
            rejections.popleft()
        return len(rejections) >= self._threshold
