"""The client's sans-I/O core: the connection state machine, backoff, close policy,
outbound pacing, log resume; plain calls, an injected clock, no sockets."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from openpanel_ws.client.actions import (
    Action,
    AuthAccepted,
    Disconnect,
    FetchToken,
    Finish,
    Retry,
    Shutdown,
    Status,
    UnhandledError,
)
from openpanel_ws.client.messages import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionFailed,
    ContainerNotFound,
    MetricsSample,
    PermissionDenied,
    RateLimited,
    ServerError,
    StatsSample,
    error_from_message,
)
from openpanel_ws.client.outbox import Input, Outbox, split_input
from openpanel_ws.client.policy import BackoffPolicy, should_reconnect
from openpanel_ws.client.sansio import ClientConnection, ClientSubscription, ConnectionConfig, ConnectionState
from openpanel_ws.client.subscriptions import LogCursor
from openpanel_ws.client.terminal import TerminalSubscription
from openpanel_ws.protocol import DEFAULT_RATE_LIMITS, CloseCode, rfc3339_from_nanos
from openpanel_ws.ratelimit import RateLimit, TokenBucket

# --- backoff -------------------------------------------------------------------------


# The policy's schedule is the one `openpanel_ws.backoff.Backoff` with full jitter: the
# delay is ceiling * (1 - rand()), so rand 0.0 gives the ceiling.


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    b = BackoffPolicy(base=1.0, cap=30.0).backoff(rand=lambda: 0.0)
    assert [b.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_backoff_full_jitter_is_uniform_below_the_ceiling() -> None:
    b = BackoffPolicy(base=1.0, cap=30.0).backoff(rand=lambda: 0.75)
    assert [b.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_backoff_reset_and_unlimited_by_default() -> None:
    b = BackoffPolicy().backoff(rand=lambda: 0.0)
    delays = [b.next_delay() for _ in range(1000)]
    assert None not in delays and delays[-1] == 30.0
    b.reset()
    assert b.next_delay() == 1.0


def test_backoff_max_attempts() -> None:
    b = BackoffPolicy(max_attempts=2).backoff(rand=lambda: 0.5)
    assert b.next_delay() is not None
    assert b.next_delay() is not None
    assert b.next_delay() is None


def test_backoff_cap_below_base_caps_every_delay() -> None:
    b = BackoffPolicy(base=5.0, cap=2.0).backoff(rand=lambda: 0.0)
    assert [b.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(("base", "cap"), [(0.0, 30.0), (1.0, 0.0), (-1.0, 30.0)])
def test_backoff_policy_needs_positive_delays(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        BackoffPolicy(base=base, cap=cap)


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
    now, next_key, messages = 0.0, 0, 0
    while next_key < len(typed) or len(box):
        if next_key < len(typed) and next_key * 0.005 <= now:
            box.push(Input(typed[next_key]))
            next_key += 1
        msg, _ = box.pop(now)
        if msg is not None:
            assert server.try_take(now), f"server would reject message {messages} at t={now:.3f}"
            messages += 1
            received.append(msg["data"])
        now += 0.001
    assert "".join(received) == typed
    assert messages < 30  # coalesced, not one message per key


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


# --- ClientConnection: one gateway connection, driven by plain calls -------------------

WALL_NS = 1_764_200_000_000_000_000  # our wall clock, unix nanoseconds
URL = "ws://h:1/ws/containers"


def make_conn(**config: Any) -> ClientConnection:
    config.setdefault("backoff", BackoffPolicy(base=1.0, cap=4.0))
    return ClientConnection(ConnectionConfig(URL, **config), wall_clock=lambda: WALL_NS, rand=lambda: 0.0)


def welcome(offset_s: float = 0.0) -> str:
    return orjson.dumps({"type": "connected", "clientId": "c1",
                         "timestamp": rfc3339_from_nanos(WALL_NS + int(offset_s * 1e9))}).decode()


def text(msg: dict[str, Any]) -> str:
    return orjson.dumps(msg).decode()


def sent(conn: ClientConnection, now: float = 0.0) -> list[dict[str, Any]]:
    out = []
    while True:
        msg, _ = conn.next_message(now)
        if msg is None:
            return out
        out.append(msg)


def open_conn(conn: ClientConnection, token: str = "tok", now: float = 0.0) -> list[Action]:
    """socket opened -> welcome -> token -> authenticated."""
    conn.socket_opened()
    assert conn.receive_text(welcome(), now) == [FetchToken()]
    conn.send_auth(token, now)
    return conn.receive_text(text({"type": "authenticated", "userId": "u1"}), now)


class Probe(ClientSubscription):
    """A subscription that records what the connection does to it."""

    def __init__(self, container: str = "web", claims: bool = True) -> None:
        super().__init__()
        self.container = container
        self.claims = claims
        self.seen: list[dict[str, Any]] = []
        self.disconnects: list[tuple[str, int | None]] = []
        self.deadline: float | None = None

    def subscribe_messages(self) -> list[dict[str, Any]]:
        return [{"type": "subscribe_stats", "containerId": self.container}]

    def unsubscribe_messages(self) -> list[dict[str, Any]]:
        return [{"type": "unsubscribe_stats", "containerId": self.container}]

    def handle(self, msg: dict[str, Any], now: float, out: list[Action]) -> bool:
        self.seen.append(msg)
        return self.claims

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        if err.container_id == self.container:
            self.end(out, err)
            return True
        return False

    def on_disconnect(self, why: str, code: int | None, now: float, out: list[Action]) -> None:
        self.disconnects.append((why, code))

    def next_deadline(self) -> float | None:
        return self.deadline

    def tick(self, now: float, out: list[Action]) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.end(out)


def test_connection_starts_idle_and_sends_nothing() -> None:
    conn = make_conn()
    assert conn.state is ConnectionState.IDLE and not conn.is_open and not conn.closed
    conn.send({"type": "subscribe"})
    assert conn.next_message(0.0) == (None, float("inf")) and conn.pending() == 0
    assert conn.receive_text(text({"type": "metrics"}), 0.0) == []  # no socket: ignored


def test_welcome_asks_for_a_token_and_auth_is_the_first_message() -> None:
    conn = make_conn()
    conn.socket_opened()
    assert conn.state is ConnectionState.AWAITING_WELCOME
    assert conn.receive_text(welcome(offset_s=2.5), 0.0) == [FetchToken()]
    assert conn.state is ConnectionState.AUTHENTICATING
    assert conn.server_offset == pytest.approx(2.5, abs=1e-6)
    conn.send({"type": "subscribe_stats", "containerId": "early"})  # queued behind auth
    conn.send_auth("tok", 0.0)
    conn.send({"type": "subscribe_stats", "containerId": "later"})
    assert [m.get("containerId", m["type"]) for m in sent(conn)] == ["auth", "later"]
    assert conn.token == "tok"


def test_welcome_with_an_unreadable_timestamp_keeps_the_offset_at_zero() -> None:
    conn = make_conn()
    conn.socket_opened()
    assert conn.receive_text(text({"type": "connected", "timestamp": "yesterday"}), 0.0) == [FetchToken()]
    assert conn.server_offset == 0.0


@pytest.mark.parametrize("first", [text({"type": "ping"}), "not json", "[1]"])
def test_anything_but_a_welcome_first_drops_the_socket(first: str) -> None:
    conn = make_conn()
    conn.socket_opened()
    [action] = conn.receive_text(first, 0.0)
    assert isinstance(action, Disconnect) and action.why.startswith("unexpected first message")
    assert action.code is None
    conn.socket_opened()
    assert conn.receive_binary(0.0) == [Disconnect("unexpected first message None")]


def test_authenticated_opens_and_sends_every_subscription() -> None:
    conn = make_conn()
    a, b = Probe("a"), Probe("b")
    conn.add(a)
    conn.add(b)
    assert conn.pending() == 0  # nothing goes out before auth
    actions = open_conn(conn)
    assert actions == [AuthAccepted("u1")]  # first connection: no "reconnected"
    assert conn.is_open and conn.user_id == "u1" and conn.ever_connected
    assert [m["type"] for m in sent(conn)] == ["auth", "subscribe_stats", "subscribe_stats"]


def test_a_ping_is_answered_with_a_pong_that_needs_no_token() -> None:
    conn = make_conn(rate_limit=RateLimit(2, 1.0))
    conn.socket_opened()
    conn.receive_text(welcome(), 0.0)
    conn.send_auth("tok", 0.0)
    assert conn.receive_text(text({"type": "ping"}), 0.0) == []  # during auth too
    assert [m["type"] for m in sent(conn)] == ["pong", "auth"]
    conn.receive_text(text({"type": "authenticated", "userId": "u"}), 0.0)
    for _ in range(3):
        conn.send({"type": "subscribe"})
    assert conn.receive_text(text({"type": "ping"}), 0.0) == []
    msg, wait = conn.next_message(0.0)
    assert msg is not None and msg["type"] == "pong" and "timestamp" in msg
    assert wait == 0.0


def test_auth_failure_during_auth_is_final() -> None:
    conn = make_conn()
    sub = Probe()
    conn.add(sub)
    conn.socket_opened()
    conn.receive_text(welcome(), 0.0)
    conn.send_auth("bad", 0.0)
    ignored = conn.receive_text(text({"type": "subscribed_stats", "containerId": "web"}), 0.0)
    assert ignored == [] and sub.seen == []  # before auth nothing reaches subscriptions
    auth_failed = {"type": "error", "code": "AUTH_FAILED", "message": "Invalid token"}
    actions = conn.receive_text(text(auth_failed), 0.0)
    finish, shutdown = actions
    assert isinstance(finish, Finish) and finish.subscription is sub
    assert isinstance(finish.error, AuthenticationError)
    assert shutdown == Shutdown()
    assert conn.closed and sub.ended and conn.pending() == 0


def test_another_error_during_auth_drops_the_socket_to_retry() -> None:
    conn = make_conn()
    conn.socket_opened()
    conn.receive_text(welcome(), 0.0)
    conn.send_auth("tok", 0.0)
    [action] = conn.receive_text(text({"type": "error", "code": "RATE_LIMIT", "message": "slow"}), 0.0)
    assert isinstance(action, Disconnect) and action.why.startswith("auth refused: ")
    assert not conn.closed


def test_open_connection_routes_messages_until_one_subscription_claims_it() -> None:
    conn = make_conn()
    first, second = Probe("a", claims=False), Probe("b", claims=True)
    third = Probe("c")
    for sub in (first, second, third):
        conn.add(sub)
    open_conn(conn)
    msg = {"type": "stats", "containerId": "b"}
    assert conn.receive_text(text(msg), 1.0) == []
    assert first.seen == [msg] and second.seen == [msg] and third.seen == []
    assert conn.receive_text(text({"noType": 1}), 1.0) == []
    assert conn.receive_binary(1.0) == []  # ignored once open
    assert second.seen == [msg]


def test_server_errors_once_open() -> None:
    conn = make_conn()
    sub = Probe("web")
    conn.add(sub)
    open_conn(conn)
    [unclaimed] = conn.receive_text(text({"type": "error", "code": "RATE_LIMIT", "message": "slow"}), 0.0)
    assert isinstance(unclaimed, UnhandledError) and isinstance(unclaimed.error, RateLimited)
    [claimed] = conn.receive_text(text({"type": "error", "code": "CONTAINER_NOT_FOUND",
                                        "message": "Container not found", "containerId": "web"}), 0.0)
    assert isinstance(claimed, Finish) and isinstance(claimed.error, ContainerNotFound)
    assert conn.is_open  # one subscription ended, the connection goes on
    expired = {"type": "error", "code": "AUTH_FAILED", "message": "Token expired"}
    actions = conn.receive_text(text(expired), 0.0)
    assert actions == [Shutdown()]  # the only subscription had ended already
    assert conn.closed


@pytest.mark.parametrize(("code", "reason", "error"), [
    (CloseCode.AUTH_FAILED, "", AuthenticationError),
    (CloseCode.POLICY_VIOLATION, "message flooding", ConnectionClosed),
    (CloseCode.MESSAGE_TOO_BIG, "", ConnectionClosed),
])
def test_final_close_codes_fail_every_subscription(code: int, reason: str, error: type) -> None:
    conn = make_conn()
    sub = Probe()
    conn.add(sub)
    open_conn(conn)
    finish, shutdown = conn.receive_close(code, reason)
    assert isinstance(finish, Finish) and isinstance(finish.error, error) and shutdown == Shutdown()
    assert conn.closed


def test_auth_close_without_reason_says_invalid_token() -> None:
    conn = make_conn()
    conn.add(sub := Probe())
    open_conn(conn)
    finish, _ = conn.receive_close(CloseCode.AUTH_FAILED, "")
    assert isinstance(finish, Finish) and isinstance(finish.error, AuthenticationError)
    assert "invalid token" in str(finish.error).lower() and sub.ended


@pytest.mark.parametrize(("code", "reason", "why", "expected"), [
    (None, "", "connection closed (code 1006)", 1006),
    (1001, "", "connection closed (code 1001)", 1001),
    (1012, "reload", "connection closed (code 1012: reload)", 1012),
    (int(CloseCode.HEARTBEAT_TIMEOUT), "heartbeat timeout",
     "connection closed (code 4002: heartbeat timeout)", 4002),
])
def test_transient_close_codes_drop_the_socket(code: int | None, reason: str, why: str,
                                               expected: int) -> None:
    conn = make_conn()
    open_conn(conn)
    assert conn.receive_close(code, reason) == [Disconnect(why, expected)]
    assert not conn.closed


def test_receive_timeout_is_the_connect_timeout_until_open_then_the_idle_timeout() -> None:
    conn = make_conn(connect_timeout=7.0, idle_timeout=45.0)
    conn.socket_opened()
    assert conn.receive_timeout() == 7.0
    assert conn.timed_out() == [Disconnect("no message from the server for 7s")]
    open_conn(conn)
    assert conn.receive_timeout() == 45.0
    assert conn.timed_out() == [Disconnect("no message from the server for 45s")]
    assert make_conn(idle_timeout=None).receive_timeout() == 15.0  # default connect timeout


def test_connection_lost_tells_subscriptions_then_retries_with_backoff() -> None:
    conn = make_conn()
    sub = Probe()
    conn.add(sub)
    open_conn(conn)
    conn.socket_closed()
    assert not conn.is_open and conn.pending() == 0
    conn.send({"type": "subscribe"})  # nowhere to go: dropped
    assert conn.pending() == 0
    actions = conn.connection_lost("connection closed (code 1006)", 1006, 5.0)
    assert sub.disconnects == [("connection closed (code 1006)", 1006)]
    assert actions == [Status(f"{URL}: connection closed (code 1006); reconnecting in 1.0s"), Retry(1.0)]
    assert conn.state is ConnectionState.IDLE
    # the next attempts back off further, up to the cap
    delays = []
    for _ in range(4):
        conn.socket_opened()
        *_, retry = conn.connection_lost("connection refused", None, 6.0)
        assert isinstance(retry, Retry)
        delays.append(retry.delay)
    assert delays == [2.0, 4.0, 4.0, 4.0]


def test_a_successful_auth_resets_the_backoff_and_says_reconnected() -> None:
    conn = make_conn()
    conn.add(Probe())
    open_conn(conn)
    conn.connection_lost("lost", None, 0.0)
    conn.connection_lost("refused", None, 0.0)
    assert conn.backoff.attempts == 2
    actions = open_conn(conn)
    assert actions == [Status(f"{URL}: reconnected"), AuthAccepted("u1")]
    assert conn.backoff.attempts == 0
    # subscriptions are sent again on the new socket
    assert [m["type"] for m in sent(conn)] == ["auth", "subscribe_stats"]


def test_gives_up_after_max_attempts() -> None:
    conn = make_conn(backoff=BackoffPolicy(max_attempts=1))
    conn.add(sub := Probe())
    assert isinstance(conn.connection_lost("refused", None, 0.0)[-1], Retry)
    finish, shutdown = conn.connection_lost("refused", None, 0.0)
    assert isinstance(finish, Finish) and isinstance(finish.error, ConnectionFailed)
    assert str(finish.error) == f"{URL}: gave up after 1 attempts (refused)"
    assert shutdown == Shutdown() and conn.closed and sub.ended


def test_no_reconnect_fails_on_the_first_loss() -> None:
    conn = make_conn(reconnect=False)
    conn.add(Probe())
    open_conn(conn)
    finish, shutdown = conn.connection_lost("lost", 1006, 0.0)
    assert isinstance(finish, Finish) and isinstance(finish.error, ConnectionFailed)
    assert shutdown == Shutdown()
    assert str(finish.error) == f"cannot connect to {URL}: lost" and conn.closed


def test_without_wait_for_server_only_the_first_attempt_is_final() -> None:
    conn = make_conn(wait_for_server=False)
    conn.add(Probe())
    finish, _ = conn.connection_lost("connection refused", None, 0.0)
    assert isinstance(finish, Finish) and isinstance(finish.error, ConnectionFailed)
    conn = make_conn(wait_for_server=False)
    conn.add(Probe())
    open_conn(conn)
    assert isinstance(conn.connection_lost("lost", None, 0.0)[-1], Retry)  # once connected


def test_nothing_left_to_reconnect_for_ends_quietly() -> None:
    conn = make_conn()
    sub = Probe()
    conn.add(sub)
    open_conn(conn)
    sub.end([])
    assert conn.connection_lost("lost", None, 0.0) == [Shutdown()]
    assert conn.closed
    assert conn.connection_lost("lost", None, 0.0) == []  # nothing after the end


def test_add_while_open_subscribes_at_once_and_remove_keeps_what_others_use() -> None:
    conn = make_conn()
    open_conn(conn)
    sent(conn)
    one, two, other = Probe("web"), Probe("web"), Probe("db")
    for sub in (one, two, other):
        conn.add(sub)
    assert [m["containerId"] for m in sent(conn)] == ["web", "web", "db"]
    assert conn.remove(one) is False
    assert sent(conn) == []  # `two` still wants web's stats
    assert conn.remove(two) is False
    assert sent(conn) == [{"type": "unsubscribe_stats", "containerId": "web"}]
    assert conn.remove(other) is True  # the last one: the link may close
    assert sent(conn) == []
    assert conn.remove(other) is True  # twice is harmless


def unsigned_token(exp: float) -> str:
    """A JWT-shaped token whose `exp` the client reads (it never verifies it)."""
    payload = base64.urlsafe_b64encode(orjson.dumps({"sub": "u1", "exp": exp})).rstrip(b"=").decode()
    return f"e30.{payload}.sig"


def test_refresh_is_timed_from_the_token_exp_on_the_server_clock() -> None:
    now_s = WALL_NS // 1_000_000_000
    conn = make_conn(refresh_margin=30.0)
    assert conn.refresh_delay() is None  # no token yet
    conn.socket_opened()
    conn.receive_text(welcome(offset_s=10.0), 0.0)  # the server is 10 s ahead
    token = unsigned_token(now_s + 100)
    conn.send_auth(token, 0.0)
    conn.receive_text(text({"type": "authenticated", "userId": "u1"}), 0.0)
    sent(conn)
    delay = conn.refresh_delay()
    assert delay == pytest.approx(100 - 30 - 10, abs=1.0)
    assert conn.refresh_token(token) is False  # nothing newer: no auth
    assert sent(conn) == []
    fresh = unsigned_token(now_s + 200)
    assert conn.refresh_token(fresh) is True
    assert sent(conn) == [{"type": "auth", "token": fresh}]
    assert conn.token == fresh


def test_a_token_without_exp_is_never_refreshed() -> None:
    conn = make_conn()
    open_conn(conn, token="opaque")
    assert conn.refresh_delay() is None


def test_close_ends_every_subscription_quietly() -> None:
    conn = make_conn()
    a, b = Probe("a"), Probe("b")
    conn.add(a)
    conn.add(b)
    open_conn(conn)
    actions = conn.close()
    assert actions == [Finish(a, None), Finish(b, None)]
    assert conn.closed and conn.pending() == 0
    assert conn.receive_text(text({"type": "ping"}), 0.0) == []
    conn.socket_closed()
    assert conn.closed  # a closing socket does not reopen a closed link


def test_deadlines_and_tick_go_to_the_subscriptions() -> None:
    conn = make_conn()
    a, b = Probe("a"), Probe("b")
    conn.add(a)
    conn.add(b)
    assert conn.next_deadline() is None
    a.deadline, b.deadline = 9.0, 4.0
    assert conn.next_deadline() == 4.0
    assert conn.tick(3.9) == []
    assert conn.tick(4.0) == [Finish(b, None)]
    assert conn.next_deadline() == 9.0


def test_terminal_keys_and_size_are_held_until_open() -> None:
    conn = make_conn()
    term = TerminalSubscription("web", None, None, None)
    conn.add(term)
    conn.send_all(term.write("ls\n", link_open=conn.is_open))
    conn.send_all(term.resize(5000, 0, link_open=conn.is_open))
    assert term.held == [Input("ls\n")] and term.size == (1000, 1)  # clamped to the gateway's range
    assert conn.pending() == 0
    open_conn(conn)
    sent(conn)
    conn.send_all(term.write("pwd\n", link_open=conn.is_open))
    conn.send_all(term.resize(80, 24, link_open=conn.is_open))
    assert sent(conn) == [{"type": "input", "data": "pwd\n"},
                            {"type": "resize", "cols": 80, "rows": 24}]
    term.resuming = True  # being reattached: held again
    conn.send_all(term.write("x", link_open=conn.is_open))
    conn.send_all(term.resize(100, 30, link_open=conn.is_open))
    assert sent(conn) == [] and term.held[-1] == Input("x") and term.size == (100, 30)
