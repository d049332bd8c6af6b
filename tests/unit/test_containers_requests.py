"""Validation of subscribe_logs fields (no engine involved)."""

from __future__ import annotations

from typing import Any

import pytest

from openpanel_ws.gateways.containers import ended_message
from openpanel_ws.gateways.containers.requests import DEFAULT_TAIL, parse_tail
from openpanel_ws.protocol import ErrorCode, ProtocolError, optional_since


@pytest.mark.parametrize(
    ("value", "expected"), [(None, DEFAULT_TAIL), (0, 0), (5, 5), (7.0, 7), ("all", "all")])
def test_tail(value: Any, expected: Any) -> None:
    assert parse_tail({"tail": value}) == expected


@pytest.mark.parametrize("value", [-1, 1.5, "5", "ALL", True, [], {}, 10**7])
def test_bad_tail(value: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_tail({"tail": value})
    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_MESSAGE, "tail")


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        (None, None),
        (1795738074, 1795738074_000000000),
        (1795738074.5, 1795738074_500000000),
        ("1795738074.000000001", 1795738074_000000001),
        ("2026-11-27T00:07:54.913594017Z", 1795738074_913594017),
        ("2026-11-27T01:07:54+01:00", 1795738074_000000000),
    ],
)
def test_since(value: Any, nanos: int | None) -> None:
    assert optional_since({"since": value}) == nanos


@pytest.mark.parametrize("value", [
    "yesterday", "", -1, "-5", "nan", "inf", float("nan"), float("inf"), True, [1], "2026-13-01T00:00:00Z"])
def test_bad_since(value: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        optional_since({"since": value})
    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_MESSAGE, "since")


def test_ended_message() -> None:
    msg = ended_message("stats", "web")
    assert msg["type"] == "subscription_ended"
    assert (msg["subscription"], msg["containerId"], msg["reason"]) == ("stats", "web", "container_removed")
