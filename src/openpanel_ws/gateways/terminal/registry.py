"""Live terminals by session id and by owner, with caps (plain synchronous code, no I/O).

The rules are those of docs/protocol.md "Terminal sessions": live terminals (attached
or detached) count against a per-user and a per-gateway cap; a slot is reserved before
the exec exists, so concurrent opens cannot overshoot. Another user's session id looks
exactly like an unknown one.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

__all__ = [
    "UNKNOWN_SESSION",
    "TerminalRegistry",
    "gateway_cap_message",
    "per_user_cap_message",
]

# Client-facing `terminal_error` texts of this module's rules.
UNKNOWN_SESSION: Final = "Terminal session not found or expired"


def per_user_cap_message(cap: int) -> str:
    return (f"Too many terminals: at most {cap} live terminal sessions per user, detached "
            "ones included; close one first")


def gateway_cap_message(cap: int) -> str:
    return f"Too many terminals on this server: at most {cap}; try again later"


T = TypeVar("T")


class TerminalRegistry(Generic[T]):
    """Live terminal sessions by id and by owner (`sub`), with caps.

    `reserve` takes a slot for a session id before its exec is created; `add` fills
    it, `remove` frees it (also an unfilled one, so a failed open gives it back).
    """

    def __init__(self, max_per_user: int, max_total: int) -> None:
        self.max_per_user = max_per_user
        self.max_total = max_total
        self._slots: dict[str, tuple[str, T | None]] = {}  # session id -> owner, session
        self._count: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def count(self, owner: str) -> int:
        return self._count.get(owner, 0)

    def reserve(self, session_id: str, owner: str, *, force: bool = False) -> str | None:
        """None when a slot was taken; else the refusal text. `force`: take it anyway
        (a session that already exists, handed on by a reload)."""
        if not force and len(self._slots) >= self.max_total:
            return gateway_cap_message(self.max_total)
        if not force and self._count.get(owner, 0) >= self.max_per_user:
            return per_user_cap_message(self.max_per_user)
        self._count[owner] = self._count.get(owner, 0) + 1
        self._slots[session_id] = (owner, None)
        return None

    def add(self, session_id: str, item: T) -> None:
        """Fill the slot taken with `reserve`."""
        owner, _ = self._slots[session_id]
        self._slots[session_id] = (owner, item)

    def remove(self, session_id: str) -> None:
        entry = self._slots.pop(session_id, None)
        if entry is None:
            return
        left = self._count.get(entry[0], 0) - 1
        if left > 0:
            self._count[entry[0]] = left
        else:
            self._count.pop(entry[0], None)

    def lookup(self, session_id: str, owner: str) -> T | None:
        """The session if `owner` owns it: another user's id looks exactly like an
        unknown one."""
        entry = self._slots.get(session_id)
        if entry is None or entry[0] != owner:
            return None
        return entry[1]

    def items(self) -> list[T]:
        return [item for _owner, item in self._slots.values() if item is not None]
