"""Terminal sessions that outlive a connection: output ring, caps, ownership.

Plain synchronous code (no I/O), unit-tested with function calls. The rules are those
of docs/protocol.md "Terminal sessions":

- `seq` counts the UTF-8 bytes of every `terminal_output.data` of a session, in the
  order they were produced (all streams together). A message's `seq` is the offset of
  the END of its data, so a client that stores the `seq` of the last message it
  processed can send it back as `lastSeq` and gets exactly what follows.
- The ring keeps the newest output messages up to a byte budget; what falls out of it
  is gone (a resume then reports where its replay starts).
- Live sessions (attached or detached) count against a per-user and a per-gateway cap;
  a slot is reserved before the exec exists, so concurrent opens cannot overshoot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = [
    "MERGE_BELOW",
    "UNKNOWN_SESSION",
    "OutputPiece",
    "OutputRing",
    "Replay",
    "SessionRegistry",
    "gateway_cap_message",
    "per_user_cap_message",
    "utf8_len",
]

# Adjacent output pieces of one stream are merged in the ring up to this size.
MERGE_BELOW: Final = 4096

# Client-facing `terminal_error` texts of this module's rules.
UNKNOWN_SESSION: Final = "Terminal session not found or expired"


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class OutputPiece:
    """One `terminal_output` as produced: its text, stream (None with a TTY) and the
    `seq` of its end."""

    text: str
    stream: str | None
    end: int
    size: int  # UTF-8 bytes of `text`

    @property
    def start(self) -> int:
        return self.end - self.size


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume sends: `start` is the `seq` its first byte has (greater than the
    client's lastSeq when output fell out of the ring meanwhile)."""

    start: int
    pieces: tuple[OutputPiece, ...]


class OutputRing:
    """The newest output pieces within `capacity` bytes (the last piece always stays)."""

    __slots__ = ("_pieces", "capacity", "held", "seq")

    def __init__(self, capacity: int, pieces: Iterable[OutputPiece] = (), seq: int = 0) -> None:
        self.capacity = capacity
        self._pieces: deque[OutputPiece] = deque(pieces)
        self.held = sum(p.size for p in self._pieces)  # bytes currently in the ring
        self.seq = seq  # end of everything produced so far

    def append(self, text: str, stream: str | None = None) -> OutputPiece:
        size = utf8_len(text)
        self.seq += size
        piece = OutputPiece(text, stream, self.seq, size)
        if self.capacity > 0:
            last = self._pieces[-1] if self._pieces else None
            if last is not None and last.stream == stream and last.size + size <= MERGE_BELOW:
                # Small reads (keystroke echoes) share one piece: memory stays close to
                # the byte budget; a lastSeq inside a piece is cut exactly on replay.
                self._pieces[-1] = OutputPiece(last.text + text, stream, self.seq,
                                               last.size + size)
            else:
                self._pieces.append(piece)
            self.held += size
            while self.held > self.capacity and len(self._pieces) > 1:
                self.held -= self._pieces.popleft().size
        return piece

    @classmethod
    def restore(cls, capacity: int, pieces: list[tuple[str, str | None, int]], seq: int) -> OutputRing:
        """A ring from `pieces()` (a reload hands the ring on)."""
        return cls(capacity, (OutputPiece(text, stream, end, utf8_len(text))
                              for text, stream, end in pieces), seq)

    def pieces(self) -> list[tuple[str, str | None, int]]:
        return [(p.text, p.stream, p.end) for p in self._pieces]

    @property
    def first(self) -> int:
        """The `seq` of the oldest byte still held."""
        return self._pieces[0].start if self._pieces else self.seq

    def valid_last_seq(self, last_seq: int) -> bool:
        return 0 <= last_seq <= self.seq

    def replay(self, last_seq: int | None) -> Replay:
        """Everything after `last_seq` that is still held (all of it for None).

        A `last_seq` inside a piece (not a value this server sent) cuts that piece at
        the byte and drops an incomplete leading character.
        """
        if last_seq is None or last_seq < self.first:
            return Replay(self.first, tuple(self._pieces))
        out: list[OutputPiece] = []
        for piece in self._pieces:
            if piece.end <= last_seq:
                continue
            if piece.start < last_seq:
                raw = piece.text.encode("utf-8", "surrogatepass")[last_seq - piece.start:]
                text = raw.decode("utf-8", "ignore")
                piece = OutputPiece(text, piece.stream, piece.end, utf8_len(text))
            out.append(piece)
        return Replay(last_seq, tuple(out))


# --- caps and ownership ---------------------------------------------------------------


def per_user_cap_message(cap: int) -> str:
    return (f"Too many terminals: at most {cap} live terminal sessions per user, detached "
            "ones included; close one first")


def gateway_cap_message(cap: int) -> str:
    return f"Too many terminals on this server: at most {cap}; try again later"


T = TypeVar("T")


class SessionRegistry(Generic[T]):
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
