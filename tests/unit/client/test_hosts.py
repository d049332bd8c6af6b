"""The client and the CLI's text with several Docker hosts behind one gateway
(docs/protocol.md "Hosts"): subscriptions keyed by (host, container), the host kept
across a resume, `host` on what is delivered; plain calls, an injected clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from openpanel_ws.client import HostStatus, LogLine, StatsSample, SystemLog, gateway_url
from openpanel_ws.client.actions import Action, Deliver, FetchToken, Finish, Status
from openpanel_ws.client.aio import api_url
from openpanel_ws.client.cli_text import (
    UsageError,
    event_json,
    format_event,
    hosts_table,
    split_target,
)
from openpanel_ws.client.messages import DockerEvent, error_from_message
from openpanel_ws.client.policy import BackoffPolicy
from openpanel_ws.client.sansio import ClientConnection, ConnectionConfig
from openpanel_ws.client.subscriptions import (
    EventsSubscription,
    LogsSubscription,
    MetricsSubscription,
    StatsSubscription,
)
from openpanel_ws.client.terminal import TerminalSubscription
from openpanel_ws.protocol import rfc3339_from_nanos

T0 = 1_764_200_000_000_000_000


def ts(seconds: float) -> str:
    return rfc3339_from_nanos(T0 + int(seconds * 1e9))


def log(container: str, host: str | None, at: float, data: str) -> dict[str, Any]:
    msg = {"type": "log", "containerId": container, "timestamp": ts(at), "stream": "stdout", "data": data}
    return {**msg, "host": host} if host else msg


def conn() -> ClientConnection:
    return ClientConnection(ConnectionConfig("ws://gw/ws/containers", backoff=BackoffPolicy(1.0, 4.0)),
                            wall_clock=lambda: T0, rand=lambda: 0.0)


def open_conn(c: ClientConnection) -> None:
    c.socket_opened()
    welcome = orjson.dumps({"type": "connected", "timestamp": ts(0)}).decode()
    assert c.receive_text(welcome, 0) == [FetchToken()]
    c.send_auth("tok", 0)
    c.receive_text(orjson.dumps({"type": "authenticated", "userId": "u"}).decode(), 0)


def sent(c: ClientConnection) -> list[dict[str, Any]]:
    out = []
    while (msg := c.next_message(0)[0]) is not None:
        out.append(msg)
    return out


def delivered(actions: list[Action], sub: object) -> list[Any]:
    return [a.item for a in actions if isinstance(a, Deliver) and a.subscription is sub]


def test_the_same_container_on_two_hosts_is_two_subscriptions() -> None:
    c = conn()
    a = LogsSubscription("web", None, None, True, 1.0, host="a")
    b = LogsSubscription("web", None, None, True, 1.0, host="b")
    c.add(a)
    c.add(b)
    open_conn(c)
    assert sent(c)[1:] == [{"type": "subscribe_logs", "containerId": "web", "host": "a"},
                           {"type": "subscribe_logs", "containerId": "web", "host": "b"}]
    out = c.receive(log("web", "b", 1, "from b"), 0)
    assert delivered(out, a) == [] and [line.data for line in delivered(out, b)] == ["from b"]
    [line] = delivered(c.receive(log("web", "a", 1, "from a"), 0), a)
    assert line == LogLine("web", ts(1), "stdout", "from a", "a")
    # The one on b leaving unsubscribes b only; a's stays.
    assert c.remove(b) is False
    assert sent(c) == [{"type": "unsubscribe_logs", "containerId": "web", "host": "b"}]
    # An error naming b is not a's; one naming a is.
    out = []
    assert a.handle_error(error_from_message(
        {"type": "error", "code": "CONTAINER_NOT_FOUND", "containerId": "web", "host": "b"}), out) is False
    assert a.handle_error(error_from_message(
        {"type": "error", "code": "PERMISSION_DENIED", "containerId": "web", "host": "a"}), out) is True
    assert isinstance(out[-1], Finish) and out[-1].error is not None


def test_without_a_host_the_first_answer_names_it_and_a_resume_asks_it_again() -> None:
    sub = LogsSubscription("web", None, None, True, 1.0)
    assert sub.on_open(T0) == [{"type": "subscribe_logs", "containerId": "web"}]
    out: list[Action] = []
    assert sub.handle({"type": "subscribed_logs", "containerId": "web", "host": "local"}, 0, out)
    assert sub.handle(log("web", "local", 1, "x"), 0, out) is False
    assert [item.host for item in delivered(out, sub)] == ["local"]
    assert delivered(_feed(sub, log("web", "other", 2, "not ours")), sub) == []
    [again] = sub.on_open(T0)  # after a reconnect: the same host, from the cursor
    assert again == {"type": "subscribe_logs", "containerId": "web", "host": "local",
                     "tail": "all", "since": ts(0)}


def test_a_gateway_of_one_host_sends_no_host_and_nothing_changes() -> None:
    sub = LogsSubscription("web", None, None, True, 1.0)
    [line] = delivered(_feed(sub, log("web", None, 1, "x")), sub)
    assert line.host is None and sub.subscribe_messages()[0].get("host") is None


def _feed(sub: Any, msg: dict[str, Any]) -> list[Action]:
    out: list[Action] = []
    sub.handle(msg, 0, out)
    return out


def test_docker_unavailable_keeps_a_confirmed_subscription() -> None:
    sub = LogsSubscription("web", None, None, True, 1.0, host="prod-2")
    _feed(sub, {"type": "subscribed_logs", "containerId": "web", "host": "prod-2"})
    out: list[Action] = []
    err = error_from_message({"type": "error", "code": "DOCKER_UNAVAILABLE", "containerId": "web",
                              "host": "prod-2", "message": "Docker engine unavailable"})
    assert sub.handle_error(err, out) is True and not sub.ended
    [status] = out
    assert isinstance(status, Status) and "host 'prod-2'" in status.text
    # Before the subscribe was answered it is the answer: the subscription ends.
    fresh = LogsSubscription("web", None, None, True, 1.0, host="prod-2")
    out = []
    assert fresh.handle_error(err, out) and fresh.ended


def test_an_unknown_host_ends_the_subscribe_it_answers() -> None:
    sub = StatsSubscription(["web"], None, host="nope")
    out: list[Action] = []
    err = error_from_message({"type": "error", "code": "INVALID_MESSAGE", "field": "host",
                              "message": "Unknown host 'nope'"})
    assert sub.handle_error(err, out) and sub.ended


def test_stats_of_several_hosts_in_one_subscription() -> None:
    sub = StatsSubscription([("a", "web"), "web", (None, "db")], 1000, host="b")
    assert sub.subscribe_messages() == [
        {"type": "subscribe_stats", "containerId": "web", "host": "a", "interval": 1000},
        {"type": "subscribe_stats", "containerId": "web", "host": "b", "interval": 1000},
        {"type": "subscribe_stats", "containerId": "db", "host": "b", "interval": 1000},
    ]
    sample = {"type": "stats", "containerId": "web", "host": "b", "timestamp": ts(1),
              "stats": {"cpu": {"percent": 1.5}}}
    [item] = delivered(_feed(sub, sample), sub)
    assert isinstance(item, StatsSample) and item.host == "b" and item.cpu_percent == 1.5
    assert delivered(_feed(sub, {**sample, "host": "c"}), sub) == []
    _feed(sub, {"type": "subscription_ended", "containerId": "web", "host": "a", "subscription": "stats"})
    assert [(t.host, t.container) for t in sub.targets] == [("b", "web"), ("b", "db")]
    assert sub.containers == ["web", "db"]


def test_events_carry_their_host_and_host_status_is_delivered() -> None:
    assert _feed(EventsSubscription(None), {"type": "host_status", "host": "b", "state": "up",
                                            "timestamp": ts(0)}) == []  # not asked for
    sub = EventsSubscription(None, host_status=True)
    out = _feed(sub, {"type": "docker_event", "host": "a", "timestamp": ts(1),
                      "event": {"Type": "container", "Action": "start", "Actor": {"ID": "x"}}})
    out += _feed(sub, {"type": "system_log", "host": "a", "timestamp": ts(1), "level": "info",
                       "message": "Container web started", "source": "docker"})
    out += _feed(sub, {"type": "host_status", "host": "b", "state": "down", "error": "refused",
                       "timestamp": ts(2)})
    event, line, status = delivered(out, sub)
    assert isinstance(event, DockerEvent) and event.host == "a"
    assert isinstance(line, SystemLog) and line.host == "a"
    assert status == HostStatus("b", "down", "refused", ts(2))


def test_metrics_and_terminal_name_their_host() -> None:
    assert MetricsSubscription(1000, host="local").subscribe_messages() == [
        {"type": "subscribe", "interval": 1000, "host": "local"}]
    term = TerminalSubscription("web", None, None, None)
    assert term.on_open(T0) == [{"type": "open_terminal", "containerId": "web"}]
    _feed(term, {"type": "terminal_opened", "sessionId": "s1", "containerId": "web", "host": "local"})
    out: list[Action] = []
    term.on_disconnect("lost", 1006, 0, out)
    assert term.on_open(T0) == [{"type": "open_terminal", "containerId": "web", "host": "local",
                                 "sessionId": "s1"}]
    named = TerminalSubscription("web", None, None, None, host="prod-2")
    assert named.on_open(T0) == [{"type": "open_terminal", "containerId": "web", "host": "prod-2"}]


def test_errors_keep_their_text_and_expose_the_host() -> None:
    err = error_from_message({"type": "error", "code": "CONTAINER_NOT_FOUND", "containerId": "db",
                              "host": "local", "message": "Container not found"})
    assert str(err) == "container 'db' not found" and err.host == "local"


@pytest.mark.parametrize(("text", "default", "expected"), [
    ("web", None, (None, "web")),
    ("web", "prod-2", ("prod-2", "web")),
    ("prod-2/web", None, ("prod-2", "web")),
    ("prod-2/web", "other", ("prod-2", "web")),  # the named one wins
])
def test_split_target(text: str, default: str | None, expected: tuple[str | None, str]) -> None:
    assert split_target(text, default) == expected


@pytest.mark.parametrize("text", ["", "/web", "prod-2/", "a/b/c"])
def test_split_target_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        split_target(text)


def test_event_lines_and_json_name_the_host() -> None:
    ev = DockerEvent(ts(0), {"Type": "container", "Action": "start", "Actor": {"ID": "abc"}}, "a")
    assert format_event(ev) == f"{ts(0)} host=a container start abc"
    assert event_json(ev)["host"] == "a"
    status = HostStatus("b", "down", "connection refused", ts(0))
    assert format_event(status) == f"{ts(0)} host=b host down: connection refused"
    assert event_json(status) == {"type": "host_status", "host": "b", "state": "down",
                                  "timestamp": ts(0), "error": "connection refused"}


def test_hosts_table() -> None:
    table = hosts_table([
        {"id": "local", "engine": "unix:///var/run/docker.sock", "state": "up", "error": None,
         "version": "27.5.1", "containers": 3, "terminals": True},
        {"id": "prod-2", "engine": "tcp://10.0.0.2:2376 (tls)", "state": "down",
         "error": "connection refused", "version": None, "containers": None, "terminals": False},
    ]).splitlines()
    assert table[0].split() == ["HOST", "STATE", "ENGINE", "VERSION", "CONTAINERS", "TERMINALS", "ERROR"]
    assert table[1].split() == ["local", "up", "unix:///var/run/docker.sock", "27.5.1", "3", "yes", "-"]
    assert table[2].split()[:2] == ["prod-2", "down"] and table[2].endswith("connection refused")


def test_host_routes_and_the_api_address() -> None:
    assert gateway_url("ws://h:1", "logs", "prod-2") == "ws://h:1/hosts/prod-2/ws/logs"
    assert gateway_url("ws://h:1/hosts/prod-2", "terminal") == "ws://h:1/hosts/prod-2/ws/terminal"
    assert gateway_url("http://h:1/hosts/prod-2/ws/logs", "containers") == "ws://h:1/hosts/prod-2/ws/containers"
    assert api_url("ws://h:1", "/api/hosts") == "http://h:1/api/hosts"
    assert api_url("wss://h/hosts/prod-2", "/api/hosts") == "https://h/api/hosts"
