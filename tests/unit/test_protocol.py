import pytest

from openpanel_ws import protocol
from openpanel_ws.protocol import ErrorCode, ProtocolError


@pytest.mark.parametrize(
    ("frame", "field"),
    [("not json", None), ("[1, 2]", None), ('"auth"', None), ("{}", "type"),
     ('{"type": 5}', "type"), ('{"type": ""}', "type"), ('{"type": null}', "type")],
)
def test_decode_rejects_malformed_frames(frame: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame)
    assert info.value.code is ErrorCode.INVALID_MESSAGE
    assert info.value.field == field


def test_decode_accepts_an_object_with_a_type() -> None:
    assert protocol.decode('{"type":"ping","x":1}') == {"type": "ping", "x": 1}


@pytest.mark.parametrize("value", [500, 2000, 60000, 1000.0])
def test_interval_accepts_integers_in_range(value: object) -> None:
    assert protocol.interval_ms({"interval": value}) == int(value)  # type: ignore[call-overload]


def test_interval_defaults_to_2000() -> None:
    assert protocol.interval_ms({}) == 2000
    assert protocol.interval_ms({"interval": None}) == 2000


@pytest.mark.parametrize("value", [499, 60001, 0, -1, True, False, "2000", 1500.5, [], {}])
def test_interval_rejects_everything_else_naming_the_field(value: object) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.interval_ms({"interval": value})
    assert info.value.code is ErrorCode.INVALID_MESSAGE
    assert info.value.field == "interval"
    assert "interval" in info.value.message


def test_require_str() -> None:
    assert protocol.require_str({"containerId": "web"}, "containerId") == "web"
    for bad in ({}, {"containerId": ""}, {"containerId": 3}, {"containerId": None}):
        with pytest.raises(ProtocolError) as info:
            protocol.require_str(bad, "containerId")
        assert info.value.field == "containerId"


def test_error_message_shape() -> None:
    err = ProtocolError(ErrorCode.CONTAINER_NOT_FOUND, "Container not found",
                        context={"containerId": "abc"})
    assert err.to_message() == {"type": "error", "code": "CONTAINER_NOT_FOUND",
                                "message": "Container not found", "containerId": "abc"}


def test_rfc3339_is_utc_with_milliseconds_and_z() -> None:
    assert protocol.rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert protocol.rfc3339(1764756000.1234) == "2025-12-03T10:00:00.123Z"


def test_rfc3339_from_nanos_keeps_precision() -> None:
    assert protocol.rfc3339_from_nanos(1764756000_123456789) == "2025-12-03T10:00:00.123456789Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2025-12-03T10:00:00Z", 1764756000.0), ("2025-12-03T10:00:00.5Z", 1764756000.5),
     ("2025-12-03T11:00:00+01:00", 1764756000.0), (1764756000, 1764756000.0),
     ("1764756000.25", 1764756000.25)],
)
def test_parse_timestamp(value: str | int, expected: float) -> None:
    assert protocol.parse_timestamp(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday", "", True, -5, float("nan")])
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        protocol.parse_timestamp(value)  # type: ignore[arg-type]


def test_parse_timestamp_nanos_is_exact() -> None:
    assert protocol.parse_timestamp_nanos("2025-12-03T10:00:00.123456789Z") == 1764756000_123456789
    assert protocol.parse_timestamp_nanos("2025-12-03T10:00:00Z") == 1764756000_000000000
    assert protocol.parse_timestamp_nanos("2025-12-03T10:00:00.1Z") == 1764756000_100000000
