"""Typed server messages and client errors, parsed from plain dicts (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openpanel_ws.protocol import ErrorCode, Message

__all__ = [
    "AuthenticationError",
    "ClientError",
    "ConnectionClosed",
    "ConnectionFailed",
    "ContainerNotFound",
    "DockerEvent",
    "DockerUnavailable",
    "Event",
    "HostStatus",
    "InvalidMessage",
    "LogLine",
    "MetricsSample",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "StatsSample",
    "SubscriptionEnded",
    "SystemLog",
    "TerminalError",
    "TerminalOutput",
    "error_from_message",
]

# --- errors -------------------------------------------------------------------------


class ClientError(Exception):
    """Base of everything the client raises; `str()` is one line for a human."""


class ConnectionFailed(ClientError):
    """The gateway could not be reached (and retrying was not asked for or gave up)."""


class ConnectionClosed(ClientError):
    """The server closed the connection for good (a close code that forbids retrying)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        text = f"connection closed by the server (code {code}"
        super().__init__(text + (f": {reason})" if reason else ")"))


class ServerError(ClientError):
    """An `error` message of the protocol, with its code."""

    def __init__(self, code: str, message: str, container_id: str | None = None,
                 raw: Message | None = None) -> None:
        self.code = code
        self.message = message
        self.container_id = container_id
        self.raw = raw or {}
        host = self.raw.get("host")
        # The host of the container named (docs/protocol.md "The `host` field").
        self.host: str | None = host if isinstance(host, str) else None
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" (container '{self.container_id}')" if self.container_id else ""
        return f"{self.message}{where} [{self.code}]"


class AuthenticationError(ServerError):
    """AUTH_FAILED / AUTH_TIMEOUT: final, the client never retries with the same token."""

    def describe(self) -> str:
        text = self.message or "invalid token"
        return "authentication failed: " + text[:1].lower() + text[1:]


class ContainerNotFound(ServerError):
    def describe(self) -> str:
        return f"container '{self.container_id}' not found"


class PermissionDenied(ServerError):
    def describe(self) -> str:
        if self.container_id:
            return f"permission denied: container '{self.container_id}'"
        text = self.message
        if text.lower().startswith("permission denied"):
            return "permission denied" + text[len("permission denied"):]
        return f"permission denied: {text}"


class RateLimited(ServerError):
    pass


class InvalidMessage(ServerError):
    pass


class DockerUnavailable(ServerError):
    def describe(self) -> str:
        if self.host:
            return f"the gateway cannot reach the Docker engine of host '{self.host}'"
        return "the gateway cannot reach its Docker engine"


class SubscriptionEnded(ClientError):
    """The server ended a subscription (e.g. the container was removed)."""

    def __init__(self, container_id: str, reason: str, host: str | None = None) -> None:
        self.container_id = container_id
        self.reason = reason
        self.host = host
        super().__init__(f"container '{host + '/' if host else ''}{container_id}': {reason}")


@dataclass(frozen=True, slots=True)
class TerminalOutput:
    """One `terminal_output`: `stream` is "stdout"/"stderr" without a TTY, else None."""

    data: str
    stream: str | None = None


class TerminalError(ClientError):
    """`terminal_error`: the terminal could not be opened or failed."""


_ERRORS: dict[str, type[ServerError]] = {
    ErrorCode.AUTH_FAILED: AuthenticationError,
    ErrorCode.AUTH_TIMEOUT: AuthenticationError,
    ErrorCode.CONTAINER_NOT_FOUND: ContainerNotFound,
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
    ErrorCode.RATE_LIMIT: RateLimited,
    ErrorCode.INVALID_MESSAGE: InvalidMessage,
    ErrorCode.DOCKER_UNAVAILABLE: DockerUnavailable,
}


def error_from_message(msg: Message) -> ServerError:
    code = str(msg.get("code") or "")
    text = str(msg.get("message") or code or "error")
    if not code and text == "Invalid token":  # the specification's code-less shape
        code = ErrorCode.AUTH_FAILED
    cid = msg.get("containerId")
    cls = _ERRORS.get(code, ServerError)
    return cls(code, text, cid if isinstance(cid, str) else None, msg)


# --- typed messages -----------------------------------------------------------------


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def host_of(msg: Message) -> str | None:
    """The message's `host` (docs/protocol.md "The `host` field"); None from a gateway
    that serves one host and does not send it."""
    host = msg.get("host")
    return host if isinstance(host, str) else None


@dataclass(frozen=True, slots=True)
class LogLine:
    container_id: str
    timestamp: str
    stream: str  # "stdout" or "stderr"
    data: str
    host: str | None = None

    @classmethod
    def parse(cls, msg: Message) -> LogLine:
        return cls(str(msg.get("containerId", "")), str(msg.get("timestamp", "")),
                   str(msg.get("stream", "stdout")), str(msg.get("data", "")), host_of(msg))


@dataclass(frozen=True, slots=True)
class StatsSample:
    container_id: str
    timestamp: str
    cpu_percent: float
    memory_usage: float
    memory_limit: float
    memory_percent: float
    rx_bytes: float
    tx_bytes: float
    raw: dict[str, Any] = field(repr=False, compare=False)
    host: str | None = None

    @classmethod
    def parse(cls, msg: Message) -> StatsSample:
        stats = _dict(msg.get("stats"))
        cpu, mem, net = _dict(stats.get("cpu")), _dict(stats.get("memory")), _dict(stats.get("network"))
        return cls(str(msg.get("containerId", "")), str(msg.get("timestamp", "")),
                   _num(cpu.get("percent", cpu.get("usage"))), _num(mem.get("usage")),
                   _num(mem.get("limit")), _num(mem.get("percent")),
                   _num(net.get("rx_bytes")), _num(net.get("tx_bytes")), stats, host_of(msg))


@dataclass(frozen=True, slots=True)
class DockerEvent:
    timestamp: str
    event: dict[str, Any]
    host: str | None = None

    @property
    def type(self) -> str:
        return str(self.event.get("Type", ""))

    @property
    def action(self) -> str:
        return str(self.event.get("Action", ""))

    @property
    def actor_id(self) -> str:
        return str(_dict(self.event.get("Actor")).get("ID", ""))

    @property
    def attributes(self) -> dict[str, Any]:
        return _dict(_dict(self.event.get("Actor")).get("Attributes"))

    @classmethod
    def parse(cls, msg: Message) -> DockerEvent:
        return cls(str(msg.get("timestamp", "")), _dict(msg.get("event")), host_of(msg))


@dataclass(frozen=True, slots=True)
class SystemLog:
    timestamp: str
    level: str
    message: str
    source: str
    host: str | None = None  # absent on the lines of the gateway's machine (host log files)

    @classmethod
    def parse(cls, msg: Message) -> SystemLog:
        return cls(str(msg.get("timestamp", "")), str(msg.get("level", "info")),
                   str(msg.get("message", "")), str(msg.get("source", "")), host_of(msg))


@dataclass(frozen=True, slots=True)
class HostStatus:
    """`host_status` of `/ws/logs`: a host changed state (connecting, up, down, disabled);
    `error` is the last engine error of a host that is down."""

    host: str
    state: str
    error: str | None
    timestamp: str

    @classmethod
    def parse(cls, msg: Message) -> HostStatus:
        error = msg.get("error")
        return cls(str(msg.get("host", "")), str(msg.get("state", "")),
                   error if isinstance(error, str) else None, str(msg.get("timestamp", "")))


@dataclass(frozen=True, slots=True)
class MetricsSample:
    timestamp: str
    cpu_percent: float
    cores: int
    memory: dict[str, float]
    disk: dict[str, float]
    network: dict[str, float]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, msg: Message) -> MetricsSample:
        system = _dict(msg.get("system"))
        cpu = _dict(system.get("cpu"))

        def nums(name: str) -> dict[str, float]:
            return {k: _num(v) for k, v in _dict(system.get(name)).items()}

        return cls(str(msg.get("timestamp", "")), _num(cpu.get("usage")), int(_num(cpu.get("cores"))),
                   nums("memory"), nums("disk"), nums("network"), system)


Event = DockerEvent | SystemLog
