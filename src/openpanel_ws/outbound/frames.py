"""The one WebSocket frame encoder (RFC 6455 section 5.2), for `src`, bench and tests.

A server frame is unmasked, so header + payload is the same for every recipient: it is
built once (`text_frame`) and the same `bytes` go to every client. A client frame is
masked with a key of its own (`masked_frame`: the bench's load generators and the tests'
raw clients). Every frame is a whole message (FIN set), without RSV bits (no compression).
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "close_frame",
    "control_frame",
    "frame",
    "mask",
    "masked_frame",
    "text_frame",
    "text_frame_once",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def frame(opcode: int, payload: bytes) -> bytes:
    """A complete unmasked frame (the server side)."""
    first = 0x80 | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _LEN2(first, 126, n) + payload
    return _LEN3(first, 127, n) + payload


def mask(key: bytes, data: bytes) -> bytes:
    """`data` XOR the 4-byte `key` repeated (masking and unmasking are the same)."""
    n = len(data)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def masked_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """A complete masked frame, as RFC 6455 requires from clients; `key`: 4 random
    bytes unless given (a test that needs a known key passes one)."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = _LEN2(first, 0x80 | 126, n)
    else:
        header = _LEN3(first, 0x80 | 127, n)
    return header + key + mask(key, payload)


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked TEXT frame around an encoded JSON payload."""
    return frame(OP_TEXT, payload)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping/pong frame (control frames carry at most 125 bytes)."""
    return frame(opcode, payload[:125])


def close_frame(code: int, reason: str = "") -> bytes:
    """A Close frame: the code, then at most 123 bytes of UTF-8 reason."""
    return frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


_last_payload: bytes = b""
_last_frame: bytes = text_frame(b"")


def text_frame_once(payload: bytes) -> bytes:
    """`text_frame`, built once for a payload handed to many clients in a row: a fan-out
    loop passes the same `bytes` object to every subscriber, so the last one is kept (the
    reference keeps the object alive, so identity means the same content)."""
    global _last_payload, _last_frame
    if payload is not _last_payload:
        _last_frame = text_frame(payload)
        _last_payload = payload
    return _last_frame
