"""The one container access check, shared by /ws/containers and /ws/terminal.

Resolves a client's container reference (full id, unique id prefix or name) and applies
the `containers` scope claim. A container outside the scopes and a container that does
not exist give the same PERMISSION_DENIED answer, so scoped users cannot probe names.
"""

from __future__ import annotations

from typing import Any

from openpanel_ws.auth import Principal
from openpanel_ws.engine.client import DockerEngine, EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.protocol import ErrorCode, ProtocolError

__all__ = [
    "DOCKER_UNAVAILABLE_MESSAGE",
    "container_names",
    "could_be_id",
    "docker_unavailable",
    "resolve_container",
]

DOCKER_UNAVAILABLE_MESSAGE = "Docker engine unavailable"


def docker_unavailable(ref: str) -> ProtocolError:
    """The engine did not answer: the error names the container as the client did."""
    return ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE,
                         context={"containerId": ref})


def container_names(info: dict[str, Any]) -> list[str]:
    name = info.get("Name")
    names = [name.lstrip("/")] if isinstance(name, str) and name else []
    return names


_HEX = frozenset("0123456789abcdefABCDEF")


def could_be_id(ref: str) -> bool:
    """True when the engine might resolve `ref` as a (prefix of a) container id."""
    return bool(ref) and all(ch in _HEX for ch in ref)


async def resolve_container(
    engine: DockerEngine, principal: Principal, container_ref: str
) -> dict[str, Any]:
    """Inspect the container the client named, if this principal may see it.

    Raises ProtocolError with CONTAINER_NOT_FOUND, PERMISSION_DENIED or DOCKER_UNAVAILABLE,
    each carrying the client's `containerId` exactly as sent.
    """
    context = {"containerId": container_ref}
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
        raise docker_unavailable(container_ref) from None
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
