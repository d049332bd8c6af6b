"""`subscribe` filters: engine semantics, on recorded events; bad input is INVALID_MESSAGE."""

from pathlib import Path
from typing import Any

import orjson
import pytest

from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.protocol import ErrorCode, ProtocolError, parse_since

FIXTURE = Path(__file__).parent.parent / "fixtures" / "logs" / "engine-events.jsonl"
EVENTS: list[dict[str, Any]] = [orjson.loads(line) for line in FIXTURE.read_bytes().splitlines() if line]


def kept(filters: dict[str, Any]) -> list[tuple[str, str]]:
    flt = EventFilter.parse(filters)
    return [(e["Type"], e["Action"]) for e in EVENTS if flt.matches(e)]


def test_no_filters_keep_everything() -> None:
    assert len(kept({})) == len(EVENTS)
    assert EventFilter.parse(None).empty
    assert EventFilter.parse({"type": []}).empty


def test_type_and_event_are_or_within_and_across_keys() -> None:
    result = kept({"type": ["volume", "network"], "event": ["create"]})
    assert sorted(result) == [("network", "create"), ("volume", "create")]
    assert {t for t, _ in kept({"type": "image"})} == {"image"}


def test_container_matches_name_or_id_prefix() -> None:
    by_name = kept({"container": ["oplogs-cap-4416-a"]})
    assert by_name == [("container", "create"), ("container", "start"), ("container", "die"),
                       ("container", "destroy")]
    event_id = next(e["Actor"]["ID"] for e in EVENTS if e["Actor"]["Attributes"].get("name") ==
                    "oplogs-cap-4416-a")
    assert kept({"container": [event_id[:12]]}) == by_name
    assert kept({"container": ["no-such"]}) == []


def test_health_status_is_a_prefix_match_like_the_engine() -> None:
    assert {a for _, a in kept({"event": ["health_status"]})} == {
        "health_status: healthy", "health_status: unhealthy"}
    assert kept({"event": ["health_status: unhealthy"]}) == [("container", "health_status: unhealthy")] * 2


def test_label_key_and_key_value_all_must_match() -> None:
    assert {a for _, a in kept({"label": ["exitCode=3"]})} == {"die"}
    both = kept({"label": ["exitCode", "name=oplogs-cap-4416-a"]})
    assert both == [("container", "die")]
    assert kept({"label": ["exitCode=4"]}) == []


def test_image_matches_reference_with_or_without_tag() -> None:
    tagged = kept({"image": ["openpanel-ws-test:busybox"], "type": ["container"]})
    untagged = kept({"image": ["openpanel-ws-test"], "type": ["container"]})
    assert tagged and tagged == untagged


def test_legacy_map_form() -> None:
    assert kept({"type": {"volume": True}}) == kept({"type": ["volume"]})


@pytest.mark.parametrize(("filters", "field"), [
    ("x", "filters"), (["type"], "filters"), ({"colour": ["red"]}, "filters.colour"),
    ({"type": 3}, "filters.type"), ({"type": [3]}, "filters.type"), ({"type": [""]}, "filters.type"),
    ({"event": ["x"] * 65}, "filters.event"), ({"label": ["x" * 300]}, "filters.label"),
])
def test_bad_filters_name_the_field(filters: Any, field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        EventFilter.parse(filters)
    assert err.value.code is ErrorCode.INVALID_MESSAGE
    assert err.value.field == field


def test_malformed_events_do_not_match_or_raise() -> None:
    flt = EventFilter.parse({"container": ["a"], "label": ["k"], "image": ["i"]})
    for event in ({}, {"Actor": None}, {"Actor": {"ID": 3, "Attributes": "x"}}):
        assert not flt.matches(event)


@pytest.mark.parametrize(("value", "nanos"), [
    ("2026-11-27T00:06:12.035269178Z", 1795737972035269178),
    ("2026-11-27T00:06:12Z", 1795737972000000000),
    (1795737972, 1795737972000000000),
    ("1795737972.5", 1795737972500000000),
])
def test_since_accepts_rfc3339_and_unix_seconds(value: Any, nanos: int) -> None:
    assert parse_since(value) == nanos


@pytest.mark.parametrize("value", ["yesterday", "", -1, True, [1], {"a": 1}, float("nan")])
def test_since_rejects_the_rest(value: Any) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_since(value)
    assert err.value.field == "since"
