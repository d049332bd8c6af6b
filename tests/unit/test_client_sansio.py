"""The client's sans-I/O core: backoff, close policy, outbound pacing, log resume."""

from __future__ import annotations

import time

import pytest

from openpanel_ws.client.messages import (
    AuthenticationError,
    ContainerNotFound,
    MetricsSample,
    PermissionDenied,
    RateLimited,
    ServerError,
    StatsSample,
    error_from_message,
)
from openpanel_ws.client.outbox import Input, Outbox, split_input
from openpanel_ws.client.sansio import Backoff, BackoffPolicy, should_reconnect
from openpanel_ws.client.subscriptions import LogCursor
from openpanel_ws.config import DEFAULT_RATE_LIMITS
from openpanel_ws.protocol import rfc3339_from_nanos
from openpanel_ws.ratelimit import RateLimit, TokenBucket

# --- backoff -------------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    b = Backoff(BackoffPolicy(base=1.0, cap=30.0), rand=lambda: 1.0)
    assert [b.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_backoff_full_jitter_is_uniform_below_the_ceiling() -> None:
    b = Backoff(BackoffPolicy(base=1.0, cap=30.0), rand=lambda: 0.25)
    assert [b.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_backoff_reset_and_unlimited_by_default() -> None:
    b = Backoff(rand=lambda: 1.0)
    delays = [b.next_delay() for _ in range(1000)]
    assert None not in delays and delays[-1] == 30.0
    b.reset()
    assert b.next_delay() == 1.0


def test_backoff_max_attempts() -> None:
    b = Backoff(BackoffPolicy(max_attempts=2), rand=lambda: 0.5)
    assert b.next_delay() is not None
    assert b.next_delay() is not None
    assert b.next_delay() is None


@pytest.mark.parametrize(("code", "expected"), [
    (4001, False), (1008, False), (1009, False),
    (1000, True), (1001, True), (1006, True), (1011, True), (1013, True), (4002, True), (None, True),
])
def test_close_code_policy(code: int | None, expected: bool) -> None:
    assert should_reconnect(code) is expected


# --- outbound pacing -----------------------------------------------------------------


def test_outbox_sends_at_once_while_tokens_last_then_waits() -> None:
    box = Outbox(RateLimit(10, 1.0), now=0.0)
    for i in range(12):
        box.push({"type": "resize", "cols": i, "rows": 1})
    sent = []
    while True:
        msg, wait = box.pop(0.0)
        if msg is None:
            break
        sent.append(msg)
    assert len(sent) == 9  # one token spare below the server's capacity of 10
    assert 0 < wait < 1.0
    msg, _ = box.pop(wait)
    assert msg is not None and msg["cols"] == 9


def test_outbox_coalesces_held_keys_and_never_trips_the_server_bucket() -> None:
    """200 keystrokes in one second, as the server's own bucket would count them."""
    box = Outbox(DEFAULT_RATE_LIMITS["terminal"], now=0.0)
    server = TokenBucket(DEFAULT_RATE_LIMITS["terminal"], 0.0)
    typed = "".join(chr(ord("a") + i % 26) for i in range(200))
    received = []
    now, next_key, frames = 0.0, 0, 0
    while next_key < len(typed) or len(box):
        if next_key < len(typed) and next_key * 0.005 <= now:
            box.push(Input(typed[next_key]))
            next_key += 1
        msg, _ = box.pop(now)
        if msg is not None:
            assert server.try_take(now), f"server would reject frame {frames} at t={now:.3f}"
            frames += 1
            received.append(msg["data"])
        now += 0.001
    assert "".join(received) == typed
    assert frames < 30  # coalesced, not one frame per key


def test_outbox_keeps_order_between_input_and_control_messages() -> None:
    box = Outbox(RateLimit(10, 1.0), now=0.0)
    box.push(Input("a"))
    box.push(Input("b"))
    box.push({"type": "resize", "cols": 80, "rows": 24})
    box.push(Input("c"))
    out = [box.pop(0.0)[0] for _ in range(3)]
    assert out == [{"type": "input", "data": "ab"}, {"type": "resize", "cols": 80, "rows": 24},
                   {"type": "input", "data": "c"}]


def test_outbox_pong_needs_no_token_and_goes_first() -> None:
    box = Outbox(RateLimit(1, 60.0), now=0.0)
    box.push({"type": "auth", "token": "t"})
    assert box.pop(0.0)[0] == {"type": "auth", "token": "t"}
    box.push({"type": "ping"})
    box.push_free({"type": "pong"})
    assert box.pop(0.0)[0] == {"type": "pong"}
    msg, wait = box.pop(0.0)
    assert msg is None and wait > 1


def test_outbox_caps_merged_input_size() -> None:
    box = Outbox(RateLimit(10, 1.0), now=0.0)
    for item in split_input("x" * (Outbox.MAX_INPUT_CHARS * 2 + 5)):
        box.push(item)
    sizes = []
    while True:
        msg, _ = box.pop(100.0)
        if msg is None:
            break
        sizes.append(len(msg["data"]))
    assert sizes == [Outbox.MAX_INPUT_CHARS, Outbox.MAX_INPUT_CHARS, 5]


# --- log resume ----------------------------------------------------------------------


def ts(ns: int) -> str:
    return rfc3339_from_nanos(1_700_000_000_000_000_000 + ns)


def test_log_cursor_first_subscription_has_no_resume_fields() -> None:
    assert LogCursor().resume() == {}


def test_log_cursor_resume_asks_from_before_the_last_line_with_all_lines() -> None:
    c = LogCursor()
    assert c.accept(ts(5_000_000_000), "stdout", "a")
    resume = c.resume()
    assert resume["tail"] == "all"
    assert resume["since"] == ts(4_000_000_000)


def test_log_cursor_drops_replayed_lines_and_keeps_new_ones() -> None:
    c = LogCursor()
    lines = [(ts(i * 1000), "stdout", f"line {i}") for i in range(10)]
    for line in lines[:6]:
        assert c.accept(*line)
    c.resume()
    # the server replays from before the last line, then continues
    shown = [line for line in lines if c.accept(*line)]
    assert shown == lines[6:]
    assert c.dropped == 6


def test_log_cursor_same_timestamp_lines_are_counted_not_merged() -> None:
    c = LogCursor()
    t = ts(1)
    assert c.accept(t, "stdout", "same")
    assert c.accept(t, "stdout", "same")  # two identical lines at one timestamp
    c.resume()
    assert not c.accept(t, "stdout", "same")
    assert not c.accept(t, "stdout", "same")
    assert c.accept(t, "stdout", "same")  # a third one is new
    assert c.accept(t, "stderr", "other")


def test_log_cursor_without_resume_keeps_equal_timestamps() -> None:
    c = LogCursor()
    assert c.accept(ts(1), "stdout", "x")
    assert c.accept(ts(1), "stdout", "x")


# --- messages ------------------------------------------------------------------------


def test_errors_become_typed_exceptions_with_one_line_texts() -> None:
    err = error_from_message({"type": "error", "code": "CONTAINER_NOT_FOUND",
                              "message": "Container not found", "containerId": "web"})
    assert isinstance(err, ContainerNotFound) and str(err) == "container 'web' not found"
    err = error_from_message({"type": "error", "code": "AUTH_FAILED", "message": "Token expired"})
    assert isinstance(err, AuthenticationError) and str(err) == "authentication failed: token expired"
    # the specification's code-less example is an auth failure too
    assert isinstance(error_from_message({"type": "error", "message": "Invalid token"}),
                      AuthenticationError)
    assert isinstance(error_from_message({"type": "error", "code": "RATE_LIMIT", "message": "x"}),
                      RateLimited)
    err = error_from_message({"type": "error", "code": "PERMISSION_DENIED", "message": "Permission denied",
                              "containerId": "db"})
    assert isinstance(err, PermissionDenied) and str(err) == "permission denied: container 'db'"
    other = error_from_message({"type": "error", "code": "SOMETHING_NEW", "message": "Odd"})
    assert type(other) is ServerError and other.code == "SOMETHING_NEW"


def test_stats_and_metrics_parse_the_specification_examples() -> None:
    s = StatsSample.parse({"type": "stats", "containerId": "c", "timestamp": "t", "stats": {
        "cpu": {"usage": 45.2, "percent": 45.2},
        "memory": {"usage": 524288000, "limit": 1073741824, "percent": 48.8},
        "network": {"rx_bytes": 1024000, "tx_bytes": 2048000}}})
    assert (s.cpu_percent, s.memory_usage, s.memory_percent, s.rx_bytes) == (45.2, 524288000, 48.8, 1024000)
    m = MetricsSample.parse({"type": "metrics", "timestamp": "t", "system": {
        "cpu": {"usage": 25.5, "cores": 4}, "memory": {"total": 8, "used": 4, "free": 4, "percent": 50.0},
        "disk": {"total": 10, "used": 5, "free": 5, "percent": 50.0},
        "network": {"rx_bytes": 1, "tx_bytes": 2}}})
    assert (m.cpu_percent, m.cores, m.memory["percent"], m.network["tx_bytes"]) == (25.5, 4, 50.0, 2)
    # missing parts do not crash a consumer
    assert StatsSample.parse({"type": "stats"}).cpu_percent == 0.0


def test_permission_denied_text_is_not_doubled() -> None:
    err = error_from_message({"type": "error", "code": "PERMISSION_DENIED",
                              "message": "Permission denied: the terminal needs the admin role"})
    assert str(err) == "permission denied: the terminal needs the admin role"


def test_token_expiry_is_read_without_verification() -> None:
    from openpanel_ws.auth import issue_token
    from openpanel_ws.client.sansio import refresh_delay, token_expiry

    token = issue_token("s" * 32, subject="u", ttl_seconds=100)
    exp = token_expiry(token)
    assert exp is not None and abs(exp - (time.time() + 100)) < 5
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.%%%.c") is None
    assert token_expiry("a.eyJzdWIiOiJ1In0.c") is None  # {"sub":"u"}: no exp
    assert token_expiry("a.eyJleHAiOnRydWV9.c") is None  # {"exp":true}
    assert refresh_delay(1000.0, 900.0, margin=30.0) == 70.0
    assert refresh_delay(1000.0, 990.0, margin=30.0) == 1.0  # never a busy loop
