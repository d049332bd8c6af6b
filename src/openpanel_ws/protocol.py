"""Protocol types of the OpenPanel WebSocket API 1.3.0: codes, messages, validation.

Plain synchronous code with no I/O: everything here is testable without a socket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, Final

import orjson

from openpanel_ws.ratelimit import RateLimit

__all__ = [
    "API_VERSION",
    "AUTH_REQUIRED_MESSAGE",
    "AUTH_TIMEOUT_MESSAGE",
    "BINARY_FRAME_MESSAGE",
    "DEFAULT_INTERVAL_MS",
    "DEFAULT_RATE_LIMITS",
    "EXPIRED_TOKEN_MESSAGE",
    "FLOODING_REASON",
    "HEARTBEAT_TIMEOUT_REASON",
    "INTERNAL_ERROR_MESSAGE",
    "INVALID_TOKEN_MESSAGE",
    "MAX_INTERVAL_MS",
    "MIN_INTERVAL_MS",
    "RATE_LIMIT_MESSAGE",
    "RELOAD_REASON",
    "SHUTDOWN_REASON",
    "SINCE_MAX_NANOS",
    "SINCE_MIN_NANOS",
    "SLOW_CONSUMER_REASON",
    "SUBJECT_MISMATCH_MESSAGE",
    "TERMINAL_MAX_SIZE",
    "TERMINAL_MIN_SIZE",
    "CloseCode",
    "ErrorCode",
    "Message",
    "ProtocolError",
    "authenticated_message",
    "connected_message",
    "decode",
    "encode",
    "error_message",
    "interval_ms",
    "invalid",
    "optional_int",
    "optional_since",
    "optional_str",
    "parse_since",
    "parse_timestamp",
    "parse_timestamp_nanos",
    "ping_message",
    "pong_message",
    "require_int",
    "require_str",
    "rfc3339",
    "rfc3339_from_nanos",
]

API_VERSION: Final = "1.3.0"

Message = dict[str, Any]


class ErrorCode(StrEnum):
    """The specification's error table plus DOCKER_UNAVAILABLE and INTERNAL_ERROR
    (docs/protocol.md "Error codes")."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_FAILED = "AUTH_FAILED"
    AUTH_TIMEOUT = "AUTH_TIMEOUT"
    RATE_LIMIT = "RATE_LIMIT"
    CONTAINER_NOT_FOUND = "CONTAINER_NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    DOCKER_UNAVAILABLE = "DOCKER_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class CloseCode(IntEnum):
    """The close codes the server sends (docs/protocol.md "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    POLICY_VIOLATION = 1008  # flooding
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012  # reload (SIGHUP): reconnect and resume
    TRY_AGAIN_LATER = 1013  # slow consumer
    AUTH_FAILED = 4001  # auth failed or timed out, token expired
    HEARTBEAT_TIMEOUT = 4002


# Client-facing texts of the shared lifecycle (docs/protocol.md "Error codes").
RATE_LIMIT_MESSAGE: Final = "Rate limit exceeded. Please slow down."
INVALID_TOKEN_MESSAGE: Final = "Invalid token"
EXPIRED_TOKEN_MESSAGE: Final = "Token expired"
AUTH_REQUIRED_MESSAGE: Final = "Authentication required"
AUTH_TIMEOUT_MESSAGE: Final = "Authentication timeout"
SUBJECT_MISMATCH_MESSAGE: Final = "Token subject does not match this connection"
BINARY_FRAME_MESSAGE: Final = "Binary frames are not supported; send JSON text"
INTERNAL_ERROR_MESSAGE: Final = "Internal error"
# Close reasons (docs/protocol.md "Close codes").
HEARTBEAT_TIMEOUT_REASON: Final = "heartbeat timeout"
FLOODING_REASON: Final = "message flooding"
SHUTDOWN_REASON: Final = "server shutdown"
RELOAD_REASON: Final = "server reload"
# The one close reason (with 1013) of every slow-consumer hold: the outbound queue, the
# lines held while a log history is sent, the events held while a replay is sent.
SLOW_CONSUMER_REASON: Final = "slow consumer: send queue overflow"

# The specification's per-gateway limits: the server's defaults, and what the Python
# client mirrors unless told otherwise (docs/protocol.md "Python client").
DEFAULT_RATE_LIMITS: Final[Mapping[str, RateLimit]] = MappingProxyType({
    "containers": RateLimit(10, 1.0),
    "terminal": RateLimit(10, 1.0),
    "logs": RateLimit(100, 60.0),
    "metrics": RateLimit(100, 60.0),
})

# Stats and metrics intervals (docs/protocol.md "Defaults and bounds"), in milliseconds.
DEFAULT_INTERVAL_MS: Final = 2000
MIN_INTERVAL_MS: Final = 500
MAX_INTERVAL_MS: Final = 60000

# Terminal `cols` and `rows` (docs/protocol.md "Defaults and bounds").
TERMINAL_MIN_SIZE: Final = 1
TERMINAL_MAX_SIZE: Final = 1000


class ProtocolError(Exception):
    """A client-facing error: becomes one `error` message; the connection stays open."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.context = dict(context or {})

    def to_message(self) -> Message:
        return error_message(self.code, self.message, field=self.field, **self.context)


def invalid(message: str, field: str | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, message, field=field)


# --- time ---------------------------------------------------------------------------


def rfc3339(epoch_seconds: float | None = None) -> str:
    """RFC 3339 UTC with millisecond precision and a `Z` suffix."""
    if epoch_seconds is None:
        epoch_seconds = time.time()
    dt = datetime.fromtimestamp(epoch_seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def rfc3339_from_nanos(epoch_nanos: int) -> str:
    """RFC 3339 UTC keeping the engine's nanosecond precision."""
    seconds, nanos = divmod(epoch_nanos, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def parse_timestamp(value: str | int | float) -> float:
    """Unix seconds from RFC 3339 text (any fraction length) or a unix-seconds number.

    Raises ValueError when the value is neither.
    """
    if isinstance(value, bool):
        raise ValueError("boolean is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("time out of range")
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    fraction = ""
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        suffix = rest[len(digits) :]
        fraction = digits
        text = head + suffix
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    result = dt.timestamp()
    if fraction:
        result += float("0." + fraction)
    return result


def parse_timestamp_nanos(text: str) -> int:
    """Nanoseconds since the epoch from an engine RFC 3339 timestamp, exactly."""
    body = text.strip()
    if body.endswith(("Z", "z")):
        body = body[:-1] + "+00:00"
    digits = ""
    if "." in body:
        head, _, rest = body.partition(".")
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        body = head + rest[len(digits) :]
    dt = datetime.fromisoformat(body)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    whole = int(dt.timestamp())
    return whole * 1_000_000_000 + int((digits + "000000000")[:9])


# The one `since` rule of the protocol (docs/protocol.md "Defaults and bounds"): RFC 3339 text
# (any fraction length, kept to the nanosecond) or unix seconds (number or numeric text,
# kept exactly as written), from 1970 up to the end of year 9999.
SINCE_MIN_NANOS: Final = 0
SINCE_MAX_NANOS: Final = 253402300800 * 1_000_000_000 - 1  # 9999-12-31T23:59:59.999999999Z
_SINCE_MAX_TEXT: Final = 64
_SINCE_MAX_SECONDS: Final = Decimal(253402300800)


def parse_since(value: Any, field: str = "since") -> int:
    """`since` as nanoseconds since the epoch; raises INVALID_MESSAGE naming `field`."""
    error = invalid(
        f"Field '{field}' must be an RFC 3339 time or unix seconds between 1970 and 9999", field)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise error
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _SINCE_MAX_TEXT:
            raise error
        number: Decimal | None
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = None
        if number is None:
            try:
                nanos = parse_timestamp_nanos(text)
            except (ValueError, OverflowError):
                raise error from None
        else:
            nanos = _seconds_to_nanos(number, error)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise error
        nanos = _seconds_to_nanos(Decimal(repr(value)), error)
    else:
        nanos = _seconds_to_nanos(Decimal(value), error)
    if not SINCE_MIN_NANOS <= nanos <= SINCE_MAX_NANOS:
        raise error
    return nanos


def optional_since(msg: Mapping[str, Any], field: str = "since") -> int | None:
    """The message's `since` (`parse_since`), or None when absent or null."""
    value = msg.get(field)
    return None if value is None else parse_since(value, field)


def _seconds_to_nanos(seconds: Decimal, error: ProtocolError) -> int:
    # Range first: int() of "1e999999999" would build a billion-digit number.
    if not seconds.is_finite() or not 0 <= seconds < _SINCE_MAX_SECONDS:
        raise error
    return int(seconds.scaleb(9))


# --- encoding -----------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """Encode once; the same bytes go to every recipient."""
    return orjson.dumps(message)


def error_message(code: ErrorCode, message: str, *, field: str | None = None, **context: Any) -> Message:
    out: Message = {"type": "error", "code": str(code), "message": message}
    if field is not None:
        out["field"] = field
    out.update(context)
    return out


# --- decoding and validation --------------------------------------------------------


def decode(text: str | bytes) -> Message:
    """Parse one client frame into a message object with a string `type`."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise invalid("Message is not valid JSON") from None
    if not isinstance(value, dict):
        raise invalid("Message must be a JSON object")
    kind = value.get("type")
    if kind is None:
        raise invalid("Missing field 'type'", "type")
    if not isinstance(kind, str) or not kind:
        raise invalid("Field 'type' must be a non-empty string", "type")
    return value


def require_str(msg: Mapping[str, Any], field: str, *, max_len: int = 1024) -> str:
    if field not in msg:
        raise invalid(f"Missing field '{field}'", field)
    value = msg[field]
    if not isinstance(value, str) or not value:
        raise invalid(f"Field '{field}' must be a non-empty string", field)
    if len(value) > max_len:
        raise invalid(f"Field '{field}' is longer than {max_len} characters", field)
    return value


def optional_str(
    msg: Mapping[str, Any], field: str, default: str | None = None, *, max_len: int = 1024
) -> str | None:
    if msg.get(field) is None:
        return default
    return require_str(msg, field, max_len=max_len)


def require_int(msg: Mapping[str, Any], field: str, *, minimum: int, maximum: int) -> int:
    if field not in msg:
        raise invalid(f"Missing field '{field}'", field)
    return _bounded_int(msg[field], field, minimum, maximum)


def optional_int(
    msg: Mapping[str, Any], field: str, default: int, *, minimum: int, maximum: int
) -> int:
    if msg.get(field) is None:
        return default
    return _bounded_int(msg[field], field, minimum, maximum)


def _bounded_int(value: Any, field: str, minimum: int, maximum: int) -> int:
    # bool is an int subclass in Python; `true` is not a number in this protocol.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid(f"Field '{field}' must be an integer", field)
    if not minimum <= value <= maximum:
        raise invalid(f"Field '{field}' must be between {minimum} and {maximum}", field)
    return int(value)


def interval_ms(msg: Mapping[str, Any]) -> int:
    """The `interval` of subscribe / subscribe_stats: default 2000, 500–60000 ms."""
    return optional_int(
        msg, "interval", DEFAULT_INTERVAL_MS, minimum=MIN_INTERVAL_MS, maximum=MAX_INTERVAL_MS
    )


# --- lifecycle messages -------------------------------------------------------------


def connected_message(client_id: str, auth_timeout_s: float) -> Message:
    seconds = f"{auth_timeout_s:g}"
    return {
        "type": "connected",
        "clientId": client_id,
        "timestamp": rfc3339(),
        "message": f"Please authenticate within {seconds} seconds",
    }


def authenticated_message(client_id: str, user_id: str) -> Message:
    return {
        "type": "authenticated",
        "clientId": client_id,
        "userId": user_id,
        "timestamp": rfc3339(),
    }


def ping_message() -> Message:
    return {"type": "ping", "timestamp": rfc3339()}


def pong_message() -> Message:
    return {"type": "pong", "timestamp": rfc3339()}
