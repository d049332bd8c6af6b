"""The one reconnect backoff: capped exponential delays with a jitter fraction (no I/O).

Attempt n waits ``d * (1 - jitter * r)`` with ``d = min(cap, initial * 2**n)`` and ``r``
uniform in [0, 1) from the injected `rand`:

- ``jitter=0``: exactly ``initial, 2*initial, ...`` up to `cap` (engine streams of a
  container: a fixed, predictable retry);
- ``jitter=0.5``: between half and all of ``d`` (the events stream: replicas and
  gateways that lost one engine together do not retry in step);
- ``jitter=1``: "full jitter", uniform in (0, d] (the client: a fleet of clients of a
  restarted gateway spreads its reconnects).

`max_attempts` bounds the attempts (None: forever); `next_delay` then answers None.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    __slots__ = ("attempts", "cap", "initial", "jitter", "max_attempts", "rand")

    def __init__(self, initial: float, cap: float, jitter: float = 0.0, *,
                 max_attempts: int | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("backoff jitter is a fraction from 0 to 1")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.rand = rand
        self.attempts = 0

    def ceiling(self) -> float:
        """The un-jittered delay of the next attempt."""
        return min(self.cap, self.initial * float(1 << min(self.attempts, 62)))

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None once attempts are exhausted."""
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            return None
        delay = self.ceiling()
        self.attempts += 1
        if self.jitter:
            delay *= 1.0 - self.jitter * float(self.rand())
        return delay

    def reset(self) -> None:
        """After a success: the next attempt waits `initial` again."""
        self.attempts = 0
