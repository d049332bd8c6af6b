"""The terminal gateway's plain synchronous core: output decoding and the state of
one terminal session (counters, idle clock, the single close decision). No I/O, so
every rule is unit-tested with function calls. The wire format is in `messages`."""

from __future__ import annotations

import codecs
import secrets
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Final

from openpanel_ws.engine.logs import STDERR, STDOUT, split_frames
from openpanel_ws.gateways.terminal.messages import output_message
from openpanel_ws.protocol import Message

__all__ = [
    "START_FAILURE_PREFIX",
    "ExecOutput",
    "OutputDecoder",
    "Phase",
    "TerminalState",
    "new_session_id",
]

# How the engine's output starts when the runtime could not start the program (as
# engine.exec.START_FAILURE_PREFIX; not imported, this module stays free of I/O code).
START_FAILURE_PREFIX: Final = b"OCI runtime exec failed"



class OutputDecoder:
    """Incremental UTF-8: a character split between two reads is emitted whole with the
    second read; invalid bytes become U+FFFD, never an error."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> str:
        return self._decoder.decode(chunk, final=False)

    def flush(self) -> str:
        """At EOF: an incomplete trailing sequence becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)

    def pending(self) -> bytes:
        """The start of a character still waiting for its other bytes."""
        buffered: bytes = self._decoder.getstate()[0]
        return buffered


class ExecOutput:
    """Exec output bytes -> `terminal_output` messages (terminal extensions).

    With a TTY the bytes are one text stream (the specification's message). Without one
    the engine multiplexes stdout and stderr in 8-byte-header frames (the same framing
    as container logs, `engine.logs.split_frames`); each stream is decoded on its own and
    its messages carry `stream`.
    """

    __slots__ = ("_buf", "_decoders", "_first", "tty")

    def __init__(self, *, tty: bool) -> None:
        self.tty = tty
        self._buf = bytearray()
        self._decoders: dict[str, OutputDecoder] = {}
        self._first = True

    def _decoder(self, stream: str) -> OutputDecoder:
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = OutputDecoder()
        return decoder

    def feed(self, chunk: bytes) -> list[Message]:
        if self.tty:
            text = self._decoder(STDOUT).feed(chunk)
            return [output_message(text)] if text else []
        self._buf += chunk
        frames, used = split_frames(self._buf)
        del self._buf[:used]
        out: list[Message] = []
        for stream, payload in frames:
            if self._first:
                self._first = False
                # A program that could not start: the engine writes the runtime's error
                # as stdout; it is an error message (docker exec prints it on stderr).
                if payload.startswith(START_FAILURE_PREFIX):
                    stream = STDERR
            text = self._decoder(stream).feed(payload)
            if text:
                out.append(output_message(text, stream))
        return out

    def pending_bytes(self) -> bytes:
        """Bytes read but not yet turned into text (a reload hands them on; without a
        TTY a character split across frames is not carried over)."""
        if self.tty:
            decoder = self._decoders.get(STDOUT)
            return decoder.pending() if decoder is not None else b""
        return bytes(self._buf)

    def flush(self) -> list[Message]:
        out: list[Message] = []
        if self._buf:  # a truncated last frame: pass on what there is
            text = self._decoder(STDOUT).feed(bytes(self._buf[8:]))
            self._buf.clear()
            if text:
                out.append(output_message(text, None if self.tty else STDOUT))
        for stream, decoder in self._decoders.items():
            tail = decoder.flush()
            if tail:
                out.append(output_message(tail, None if self.tty else stream))
        return out


class Phase(Enum):
    OPEN = auto()
    CLOSING = auto()
    CLOSED = auto()


def new_session_id() -> str:
    return f"session-{secrets.token_hex(8)}"


@dataclass
class TerminalState:
    """Counters, idle clock and the single close decision of one terminal session."""

    session_id: str
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
