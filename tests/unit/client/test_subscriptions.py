"""The client's subscriptions as plain state machines: what they (re)send, what they
take, when they end; plain calls, an injected clock."""

from __future__ import annotations

from typing import Any

from openpanel_ws.client import messages
from openpanel_ws.client.actions import Action, Deliver, Finish, Status, TerminalOpened, TerminalRefused
from openpanel_ws.client.outbox import Input
from openpanel_ws.client.subscriptions import (
    EventsSubscription,
    LogsSubscription,
    MetricsSubscription,
    StatsSubscription,
)
from openpanel_ws.client.terminal import HELD_INPUT_LIMIT, TerminalSubscription
from openpanel_ws.protocol import CloseCode, rfc3339_from_nanos

T0 = 1_764_200_000_000_000_000


def ts(seconds: float) -> str:
    return rfc3339_from_nanos(T0 + int(seconds * 1e9))


def log(container: str, at: float, data: str, stream: str = "stdout") -> dict[str, Any]:
    return {"type": "log", "containerId": container, "timestamp": ts(at), "stream": stream, "data": data}


def feed(sub: Any, msg: dict[str, Any], now: float = 0.0) -> tuple[bool, list[Action]]:
    out: list[Action] = []
    return sub.handle(msg, now, out), out


def server_error(msg: dict[str, Any]) -> messages.ServerError:
    return messages.error_from_message({"type": "error", **msg})


def error(out: list[Action], sub: Any, err: messages.ServerError) -> bool:
    claimed: bool = sub.handle_error(err, out)
    return claimed


# --- logs ---------------------------------------------------------------------------


def test_logs_subscribe_then_resume_from_the_cursor() -> None:
    sub = LogsSubscription("web", tail=10, since="10m", follow=True, quiet=1.0)
    assert sub.on_open(T0) == [{"type": "subscribe_logs", "containerId": "web", "tail": 10, "since": "10m"}]
    claimed, out = feed(sub, log("web", 5, "a"))
    assert not claimed  # another consumer of the same container may want it too
    [deliver] = out
    assert isinstance(deliver, Deliver) and isinstance(deliver.item, messages.LogLine)
    assert deliver.item.data == "a"
    [again] = sub.on_open(T0)  # after a reconnect
    assert again == {"type": "subscribe_logs", "containerId": "web", "tail": "all", "since": ts(4)}
    assert feed(sub, log("web", 5, "a"))[1] == []  # the replayed line is dropped
    assert len(feed(sub, log("web", 6, "b"))[1]) == 1
    assert feed(sub, log("db", 7, "c")) == (False, [])  # another container's
    assert feed(sub, {"type": "unsubscribed_logs", "containerId": "web"}) == (True, [])
    assert sub.unsubscribe_messages() == [{"type": "unsubscribe_logs", "containerId": "web"}]


def test_logs_without_follow_stop_at_now_on_the_server_clock() -> None:
    sub = LogsSubscription("web", tail=None, since=None, follow=False, quiet=1.0)
    assert sub.on_open(T0 + 10 * 10**9) == [{"type": "subscribe_logs", "containerId": "web"}]
    assert sub.until_ns == T0 + 10 * 10**9
    sub.on_open(T0 + 99 * 10**9)
    assert sub.until_ns == T0 + 10 * 10**9  # stamped once
    assert len(feed(sub, log("web", 9, "old"))[1]) == 1
    claimed, out = feed(sub, log("web", 11, "new"))
    assert not claimed and out == [Finish(sub, None)] and sub.ended


def test_logs_without_follow_end_after_a_quiet_spell() -> None:
    sub = LogsSubscription("web", tail=None, since=None, follow=False, quiet=2.0)
    assert sub.next_deadline() is None
    assert feed(sub, {"type": "subscribed_logs", "containerId": "web"}, now=100.0) == (True, [])
    assert sub.next_deadline() == 106.0  # 3x before the first line
    feed(sub, log("web", 1, "a"), now=101.0)
    assert sub.next_deadline() == 103.0
    out: list[Action] = []
    sub.tick(102.9, out)
    assert out == []
    sub.tick(103.0, out)
    assert out == [Finish(sub, None)] and sub.next_deadline() is None


def test_following_logs_have_no_quiet_deadline() -> None:
    sub = LogsSubscription("web", tail=None, since=None, follow=True, quiet=1.0)
    feed(sub, {"type": "subscribed_logs", "containerId": "web"}, now=1.0)
    assert sub.next_deadline() is None


def test_logs_end_when_the_server_ends_them_or_refuses_them() -> None:
    sub = LogsSubscription("web", None, None, True, 1.0)
    claimed, [finish] = feed(sub, {"type": "subscription_ended", "containerId": "web",
                                   "subscription": "logs", "message": "Container removed"})
    assert not claimed and isinstance(finish, Finish)
    assert isinstance(finish.error, messages.SubscriptionEnded) and "container removed" in str(finish.error)
    refused = LogsSubscription("web", "x", None, True, 1.0)
    out: list[Action] = []
    bad_tail = server_error({"code": "INVALID_MESSAGE", "message": "bad", "field": "tail"})
    assert error(out, refused, bad_tail) and out == [Finish(refused, bad_tail)]
    confirmed = LogsSubscription("web", None, None, True, 1.0)
    feed(confirmed, {"type": "subscribed_logs", "containerId": "web"})
    assert not error([], confirmed, bad_tail)  # once answered, a field error is someone else's
    gone = server_error({"code": "CONTAINER_NOT_FOUND", "message": "x", "containerId": "web"})
    assert error(out, confirmed, gone)


# --- stats, events, metrics ------------------------------------------------------------


def test_stats_of_several_containers_end_with_the_last_one() -> None:
    sub = StatsSubscription(["a", "b"], interval=1000)
    assert sub.on_open(T0) == [{"type": "subscribe_stats", "containerId": "a", "interval": 1000},
                               {"type": "subscribe_stats", "containerId": "b", "interval": 1000}]
    assert feed(sub, {"type": "subscribed_stats", "containerId": "a"}) == (True, [])
    claimed, [deliver] = feed(sub, {"type": "stats", "containerId": "b", "stats": {}})
    assert not claimed and isinstance(deliver, Deliver) and isinstance(deliver.item, messages.StatsSample)
    assert feed(sub, {"type": "subscription_ended", "containerId": "a", "subscription": "stats"})[1] == []
    assert sub.containers == ["b"]
    _, [finish] = feed(sub, {"type": "subscription_ended", "containerId": "b", "subscription": "stats"})
    assert isinstance(finish, Finish) and isinstance(finish.error, messages.SubscriptionEnded)
    assert feed(sub, {"type": "stats", "containerId": "z"}) == (False, [])


def test_stats_refusal_of_the_interval_ends_it() -> None:
    sub = StatsSubscription(["a"], interval=1)
    err = server_error({"code": "INVALID_MESSAGE", "message": "x", "field": "interval"})
    out: list[Action] = []
    assert error(out, sub, err) and out == [Finish(sub, err)]
    assert not error([], StatsSubscription(["a"], None), server_error(
        {"code": "RATE_LIMIT", "message": "x"}))


def test_filtered_events_pass_nothing_before_the_server_accepted_the_filters() -> None:
    sub = EventsSubscription({"container": ["web"]})
    assert sub.on_open(T0) == [{"type": "subscribe", "filters": {"container": ["web"]}}]
    event = {"type": "docker_event", "event": {"Type": "container", "Action": "start"}}
    assert feed(sub, event) == (True, [])
    assert feed(sub, {"type": "subscribed"}) == (True, [])
    _, [deliver] = feed(sub, event)
    assert isinstance(deliver, Deliver) and isinstance(deliver.item, messages.DockerEvent)
    _, [deliver] = feed(sub, {"type": "system_log", "level": "info", "message": "m"})
    assert isinstance(deliver.item, messages.SystemLog)
    sub.on_disconnect("lost", None, 0.0, [])
    assert feed(sub, event) == (True, [])  # asked again on the next connection
    err = server_error({"code": "INVALID_MESSAGE", "message": "bad filter"})
    out: list[Action] = []
    assert error(out, sub, err) and out == [Finish(sub, err)]


def test_unfiltered_events_flow_at_once() -> None:
    sub = EventsSubscription(None)
    assert sub.on_open(T0) == []
    assert len(feed(sub, {"type": "docker_event", "event": {}})[1]) == 1
    assert not error([], sub, messages.InvalidMessage("INVALID_MESSAGE", "x"))
    assert feed(sub, {"type": "other"}) == (False, [])


def test_metrics_subscribe_and_deliver() -> None:
    sub = MetricsSubscription(interval=5000)
    assert sub.on_open(T0) == [{"type": "subscribe", "interval": 5000}]
    assert MetricsSubscription(None).subscribe_messages() == [{"type": "subscribe"}]
    assert sub.unsubscribe_messages() == [{"type": "unsubscribe"}]
    _, [deliver] = feed(sub, {"type": "metrics", "system": {}})
    assert isinstance(deliver, Deliver) and isinstance(deliver.item, messages.MetricsSample)
    assert feed(sub, {"type": "subscribed"}) == (True, [])
    assert feed(sub, {"type": "stats"}) == (False, [])


# --- terminal -------------------------------------------------------------------------


def opened_terminal(**kwargs: Any) -> TerminalSubscription:
    sub = TerminalSubscription("web", None, 80, 24, **kwargs)
    sub.on_open(T0)
    _, out = feed(sub, {"type": "terminal_opened", "sessionId": "s1"})
    assert out == [TerminalOpened(sub, "s1")]
    return sub


def test_terminal_open_message_carries_only_what_is_not_the_default() -> None:
    sub = TerminalSubscription("web", "/bin/bash", 80, 24, command=["ls", "-l"], tty=False, stdin=False)
    assert sub.on_open(T0) == [{"type": "open_terminal", "containerId": "web", "shell": "/bin/bash",
                                "cols": 80, "rows": 24, "command": ["ls", "-l"], "tty": False,
                                "stdin": False}]
    assert sub.on_open(T0) == []  # opened once, not on every reconnect
    assert TerminalSubscription("web", None, None, None).on_open(T0) == [
        {"type": "open_terminal", "containerId": "web"}]


def test_terminal_output_and_exit() -> None:
    sub = opened_terminal()
    claimed, [deliver] = feed(sub, {"type": "terminal_output", "data": "hi", "seq": 2, "stream": "stderr"})
    assert claimed and deliver == Deliver(sub, messages.TerminalOutput("hi", "stderr"))
    assert sub.last_seq == 2
    _, out = feed(sub, {"type": "terminal_closed", "exitCode": 3, "reason": "exited",
                        "containerLost": True})
    assert out == [Finish(sub, None)]
    assert (sub.exit_code, sub.reason, sub.container_lost) == (3, "exited", True)
    assert feed(sub, {"type": "other"}) == (False, [])


def test_a_late_answer_to_our_eof_is_not_an_error_and_the_exit_code_follows() -> None:
    """`eof` crossed the program's exit: the gateway answers "no terminal" before its
    terminal_closed; the exit code must win, as `docker exec -i` gives it."""
    sub = opened_terminal()
    sub.eof_sent = True
    claimed, out = feed(sub, {"type": "terminal_error",
                              "message": "No terminal is open; send open_terminal first"})
    assert claimed and out == []
    _, out = feed(sub, {"type": "terminal_closed", "exitCode": 5, "reason": "Process exited"})
    assert out == [Finish(sub, None)] and sub.exit_code == 5
    # Without an `eof` of ours, the same answer still ends the terminal with that error.
    other = opened_terminal()
    _, out = feed(other, {"type": "terminal_error",
                          "message": "No terminal is open; send open_terminal first"})
    assert len(out) == 1 and isinstance(out[0], Finish) and out[0].error is not None


def test_terminal_refused_before_it_opened() -> None:
    sub = TerminalSubscription("web", None, None, None)
    _, out = feed(sub, {"type": "terminal_error", "message": "Container not found: web"})
    refused, finish = out
    assert isinstance(refused, TerminalRefused) and isinstance(finish, Finish)
    assert str(refused.error) == "container 'web' not found: web" and finish.error is refused.error
    closed = TerminalSubscription("web", None, None, None)
    _, out = feed(closed, {"type": "terminal_closed", "reason": "no shell"})
    refused, finish = out
    assert isinstance(refused, TerminalRefused) and "terminal closed: no shell" in str(refused.error)
    assert finish == Finish(closed, None)
    denied = TerminalSubscription("web", None, None, None)
    out = []
    err = server_error({"code": "RATE_LIMIT", "message": "slow"})
    assert error(out, denied, err)  # before the open any error is its answer
    assert out == [TerminalRefused(denied, err), Finish(denied, err)]


def test_an_error_after_the_open_ends_the_terminal_only_when_it_refuses() -> None:
    sub = opened_terminal()
    resize = server_error({"code": "INVALID_MESSAGE", "message": "bad", "field": "cols"})
    assert not error([], sub, resize) and not sub.ended  # just reported
    out: list[Action] = []
    denied = server_error({"code": "PERMISSION_DENIED", "message": "no"})
    assert isinstance(denied, messages.PermissionDenied)
    assert error(out, sub, denied) and out == [Finish(sub, denied)]  # already opened: no refusal
    gone = opened_terminal()
    out = []
    err = messages.ContainerNotFound("CONTAINER_NOT_FOUND", "x", "web")
    assert error(out, gone, err) and out == [Finish(gone, err)]


def test_a_lost_connection_reattaches_the_same_session_then_resumes() -> None:
    sub = opened_terminal()
    feed(sub, {"type": "terminal_output", "data": "x", "seq": 7})
    out: list[Action] = []
    sub.on_disconnect("connection closed (code 1006)", 1006, 50.0, out)
    assert out == [Status("connection to the gateway lost (connection closed (code 1006)); "
                          "reattaching the terminal")]
    assert sub.resuming and sub.next_deadline() == 50.0 + sub.resume_timeout
    sub.on_disconnect("refused", None, 55.0, out)  # still reattaching: no second status
    assert len(out) == 1 and sub.next_deadline() == 50.0 + sub.resume_timeout
    sub.hold([Input("echo hi\n")])
    sub.size = (100, 30)
    assert sub.on_open(T0) == [
        {"type": "open_terminal", "containerId": "web", "sessionId": "s1", "lastSeq": 7},
        {"type": "resize", "cols": 100, "rows": 30},
        Input("echo hi\n"),
    ]
    assert sub.held == [] and sub.held_chars == 0
    _, out = feed(sub, {"type": "terminal_opened", "sessionId": "s1", "resumed": True, "seq": 10})
    assert out == [Status("terminal session resumed (3 bytes of output were lost)")]
    assert not sub.resuming and sub.resumes == 1 and sub.next_deadline() is None


def test_a_resume_refused_by_the_gateway_ends_the_terminal() -> None:
    sub = opened_terminal()
    sub.on_disconnect("lost", 1006, 0.0, [])
    _, out = feed(sub, {"type": "terminal_error", "message": "Session not found"})
    [finish] = out
    assert isinstance(finish, Finish) and isinstance(finish.error, messages.TerminalError)
    assert "did not survive the reconnect (Session not found)" in str(finish.error)
    other = opened_terminal()
    other.on_disconnect("lost", 1006, 0.0, [])
    out = []
    assert error(out, other, server_error({"code": "RATE_LIMIT", "message": "x"}))
    [finish] = out
    assert isinstance(finish, Finish) and "did not survive the reconnect" in str(finish.error)


def test_the_terminal_gives_up_reattaching_after_its_timeout() -> None:
    sub = opened_terminal()
    sub.resume_timeout = 5.0
    sub.on_disconnect("connection refused", None, 10.0, [])
    out: list[Action] = []
    sub.tick(14.9, out)
    assert out == []
    sub.tick(15.0, out)
    [finish] = out
    assert isinstance(finish, Finish) and isinstance(finish.error, messages.TerminalError)
    assert "gateway unreachable for 5s: connection refused" in str(finish.error)


def test_a_gateway_shutdown_or_no_resume_ends_the_terminal() -> None:
    sub = opened_terminal()
    out: list[Action] = []
    sub.on_disconnect("connection closed (code 1001)", CloseCode.GOING_AWAY, 0.0, out)
    [finish] = out
    assert isinstance(finish, Finish) and "the gateway shut down" in str(finish.error)
    plain = opened_terminal(resume=False)
    out = []
    plain.on_disconnect("lost", 1006, 0.0, out)
    [finish] = out
    assert isinstance(finish, Finish) and str(finish.error) == "connection to the gateway lost (lost)"
    never = TerminalSubscription("web", None, None, None)  # lost before it opened
    out = []
    never.on_disconnect("lost", 1006, 0.0, out)
    assert [type(a) for a in out] == [TerminalRefused, Finish]


def test_input_held_while_reattaching_is_bounded() -> None:
    sub = opened_terminal()
    sub.hold([Input("x" * HELD_INPUT_LIMIT), Input("y"), {"type": "eof"}])
    assert sub.held == [Input("x" * HELD_INPUT_LIMIT)]
