"""A live terminal's lifecycle, as plain synchronous code (no I/O): its identity,
byte counters, idle clock and the single close decision (user, exit, idle and
disconnect can race; the first close wins). Unit-tested with function calls."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum, auto

__all__ = [
    "Phase",
    "TerminalLifecycle",
    "new_session_id",
]


class Phase(Enum):
    OPEN = auto()
    CLOSING = auto()
    CLOSED = auto()


def new_session_id() -> str:
    return f"session-{secrets.token_hex(8)}"


@dataclass
class TerminalLifecycle:
    """One live terminal's identity (its host and container), counters, idle clock and single close decision
    (open -> closing -> closed)."""

    session_id: str
    host: str  # the Docker host's id (docs/protocol.md "Hosts")
    container_ref: str
    container_id: str
    container_name: str
    shell: str
    started_at: float  # wall clock, for the audit log
    idle_timeout: float
    now: float  # monotonic clock at open
    phase: Phase = Phase.OPEN
    bytes_in: int = 0
    bytes_out: int = 0
    close_reason: str | None = None
    exit_code: int | None = None
    ended_at: float | None = None
    last_activity: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_activity = self.now

    @property
    def is_open(self) -> bool:
        return self.phase is Phase.OPEN

    def record_input(self, size: int, now: float) -> None:
        self.bytes_in += size
        self.last_activity = now

    def record_output(self, size: int) -> None:
        self.bytes_out += size

    def touch(self, now: float) -> None:
        """Client activity other than input (resize) also keeps the session alive."""
        self.last_activity = now

    def idle_deadline(self) -> float:
        return self.last_activity + self.idle_timeout

    def is_idle(self, now: float) -> bool:
        return now >= self.idle_deadline()

    def begin_close(self, reason: str) -> bool:
        """The first close wins (user, exit, idle, disconnect can race); False after."""
        if self.phase is not Phase.OPEN:
            return False
        self.phase = Phase.CLOSING
        self.close_reason = reason
        return True

    def finish(self, exit_code: int | None, ended_at: float) -> None:
        self.phase = Phase.CLOSED
        self.exit_code = exit_code
        self.ended_at = ended_at
