"""What `openpanel-ws recordings play` lets through to the operator's terminal
(docs/security.md "Recordings").

A recording holds whatever a container printed. Replayed unchanged, an OSC 52 sequence
would write the operator's clipboard and OSC 0/1/2 would set the window's title (a
lure, or on some terminals a string that is echoed back as input). `OscFilter` drops
those operating system commands and passes everything else (colours, cursor moves,
OSC 8 links, ...) unchanged. Sans-I/O: `feed` text in, text out; a sequence cut across
two events is held until its end arrives.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DROPPED", "OscFilter"]

# Operating system commands dropped: icon and title (0), icon (1), title (2), clipboard (52).
DROPPED: Final = frozenset({"0", "1", "2", "52"})

_ESC, _BEL, _C1_OSC, _C1_ST = "\x1b", "\x07", "\x9d", "\x9c"
_ABORT = frozenset({"\x18", "\x1a"})  # CAN and SUB end a sequence unfinished (as xterm)
_MAX_NUMBER = 8  # an OSC number longer than this is no OSC we drop


class OscFilter:
    """Strips the OSC sequences of `DROPPED` from a stream of text."""

    def __init__(self, dropped: frozenset[str] = DROPPED) -> None:
        self.dropped = dropped
        self._held = ""  # an OSC whose number is not complete yet
        self._dropping = False  # inside a dropped OSC, until its terminator
        self._escape = False  # the last character of a dropped OSC was ESC

    def feed(self, text: str) -> str:
        out: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            if self._dropping:
                i = self._skip(text, i)
                continue
            if self._held:
                i = self._number(text, i, out)
                continue
            start = text.find(_ESC, i)
            c1 = text.find(_C1_OSC, i)
            if c1 >= 0 and (start < 0 or c1 < start):
                out.append(text[i:c1])
                self._held = _C1_OSC
                i = c1 + 1
                continue
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            if start + 1 >= n:
                self._held = _ESC  # ESC at the end: is the next character "]"?
                break
            if text[start + 1] == "]":
                self._held = _ESC + "]"
                i = start + 2
            else:
                out.append(_ESC)
                i = start + 1
        return "".join(out)

    def flush(self) -> str:
        """What is held at the end of the stream (an unfinished sequence we pass)."""
        held, self._held = self._held, ""
        return held

    def _number(self, text: str, i: int, out: list[str]) -> int:
        """Collect the OSC number after `_held`; decide to drop or pass it."""
        if self._held == _ESC:
            if text[i] != "]":
                out.append(_ESC)
                self._held = ""
                return i
            self._held = _ESC + "]"
            return i + 1
        opener = 1 if self._held.startswith(_C1_OSC) else 2
        while i < len(text) and text[i].isdigit() and len(self._held) - opener < _MAX_NUMBER:
            self._held += text[i]
            i += 1
        if i == len(text):
            return i  # more digits may follow in the next event
        if self._held[opener:] in self.dropped:
            self._held = ""
            self._dropping = True
            return i
        out.append(self._held)
        self._held = ""
        return i

    def _skip(self, text: str, i: int) -> int:
        """Inside a dropped OSC: skip to after its terminator (BEL, ESC \\, ST)."""
        while i < len(text):
            ch = text[i]
            if self._escape:
                self._escape = False
                self._dropping = False
                if ch == "\\":
                    return i + 1
                self._held = _ESC  # ESC + other: the OSC ends there, and ESC starts anew
                return i
            if ch == _ESC:
                self._escape = True
            elif ch in (_BEL, _C1_ST) or ch in _ABORT:
                self._dropping = False
                return i + 1
            i += 1
        return i
