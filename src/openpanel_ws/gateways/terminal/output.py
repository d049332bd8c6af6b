"""A live terminal's output decoding, as plain synchronous code (no I/O): exec output
bytes -> `terminal_output` messages, characters kept whole across reads. The wire
format is in `messages`."""

from __future__ import annotations

import codecs
from typing import Final

from openpanel_ws.engine.logs import STDERR, STDOUT, split_frames
from openpanel_ws.gateways.terminal.messages import output_message
from openpanel_ws.protocol import Message

__all__ = [
    "START_FAILURE_PREFIX",
    "ExecOutput",
    "OutputDecoder",
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
