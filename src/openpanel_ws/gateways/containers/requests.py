"""Client requests of /ws/containers, validated before any engine call (docs/containers.md).

Bad input raises `INVALID_MESSAGE` naming the field, and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from openpanel_ws import protocol
from openpanel_ws.protocol import Message, invalid

__all__ = [
    "DEFAULT_TAIL",
    "MAX_TAIL",
    "LogsRequest",
    "StatsRequest",
    "container_ref",
    "parse_tail",
]

DEFAULT_TAIL: Final = 100
MAX_TAIL: Final = 1_000_000


def container_ref(msg: Message) -> str:
    """The `containerId` of any containers message, as the client sent it."""
    return protocol.require_str(msg, "containerId")


def parse_tail(msg: Message) -> int | str:
    value = msg.get("tail")
    if value is None:
        return DEFAULT_TAIL
    if value == "all":
        return "all"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TAIL:
        raise invalid(f"Field 'tail' must be an integer from 0 to {MAX_TAIL} or \"all\"", "tail")
    return value


@dataclass(frozen=True, slots=True)
class LogsRequest:
    """`subscribe_logs`: the container, and the shape of this subscriber's history."""

    ref: str
    tail: int | str  # a line count or "all"
    since: int | None  # epoch nanos

    @classmethod
    def parse(cls, msg: Message) -> LogsRequest:
        return cls(container_ref(msg), parse_tail(msg), protocol.optional_since(msg))


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """`subscribe_stats`: the container and the pacing interval (ms)."""

    ref: str
    interval: int

    @classmethod
    def parse(cls, msg: Message) -> StatsRequest:
        return cls(container_ref(msg), protocol.interval_ms(msg))
