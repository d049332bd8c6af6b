"""The one host check and the one container access check, shared by every gateway.

`resolve_host` picks the host a request is about (the route's, the request's `host`, or
the default) and applies the `hosts` claim; `resolve_container` resolves a client's
container reference (full id, unique id prefix or name) on that host and applies the
`containers` claim. Out of scope and missing give the same PERMISSION_DENIED answer, so
scoped users cannot probe hosts or names (docs/protocol.md "Host scopes").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openpanel_ws.auth import Principal
from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.protocol import ErrorCode, ProtocolError, invalid

if TYPE_CHECKING:
    from openpanel_ws.gateways.base import Session
    from openpanel_ws.hosts.registry import Host, HostRegistry

__all__ = [
    "DOCKER_UNAVAILABLE_MESSAGE",
    "container_names",
    "could_be_id",
    "docker_unavailable",
    "permission_denied",
    "resolve_container",
    "resolve_host",
]

DOCKER_UNAVAILABLE_MESSAGE = "Docker engine unavailable"


def docker_unavailable(ref: str, host: str | None) -> ProtocolError:
    """The engine did not answer: the error names the container as the client did, and
    its host."""
    context = {"containerId": ref} if host is None else {"containerId": ref, "host": host}
    return ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE, context=context)


def permission_denied(context: Mapping[str, Any]) -> ProtocolError:
    return ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied", context=dict(context))


def resolve_host(hosts: HostRegistry, session: Session[Any], message: Mapping[str, Any],
                 context: Mapping[str, Any] | None = None) -> Host:
    """The host a request is about: the route's (/hosts/{id}/ws/*), else the message's
    `host`, else the default host; checked against the `hosts` claim before anything is
    looked up, so an existing host out of scope and a missing one answer alike.

    Raises ProtocolError: INVALID_MESSAGE (a `host` that is not a string, contradicts the
    route, or is unknown to a principal that may see it) or PERMISSION_DENIED, each with
    `context` (e.g. the client's `containerId`) and the `host` as named."""
    requested = message.get("host")
    if requested is not None and not isinstance(requested, str):
        raise _invalid_host("host must be a string", context)
    pinned = session.host
    if pinned is not None:
        if requested is not None and requested != pinned:
            raise _invalid_host(f"host '{requested}' is not this endpoint's host '{pinned}'",
                                {**(context or {}), "host": requested})
        host_id = pinned
    else:
        host_id = requested if requested is not None else hosts.default.id
    named = {**(context or {}), "host": host_id}
    if not session.user.may_access_host(host_id):
        raise permission_denied(named)
    host = hosts.get(host_id)
    if host is None:
        raise _invalid_host(f"Unknown host '{host_id}'", named)
    return host


def _invalid_host(message: str, context: Mapping[str, Any] | None) -> ProtocolError:
    error = invalid(message, "host")
    error.context.update(context or {})
    return error


def container_names(info: dict[str, Any]) -> list[str]:
    name = info.get("Name")
    names = [name.lstrip("/")] if isinstance(name, str) and name else []
    return names


_HEX = frozenset("0123456789abcdefABCDEF")


def could_be_id(ref: str) -> bool:
    """True when the engine might resolve `ref` as a (prefix of a) container id."""
    return bool(ref) and all(ch in _HEX for ch in ref)


async def resolve_container(
    host: Host, principal: Principal, container_ref: str
) -> dict[str, Any]:
    """Inspect the container the client named on `host`, if this principal may see it.

    Raises ProtocolError with CONTAINER_NOT_FOUND, PERMISSION_DENIED or DOCKER_UNAVAILABLE,
    each carrying the client's `containerId` exactly as sent and the `host`.
    """
    context = {"containerId": container_ref, "host": host.id}
    if not principal.may_access_host(host.id):
        raise permission_denied(context)
    engine = host.engine
    scoped = principal.container_scopes is not None
    if scoped and not could_be_id(container_ref) and not principal.may_access_container(
            [container_ref]):
        # Not an id, so the engine could only resolve it as this exact name, which is out
        # of scope: refused without asking the engine, so an existing and a missing
        # container take the same time (docs/protocol.md "Hostile clients").
        raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied", context=context)
    try:
        info = await engine.inspect_container(container_ref)
    except EngineNotFound:
        if scoped:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied",
                                context=context) from None
        raise ProtocolError(ErrorCode.CONTAINER_NOT_FOUND, "Container not found",
                            context=context) from None
    except EngineUnavailable:
        raise docker_unavailable(container_ref, host.id) from None
    except EngineError as exc:
        # e.g. an ambiguous id prefix ("multiple IDs found")
        if scoped:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied",
                                context=context) from None
        raise ProtocolError(ErrorCode.CONTAINER_NOT_FOUND, f"Container not found: {exc.message}",
                            context=context) from None
    if not principal.may_access_container(container_names(info)):
        raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied", context=context)
    return info
