"""When the client reconnects and re-authenticates: plain rules, no I/O.

The backoff between attempts (the project's one `openpanel_ws.backoff.Backoff`, with
full jitter), the close codes after which reconnecting cannot help, and when a token
is refreshed before its `exp`. `ClientConnection` (`openpanel_ws.client.sansio`)
applies them; docs/protocol.md "Python client" has the rules.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import orjson

from openpanel_ws.backoff import Backoff
from openpanel_ws.protocol import CloseCode

__all__ = [
    "FINAL_CLOSE_CODES",
    "REFRESH_MARGIN",
    "BackoffPolicy",
    "refresh_delay",
    "should_reconnect",
    "token_expiry",
]

# --- reconnect ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).

    `max_attempts` None means retry forever (the default, as the specification's
    "Reconexão" section recommends reconnecting; its example's limit of 5 is a choice).
    `base` and `cap` are positive; a `cap` below `base` makes every ceiling `cap`.
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap > 0):
            raise ValueError("backoff base and cap must be positive")

    def backoff(self, rand: Callable[[], float] = random.random) -> Backoff:
        """The schedule this policy describes (`rand` uniform in [0, 1): the delay is
        ``ceiling * (1 - rand())``, so 0.0 gives the ceiling itself)."""
        return Backoff(min(self.base, self.cap), self.cap, jitter=1.0,
                       max_attempts=self.max_attempts, rand=rand)


# Closes after which reconnecting cannot help: a bad token, a policy refusal, or a
# message of ours the server cannot take. Everything else (1001 shutdown, 1006 lost,
# 1013 slow consumer, 4002 heartbeat, 1011 ...) is transient.
FINAL_CLOSE_CODES: Final = frozenset({
    CloseCode.AUTH_FAILED, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG,
})


def should_reconnect(close_code: int | None) -> bool:
    return close_code not in FINAL_CLOSE_CODES


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
