"""The handshake guard's plain parts, and upstream backoff."""

from openpanel_ws.backoff import Backoff
from openpanel_ws.gateways.access import could_be_id
from openpanel_ws.handshake import LogThrottle, PendingSockets, loop_error_kind


def test_pending_sockets_total_cap() -> None:
    p = PendingSockets(total=2)
    assert p.admit("a") and p.admit("b")
    assert not p.admit("c")
    p.release("a")
    assert p.admit("c")


def test_pending_sockets_per_ip_cap_is_off_by_default() -> None:
    p = PendingSockets(total=100)
    assert all(p.admit("10.0.0.1") for _ in range(50))
    q = PendingSockets(total=100, per_ip=2)
    assert q.admit("x") and q.admit("x") and not q.admit("x")
    assert q.admit("y")
    q.release("x")
    assert q.admit("x")


def test_log_throttle_one_line_per_window_with_a_count() -> None:
    t = LogThrottle(every=10.0)
    assert t.note("emfile", 0.0) == 1  # the first is logged at once
    assert [t.note("emfile", 0.1 * i) for i in range(1, 50)] == [0] * 49
    assert t.due("emfile") == 10.0
    assert t.take("emfile", 10.0) == 49  # folded count, logged when the window ends
    assert t.due("emfile") is None
    assert t.note("emfile", 15.0) == 0
    assert t.note("emfile", 20.5) == 2
    assert t.note("reset", 20.5) == 1  # kinds are independent


def test_backoff_is_capped_exponential() -> None:
    b = Backoff(0.25, 30.0)
    delays = [b.next_delay() for _ in range(10)]
    assert delays[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 30.0 and delays[-1] == 30.0
    b.reset()
    assert b.next_delay() == 0.25


def test_could_be_id() -> None:
    assert could_be_id("3f2a") and could_be_id("ABCDEF0123")
    assert not could_be_id("web-1") and not could_be_id("") and not could_be_id("/secret")


def test_loop_errors_of_the_guards_kinds_and_no_others() -> None:
    import errno

    assert loop_error_kind({"exception": OSError(errno.EMFILE, "Too many open files")}) == "emfile"
    assert loop_error_kind({"exception": ConnectionResetError()}) == "reset"
    assert loop_error_kind({"exception": OSError(errno.EACCES, "no")}) is None
    assert loop_error_kind({"message": "Task was destroyed but it is pending!"}) is None
