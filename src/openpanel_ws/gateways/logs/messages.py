"""Wire messages of /ws/logs: `docker_event` and `system_log` (docs/logs.md)."""

from __future__ import annotations

from typing import Final

from openpanel_ws import protocol
from openpanel_ws.engine.eventdata import EngineEvent, event_nanos
from openpanel_ws.gateways.logs.event_text import describe
from openpanel_ws.protocol import Message

__all__ = ["SOURCE_DOCKER", "SOURCE_GATEWAY", "docker_event", "event_payloads", "system_log"]

SOURCE_DOCKER: Final = "docker"
SOURCE_GATEWAY: Final = "gateway"


def system_log(timestamp: str, level: str, message: str, source: str,
               host: str | None = None) -> Message:
    """A `system_log`; `host` names the Docker host of a `docker` or `gateway` line
    (docs/protocol.md "The `host` field"), none for a line of a machine log file."""
    out: Message = {"type": "system_log", "timestamp": timestamp, "level": level,
                    "message": message, "source": source}
    if host is not None:
        out["host"] = host
    return out


def docker_event(event: EngineEvent, host: str) -> Message:
    nanos = event_nanos(event)
    stamp = protocol.rfc3339_from_nanos(nanos) if nanos > 0 else protocol.rfc3339()
    return {"type": "docker_event", "timestamp": stamp, "host": host, "event": event}


def event_payloads(event: EngineEvent, host: str) -> tuple[bytes, bytes | None]:
    """The JSON payloads of the `docker_event` of `host` and, for a notable event, of its
    `docker` system_log (not yet framed)."""
    message = docker_event(event, host)
    line = describe(event)
    readable = None
    if line is not None:
        readable = protocol.encode(
            system_log(message["timestamp"], line.level, line.message, SOURCE_DOCKER, host))
    return protocol.encode(message), readable
