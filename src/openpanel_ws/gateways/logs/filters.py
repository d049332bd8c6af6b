"""`subscribe` filters of /ws/logs (sans-I/O): the engine's own event filter semantics,
validated before anything changes (docs/logs.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from openpanel_ws import protocol
from openpanel_ws.engine.eventdata import event_action, event_attributes

__all__ = ["FILTER_KEYS", "MAX_FILTER_VALUES", "MAX_FILTER_VALUE_LEN", "EventFilter"]

FILTER_KEYS: Final = ("type", "event", "container", "image", "label", "network", "volume", "scope")
MAX_FILTER_VALUES: Final = 64
MAX_FILTER_VALUE_LEN: Final = 256
# The engine matches these `event` values by prefix (`health_status` matches
# `health_status: unhealthy`) as soon as one of them is in the filter.
_FUZZY_EVENTS: Final = frozenset({"health_status", "exec_create", "exec_start"})


def _strip_tag(image: str) -> str:
    """`repo:tag` / `repo@digest` -> `repo` (the engine's FamiliarName, for matching)."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


class EventFilter:
    """Engine-style event filters: OR within a key, AND across keys; `label` values
    all must match (`key` or `key=value`). Semantics of dockerd's daemon/events/filter.go."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, frozenset[str]]) -> None:
        self._fields = {k: v for k, v in fields.items() if v}

    @classmethod
    def parse(cls, raw: Any) -> EventFilter:
        """From a client's `filters`; raises INVALID_MESSAGE naming the bad field."""
        if raw is None:
            return cls({})
        if not isinstance(raw, dict):
            raise protocol.invalid("Field 'filters' must be an object", "filters")
        fields: dict[str, frozenset[str]] = {}
        for key, value in raw.items():
            where = f"filters.{key}"
            if key not in FILTER_KEYS:
                raise protocol.invalid(
                    f"Unknown filter '{key}' (allowed: {', '.join(FILTER_KEYS)})", where)
            fields[key] = frozenset(_filter_values(value, where))
        return cls(fields)

    @property
    def empty(self) -> bool:
        return not self._fields

    def to_json(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self._fields.items()}

    def matches(self, event: Mapping[str, Any]) -> bool:
        f = self._fields
        if not f:
            return True
        actor = event.get("Actor")
        ident = actor.get("ID") if isinstance(actor, Mapping) else None
        actor_id = ident if isinstance(ident, str) else ""
        attrs = event_attributes(event)
        action = event_action(event)
        if "event" in f:
            wanted = f["event"]
            if wanted & _FUZZY_EVENTS:
                if not _fuzzy(wanted, action):
                    return False
            elif action not in wanted:
                return False
        if "type" in f and event.get("Type") not in f["type"]:
            return False
        if "scope" in f and event.get("scope") not in f["scope"]:
            return False
        name = attrs.get("name")
        name = name if isinstance(name, str) else ""
        for key in ("container", "network", "volume"):
            if key in f and not (_fuzzy(f[key], actor_id) or _fuzzy(f[key], name)):
                return False
        if "image" in f:
            image = attrs.get("name" if event.get("Type") == "image" else "image")
            image = image if isinstance(image, str) else ""
            candidates = {actor_id, image, _strip_tag(actor_id), _strip_tag(image)} - {""}
            if not candidates & f["image"]:
                return False
        if "label" in f:
            if not attrs:
                return False
            for item in f["label"]:
                label, sep, value = item.partition("=")
                if label not in attrs or (sep and attrs[label] != value):
                    return False
        return True


def _fuzzy(wanted: Iterable[str], source: str) -> bool:
    return bool(source) and any(source == w or source.startswith(w) for w in wanted)


def _filter_values(value: Any, where: str) -> list[str]:
    # Engine shapes: ["a", "b"] (and the legacy {"a": true}); a bare string is one value.
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        items = [k for k, v in value.items() if v is True]
    else:
        raise protocol.invalid(f"Filter '{where}' must be a list of strings", where)
    if len(items) > MAX_FILTER_VALUES:
        raise protocol.invalid(f"Filter '{where}' has more than {MAX_FILTER_VALUES} values", where)
    for item in items:
        if not isinstance(item, str) or not item:
            raise protocol.invalid(f"Filter '{where}' must be a list of non-empty strings", where)
        if len(item) > MAX_FILTER_VALUE_LEN:
            raise protocol.invalid(
                f"Filter '{where}' values are limited to {MAX_FILTER_VALUE_LEN} characters", where)
    return items
