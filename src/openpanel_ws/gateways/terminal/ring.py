"""A live terminal's output ring: what a resume replays (plain synchronous code, no I/O).

The rules are those of docs/protocol.md "Terminal sessions":

- `seq` counts the UTF-8 bytes of every `terminal_output.data` of a session, in the
  order they were produced (all streams together). A message's `seq` is the offset of
  the END of its data, so a client that stores the `seq` of the last message it
  processed can send it back as `lastSeq` and gets exactly what follows.
- The ring keeps the newest output messages up to a byte budget; what falls out of it
  is gone (a resume then reports where its replay starts).
- Detached, a terminal reads at most `room_after(detached_at)` more bytes: output
  produced since the client went away never falls out of the ring, and once the ring
  is full of it the shell is not read (it blocks on its pty or pipe) until a client
  attaches again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MERGE_BELOW",
    "OutputPiece",
    "OutputRing",
    "Replay",
    "utf8_len",
]

# Adjacent output pieces of one stream are merged in the ring up to this size.
MERGE_BELOW: Final = 4096


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

    def room_after(self, mark: int) -> int:
        """Bytes that may still be appended without losing anything after `mark` (a
        `seq`; for a detached terminal, where the ring was when its client went away)."""
        return max(0, self.capacity - (self.seq - mark))

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
