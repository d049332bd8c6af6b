"""Event -> readable system_log line, on events recorded from the real engine."""

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from openpanel_ws.gateways.logs.event_text import describe
from openpanel_ws.gateways.logs.messages import docker_event

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "logs" / "engine-events.jsonl"
EVENTS: list[dict[str, Any]] = [orjson.loads(line) for line in FIXTURE.read_bytes().splitlines() if line]


def find(kind: str, action: str, name: str | None = None) -> dict[str, Any]:
    for event in EVENTS:
        attrs = event["Actor"]["Attributes"]
        if event["Type"] == kind and event["Action"] == action and (name is None or
                                                                    name in attrs.get("name", "")):
            return event
    raise LookupError(f"{kind} {action} {name} not recorded")


def line(kind: str, action: str, name: str | None = None) -> tuple[str, str]:
    result = describe(find(kind, action, name))
    assert result is not None
    return result.level, result.message


def test_die_with_non_zero_code_is_a_warning_naming_container_and_code() -> None:
    level, message = line("container", "die", "-a")
    assert level == "warning"
    assert "oplogs-cap-4416-a" in message and "3" in message


def test_oom_is_an_error() -> None:
    level, message = line("container", "oom")
    assert level == "error"
    assert "oplogs-cap-4416-oom" in message and "out of memory" in message


@pytest.mark.parametrize(("action", "word"), [
    ("create", "created"), ("start", "started"), ("stop", "stopped"), ("restart", "restarted"),
    ("destroy", "removed"), ("pause", "paused"), ("unpause", "unpaused"),
])
def test_lifecycle_lines_name_the_container(action: str, word: str) -> None:
    level, message = line("container", action, "-h" if action in {"pause", "unpause", "restart",
                                                                   "stop"} else None)
    assert level == "info"
    assert word in message and "oplogs-cap-4416-" in message


def test_health_status() -> None:
    assert line("container", "health_status: healthy") == (
        "info", "Container oplogs-cap-4416-h health status: healthy")
    assert line("container", "health_status: unhealthy") == (
        "warning", "Container oplogs-cap-4416-h health status: unhealthy")


def test_zero_exit_is_info() -> None:
    event = find("container", "die", "-a")
    event = {**event, "Actor": {**event["Actor"],
                                "Attributes": {**event["Actor"]["Attributes"], "exitCode": "0"}}}
    result = describe(event)
    assert result is not None and result.level == "info"


def test_image_volume_network_daemon() -> None:
    assert line("image", "delete")[0] == "info" and "removed" in line("image", "delete")[1]
    assert line("image", "import")[0] == "info"
    assert line("volume", "create") == ("debug", "Volume oplogs-cap-4416-vol created (local)")
    assert line("volume", "destroy") == ("debug", "Volume oplogs-cap-4416-vol removed (local)")
    assert line("network", "create") == ("debug", "Network oplogs-cap-4416-net created (bridge)")
    assert line("network", "destroy")[1].startswith("Network oplogs-cap-4416-net removed")
    assert line("daemon", "reload") == ("info", "Docker daemon configuration reloaded")


def test_image_pull_wording() -> None:
    # Not recordable offline; the engine's shape for a pull (Attributes.name = reference).
    event = {"status": "pull", "id": "busybox:latest", "Type": "image", "Action": "pull",
             "Actor": {"ID": "busybox:latest", "Attributes": {"name": "busybox"}},
             "scope": "local", "time": 1, "timeNano": 1_000_000_000}
    result = describe(event)
    assert result is not None and result.message == "Image busybox pulled"


def test_noisy_events_have_no_line() -> None:
    for event in EVENTS:
        action = event["Action"]
        if action.startswith("exec_") or action in {"connect", "disconnect"}:
            assert describe(event) is None, event


def test_every_recorded_event_is_handled_and_docker_event_keeps_it_unchanged() -> None:
    for event in EVENTS:
        describe(event)  # never raises
        message = docker_event(event, "local")
        assert message["event"] is event and message["host"] == "local"
        assert message["timestamp"].endswith("Z")
        nanos = str(event["timeNano"] % 1_000_000_000).zfill(9)
        assert message["timestamp"].split(".")[1] == nanos + "Z"


@pytest.mark.parametrize(("event", "level", "text"), [
    ({}, None, None),
    ({"Type": "container"}, None, None),  # no action: nothing to say
    ({"Type": "container", "Action": "die", "Actor": None},
     "info", "Container (unknown) exited with code 0"),
    ({"Type": "container", "Action": "start", "Actor": {"ID": 5, "Attributes": []}},
     "info", "Container (unknown) started"),
    ({"Type": 3, "Action": ["x"]}, None, None),
    ({"Type": "image", "Action": "delete", "Actor": "x"}, "info", "Image (unknown) removed"),
    ({"Type": "volume", "Action": "destroy", "Actor": {}}, "debug", "Volume (unknown) removed"),
])
def test_malformed_events_never_raise(event: dict[str, Any], level: str | None,
                                      text: str | None) -> None:
    line = describe(event)
    if text is None:
        assert line is None
    else:
        assert line is not None and (line.level, line.message) == (level, text)
    message = docker_event(event, "local")
    # Passed on unchanged, stamped with the time of forwarding when it carries none.
    assert message["type"] == "docker_event" and message["event"] is event
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", message["timestamp"]), message
