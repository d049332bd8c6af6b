"""The shared lifecycle, driven with plain calls and a fake clock."""

from typing import Any

from openpanel_ws.auth import AuthError, Principal
from openpanel_ws.connection import (
    Authenticated,
    Close,
    Connection,
    Dispatch,
    LifecycleConfig,
    PingFrame,
    Send,
    State,
)
from openpanel_ws.ratelimit import RateLimit


def verify(token: Any) -> Principal:
    if token == "good":
        return Principal("user-1")
    if token == "old":
        raise AuthError("Token expired")
    raise AuthError("Invalid token")


def conn(rate: RateLimit = RateLimit(10, 1.0), **kw: Any) -> Connection:
    return Connection("client-1", LifecycleConfig(rate_limit=rate, **kw), verify, now=0.0)


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, Send)]


def codes(actions: list[Any]) -> list[str]:
    return [m.get("code", m["type"]) for m in sent(actions)]


def test_auth_success() -> None:
    c = conn()
    actions = c.receive_text('{"type":"auth","token":"good"}', 0.1)
    assert sent(actions)[0]["type"] == "authenticated"
    assert sent(actions)[0]["userId"] == "user-1"
    assert sent(actions)[0]["clientId"] == "client-1"
    assert isinstance(actions[1], Authenticated) and actions[1].first
    assert c.state is State.OPEN


def test_bad_token_fails_and_closes_4001() -> None:
    c = conn()
    actions = c.receive_text('{"type":"auth","token":"bad"}', 0.1)
    assert sent(actions) == [{"type": "error", "code": "AUTH_FAILED", "message": "Invalid token"}]
    assert actions[-1] == Close(4001, "Invalid token")
    assert c.state is State.CLOSED
    assert c.receive_text('{"type":"auth","token":"good"}', 0.2) == []


def test_expired_token_says_so() -> None:
    actions = conn().receive_text('{"type":"auth","token":"old"}', 0.1)
    assert sent(actions)[0]["message"] == "Token expired"


def test_anything_before_auth_is_auth_required_and_not_processed() -> None:
    c = conn()
    for frame in ('{"type":"subscribe_logs","containerId":"x"}', '{"type":"ping"}'):
        actions = c.receive_text(frame, 0.1)
        assert codes(actions) == ["AUTH_REQUIRED"]
        assert not any(isinstance(a, Dispatch) for a in actions)
    assert c.state is State.AWAITING_AUTH


def test_auth_without_a_token_string_is_invalid_message_and_keeps_the_connection() -> None:
    c = conn()
    assert codes(c.receive_text('{"type":"auth"}', 0.1)) == ["INVALID_MESSAGE"]
    assert c.state is State.AWAITING_AUTH


def test_auth_timeout() -> None:
    c = conn(auth_timeout=30.0)
    assert c.next_deadline() == 30.0
    assert c.tick(29.9) == []
    actions = c.tick(30.0)
    assert codes(actions) == ["AUTH_TIMEOUT"]
    assert actions[-1] == Close(4001, "Authentication timeout")


def test_reauth_revalidates_and_a_bad_one_closes() -> None:
    c = conn()
    c.receive_text('{"type":"auth","token":"good"}', 0.1)
    again = c.receive_text('{"type":"auth","token":"good"}', 0.2)
    assert isinstance(again[1], Authenticated) and not again[1].first
    bad = c.receive_text('{"type":"auth","token":"bad"}', 0.3)
    assert codes(bad) == ["AUTH_FAILED"] and bad[-1] == Close(4001, "Invalid token")


def test_gateway_messages_are_dispatched_after_auth() -> None:
    c = conn()
    c.receive_text('{"type":"auth","token":"good"}', 0.1)
    actions = c.receive_text('{"type":"subscribe","interval":1000}', 0.2)
    assert actions == [Dispatch({"type": "subscribe", "interval": 1000})]


def test_client_ping_gets_pong() -> None:
    c = conn()
    c.receive_text('{"type":"auth","token":"good"}', 0.1)
    assert sent(c.receive_text('{"type":"ping"}', 0.2))[0]["type"] == "pong"


def test_invalid_frames_keep_the_connection() -> None:
    c = conn()
    c.receive_text('{"type":"auth","token":"good"}', 0.1)
    assert codes(c.receive_text("nope", 0.2)) == ["INVALID_MESSAGE"]
    assert codes(c.receive_binary(0.3)) == ["INVALID_MESSAGE"]
    assert c.state is State.OPEN


def test_rate_limit_admits_exactly_the_bucket_and_pong_is_exempt() -> None:
    c = conn(RateLimit(10, 1.0))
    c.receive_text('{"type":"auth","token":"good"}', 0.0)  # one token
    results = [codes(c.receive_text('{"type":"ping"}', 0.0)) for _ in range(12)]
    assert results.count(["pong"]) == 9
    assert results.count(["RATE_LIMIT"]) == 3
    assert c.receive_text('{"type":"pong"}', 0.0) == []  # exempt, and no error
    rejected = sent(c.receive_text('{"type":"ping"}', 0.0))[0]
    assert rejected == {"type": "error", "code": "RATE_LIMIT",
                        "message": "Rate limit exceeded. Please slow down."}


def test_flooding_closes_1008() -> None:
    c = conn(RateLimit(10, 1.0), flood_threshold=50, flood_window=10.0)
    c.receive_text('{"type":"auth","token":"good"}', 0.0)
    actions: list[Any] = []
    for _ in range(9 + 49):
        actions = c.receive_text('{"type":"ping"}', 0.0)
    assert codes(actions) == ["RATE_LIMIT"]
    actions = c.receive_text('{"type":"ping"}', 0.0)
    assert actions == [Close(1008, "message flooding")]
    assert c.state is State.CLOSED


def test_heartbeat_ping_then_timeout_4002() -> None:
    c = conn(heartbeat_interval=30.0, auth_timeout=1000.0)
    assert c.tick(10.0) == []
    ping = c.tick(30.0)
    assert sent(ping)[0]["type"] == "ping" and "timestamp" in sent(ping)[0]
    assert c.tick(60.0) == [Close(4002, "heartbeat timeout")]


def test_answered_heartbeat_keeps_the_connection() -> None:
    c = conn(heartbeat_interval=30.0, auth_timeout=1000.0)
    c.tick(30.0)
    c.receive_text('{"type":"pong","timestamp":"2025-12-03T10:00:00Z"}', 31.0)
    assert sent(c.tick(60.0))[0]["type"] == "ping"
    c.receive_pong_frame()  # a protocol-level pong counts too
    assert sent(c.tick(90.0))[0]["type"] == "ping"
    assert c.state is not State.CLOSED


def test_each_json_ping_comes_with_a_ping_frame() -> None:
    c = conn(heartbeat_interval=30.0, auth_timeout=1000.0)
    actions = c.tick(30.0)
    assert [type(a) for a in actions] == [Send, PingFrame]


def test_a_ping_frame_answer_alone_keeps_the_connection() -> None:
    # What a browser does: it never answers the JSON ping, only the ping frame.
    c = conn(heartbeat_interval=30.0, auth_timeout=1000.0)
    for t in (30.0, 60.0, 90.0):
        assert PingFrame() in c.tick(t)
        c.receive_pong_frame()
    assert c.state is not State.CLOSED


def test_any_message_counts_as_an_answer() -> None:
    c = conn(heartbeat_interval=30.0, auth_timeout=1000.0)
    c.receive_text('{"type":"auth","token":"good"}', 0.1)
    c.tick(30.0)
    c.receive_text('{"type":"subscribe"}', 31.0)
    assert PingFrame() in c.tick(60.0)
    c.receive_text("not json", 61.0)  # even an invalid one
    assert PingFrame() in c.tick(90.0)
    c.receive_binary(91.0)
    assert PingFrame() in c.tick(120.0)
    c.receive_ping_frame()
    assert PingFrame() in c.tick(150.0)
    assert c.tick(180.0) == [Close(4002, "heartbeat timeout")]


def test_close_ends_the_lifecycle_nothing_is_sent_or_dispatched_after() -> None:
    c = conn()
    c.receive_text('{"type":"auth","token":"good"}', 0.0)
    c.close()
    assert c.state is State.CLOSED
    assert c.receive_text('{"type":"ping"}', 1.0) == []
    assert c.receive_binary(1.0) == []
    assert c.tick(10_000.0) == []
