"""Property tests (hypothesis): every parser and request validator either returns a
result or raises its module's own error type, never anything else."""

from __future__ import annotations

import base64
import contextlib
import json
import string
import time
from typing import Any

import jwt
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openpanel_ws import protocol
from openpanel_ws.auth import AuthError, JwtSettings, Principal, TokenVerifier, principal_from_claims
from openpanel_ws.connection import Action, Connection, LifecycleConfig
from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.eventdata import event_key, event_nanos
from openpanel_ws.engine.events import EventsHub
from openpanel_ws.engine.logs import ContainerLogLine, LogParser, parse_all
from openpanel_ws.engine.stats import ContainerStats, compute, is_running_sample
from openpanel_ws.engine.streams import LineSplitter
from openpanel_ws.gateways.containers.requests import parse_tail
from openpanel_ws.gateways.containers.stats import stats_message
from openpanel_ws.gateways.logs.event_text import describe
from openpanel_ws.gateways.logs.fanout import scope_allows
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.gateways.terminal.messages import parse_input, parse_open, parse_resize
from openpanel_ws.protocol import ProtocolError
from openpanel_ws.ratelimit import RateLimit

SECRET = "fuzz-secret-" + "y" * 32
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# JSON values as a client (or an engine) might send them.
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
FIELDS = ["type", "containerId", "tail", "since", "interval", "filters", "token", "shell",
          "cols", "rows", "data", "command", "tty", "sessionId", "Type", "Action", "Actor",
          "ID", "Attributes", "name", "timeNano", "time", "status", "id", "image"]
messages = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8)

since_values = (json_values
                | st.floats() | st.integers()
                | st.datetimes().map(lambda d: d.isoformat() + "Z")
                | st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,12})?\Z")
                | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{1,20}(Z|[+-][0-9]{2}:[0-9]{2})?\Z"))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_decode(text: str) -> None:
    try:
        message = protocol.decode(text)
    except ProtocolError as exc:
        assert exc.code is protocol.ErrorCode.INVALID_MESSAGE
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


@FUZZ
@given(since_values)
def test_parse_since(value: Any) -> None:
    try:
        nanos = protocol.parse_since(value)
    except ProtocolError as exc:
        assert exc.field == "since"
        return
    assert protocol.SINCE_MIN_NANOS <= nanos <= protocol.SINCE_MAX_NANOS


@FUZZ
@given(st.integers(min_value=0, max_value=253402300799), st.integers(0, 999_999_999))
def test_parse_since_is_exact_for_numeric_text(seconds: int, nanos: int) -> None:
    assert protocol.parse_since(f"{seconds}.{nanos:09d}") == seconds * 1_000_000_000 + nanos
    stamp = protocol.rfc3339_from_nanos(seconds * 1_000_000_000 + nanos)
    assert protocol.parse_since(stamp) == seconds * 1_000_000_000 + nanos


@FUZZ
@given(messages)
def test_request_validators(msg: dict[str, Any]) -> None:
    for validate in (parse_tail, protocol.interval_ms, parse_open, parse_resize, parse_input,
                     lambda m: protocol.require_str(m, "containerId"),
                     lambda m: EventFilter.parse(m.get("filters"))):
        try:
            validate(msg)
        except ProtocolError as exc:
            assert exc.code is protocol.ErrorCode.INVALID_MESSAGE and exc.field


@FUZZ
@given(messages, messages)
def test_event_filter_and_scope_on_any_event(raw_filter: dict[str, Any], event: dict[str, Any]) -> None:
    try:
        flt = EventFilter.parse(raw_filter)
    except ProtocolError:
        flt = EventFilter({})
    assert isinstance(flt.matches(event), bool)
    assert isinstance(scope_allows(("web-*",), event), bool)
    assert scope_allows(None, event) is True
    describe(event)  # None or a line, never an exception
    event_nanos(event)
    event_key(event)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=12), st.booleans())
def test_log_demux(chunks: list[bytes], tty: bool) -> None:
    parser = LogParser(tty=tty, max_line_bytes=32)
    lines: list[ContainerLogLine] = []
    for chunk in chunks:
        lines.extend(parser.feed(chunk))
    lines.extend(parser.flush())
    assert all(line.stream in ("stdout", "stderr") for line in lines)
    assert parse_all(b"".join(chunks), tty=tty) is not None


frame_headers = st.tuples(st.sampled_from([0, 1, 2, 3, 7]),
                          st.integers(0, 80)).map(lambda t: bytes([t[0], 0, 0, 0]) + t[1].to_bytes(4, "big"))


@FUZZ
@given(st.lists(st.tuples(frame_headers, st.binary(max_size=80)), max_size=8))
def test_log_demux_framed(frames: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(h + p for h, p in frames)
    assert isinstance(parse_all(data, tty=False), list)


@FUZZ
@given(messages | st.dictionaries(st.sampled_from(
    ["cpu_stats", "precpu_stats", "memory_stats", "networks", "blkio_stats", "pids_stats", "read"]),
    json_values, max_size=7))
def test_stats(sample: dict[str, Any]) -> None:
    assert isinstance(is_running_sample(sample), bool)
    result = compute(sample)
    assert result is None or isinstance(result, ContainerStats)
    if result is not None:
        orjson.dumps(stats_message("c", result))


@FUZZ
@given(st.lists(st.binary(max_size=100) | json_values.map(lambda v: json.dumps(v).encode()), max_size=10))
def test_events_lines(chunks: list[bytes]) -> None:
    splitter = LineSplitter(max_line=64)
    hub = EventsHub(DockerEngine())
    seen: list[Any] = []
    hub._listeners.append(seen.append)  # no stream: only the line handling is exercised
    for chunk in chunks:
        for line in splitter.feed(chunk + b"\n"):
            hub.handle_line(line)
    assert all(isinstance(e, dict) for e in seen)


@FUZZ
@given(messages)
def test_jwt_claims(claims: dict[str, Any]) -> None:
    try:
        principal = principal_from_claims(claims)
    except AuthError:
        return
    assert isinstance(principal, Principal) and principal.user_id
    assert isinstance(principal.may_access_container(["web-1"]), bool)


VERIFIER = TokenVerifier(JwtSettings(secret=SECRET))


@FUZZ
@given(messages)
def test_jwt_signed_with_any_claims(claims: dict[str, Any]) -> None:
    claims = {k: v for k, v in claims.items() if k not in ("exp", "nbf", "iat", "aud", "iss")}
    try:
        token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    except (TypeError, ValueError):
        return
    with contextlib.suppress(AuthError):
        VERIFIER.verify(token)


@FUZZ
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=300)
       | json_values | st.binary(max_size=100).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_jwt_garbage(token: Any) -> None:
    try:
        VERIFIER.verify(token)
    except AuthError as exc:
        assert str(exc) in (protocol.INVALID_TOKEN_MESSAGE, protocol.EXPIRED_TOKEN_MESSAGE)


def _verify(token: Any) -> Principal:
    if token == "good":
        return Principal("u", expires_at=time.time() + 60)
    raise AuthError(protocol.INVALID_TOKEN_MESSAGE)


@FUZZ
@given(st.lists(st.text(max_size=60) | messages.map(json.dumps),
                max_size=20))
def test_connection_never_raises(frames: list[str]) -> None:
    conn = Connection("c", LifecycleConfig(rate_limit=RateLimit(1000, 1.0)), _verify, now=0.0)
    conn.receive_text('{"type":"auth","token":"good"}', 0.0)
    for i, text in enumerate(frames):
        actions: list[Action] = conn.receive_text(text, i * 0.01)
        assert isinstance(actions, list)
    conn.tick(1e6)
