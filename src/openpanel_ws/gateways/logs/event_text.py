"""Engine event -> one readable `system_log` line (`SystemLogLine`: level, message), or None.

Pure functions over the engine's event JSON (Engine API 1.41 shapes, recorded under
tests/fixtures/logs/). Only notable events get a line: health-check execs, attach,
resize and network connect/disconnect happen constantly and would drown the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from openpanel_ws.engine.eventdata import event_action, event_attributes

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "SystemLogLine", "describe"]

DEBUG: Final = "debug"
INFO: Final = "info"
WARNING: Final = "warning"
ERROR: Final = "error"


@dataclass(frozen=True, slots=True)
class SystemLogLine:
    """What a `system_log` message says about an engine event (built in `messages`)."""

    level: str
    message: str


# What a line says of an actor the event does not name.
UNKNOWN = "(unknown)"


def _actor_id(event: Mapping[str, Any]) -> str:
    actor = event.get("Actor")
    value = actor.get("ID") if isinstance(actor, Mapping) else None
    if not isinstance(value, str):
        value = event.get("id")
    return value if isinstance(value, str) else ""


def _short(ident: str) -> str:
    if ident.startswith("sha256:"):
        return "sha256:" + ident[7:19]
    return ident[:12]


def _container_name(event: Mapping[str, Any]) -> str:
    name = event_attributes(event).get("name")
    if isinstance(name, str) and name:
        return name
    return _short(_actor_id(event)) or UNKNOWN


def describe(event: Mapping[str, Any]) -> SystemLogLine | None:
    """The readable line for a notable event; None for the rest."""
    kind = event.get("Type")
    action = event_action(event)
    if kind == "container":
        return _container(event, action)
    if kind == "image":
        return _image(event, action)
    if kind in ("volume", "network"):
        return _volume_or_network(event, str(kind), action)
    if kind == "daemon" and action == "reload":
        return SystemLogLine(INFO, "Docker daemon configuration reloaded")
    return None


_CONTAINER_SIMPLE: Final = {
    "start": (INFO, "started"),
    "stop": (INFO, "stopped"),
    "restart": (INFO, "restarted"),
    "destroy": (INFO, "removed"),
    "pause": (INFO, "paused"),
    "unpause": (INFO, "unpaused"),
}


def _container(event: Mapping[str, Any], action: str) -> SystemLogLine | None:
    name = _container_name(event)
    attrs = event_attributes(event)
    if action in _CONTAINER_SIMPLE:
        level, verb = _CONTAINER_SIMPLE[action]
        return SystemLogLine(level, f"Container {name} {verb}")
    if action == "create":
        image = attrs.get("image")
        suffix = f" from image {image}" if isinstance(image, str) and image else ""
        return SystemLogLine(INFO, f"Container {name} created{suffix}")
    if action == "die":
        code = str(attrs.get("exitCode", "")).strip()
        if code in ("", "0"):
            return SystemLogLine(INFO, f"Container {name} exited with code {code or '0'}")
        return SystemLogLine(WARNING, f"Container {name} died with exit code {code}")
    if action == "oom":
        return SystemLogLine(ERROR, f"Container {name} was killed: out of memory (OOM)")
    if action == "kill":
        signal = attrs.get("signal")
        return SystemLogLine(DEBUG, f"Container {name} sent signal {signal}" if signal else
                       f"Container {name} killed")
    if action.startswith("health_status"):
        status = action.partition(":")[2].strip() or "unknown"
        level = WARNING if status == "unhealthy" else INFO
        return SystemLogLine(level, f"Container {name} health status: {status}")
    if action == "rename":
        old = attrs.get("oldName")
        old_name = old.lstrip("/") if isinstance(old, str) and old else "?"
        return SystemLogLine(INFO, f"Container {old_name} renamed to {name}")
    if action == "update":
        return SystemLogLine(INFO, f"Container {name} configuration updated")
    return None


_IMAGE_VERBS = {"pull": "pulled", "delete": "removed", "import": "imported",
                "load": "loaded", "push": "pushed"}


def _image(event: Mapping[str, Any], action: str) -> SystemLogLine | None:
    ident = _actor_id(event)
    name = event_attributes(event).get("name")
    label = (name if isinstance(name, str) and name and name != ident else _short(ident)) or UNKNOWN
    verb = _IMAGE_VERBS.get(action)
    if verb is not None:
        return SystemLogLine(INFO, f"Image {label} {verb}")
    if action == "tag":
        return SystemLogLine(DEBUG, f"Image {_short(ident)} tagged {label}")
    if action == "untag":
        return SystemLogLine(DEBUG, f"Image {label} untagged")
    return None


def _volume_or_network(event: Mapping[str, Any], kind: str, action: str) -> SystemLogLine | None:
    if action not in ("create", "destroy", "remove"):
        return None  # mount/unmount/connect/disconnect: once per container start, noise
    attrs = event_attributes(event)
    ident = _actor_id(event)
    name = attrs.get("name")
    # Volumes are named by their ID; networks carry a `name` attribute.
    label = (name if isinstance(name, str) and name
             else (ident if kind == "volume" else _short(ident))) or UNKNOWN
    detail = attrs.get("driver") if kind == "volume" else attrs.get("type")
    suffix = f" ({detail})" if isinstance(detail, str) and detail else ""
    verb = "created" if action == "create" else "removed"
    return SystemLogLine(DEBUG, f"{kind.capitalize()} {label} {verb}{suffix}")
