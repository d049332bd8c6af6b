"""A host's status rules (HostMonitor, HostStatus), with plain calls."""

from openpanel_ws.backoff import Backoff
from openpanel_ws.hosts.status import HostMonitor, HostState, HostStatus


def test_connecting_then_up_then_down_then_up() -> None:
    m = HostMonitor("edge", now=100.0)
    assert m.status == HostStatus("edge", HostState.CONNECTING, 100.0)
    up = m.succeeded(101.0, version="27.1", containers=3)
    assert up == HostStatus("edge", HostState.UP, 101.0, None, "27.1", 3)
    assert m.succeeded(102.0, containers=4) is None  # still up: nothing to announce
    assert m.status.containers == 4 and m.status.version == "27.1" and m.status.since == 101.0
    down = m.failed(103.0, "connection refused")
    assert down is not None and down.state is HostState.DOWN and down.since == 103.0
    assert down.error == "connection refused" and down.version == "27.1"
    again = m.succeeded(104.0)
    assert again is not None and again.state is HostState.UP and again.error is None


def test_a_new_error_while_down_is_kept_but_not_announced_again() -> None:
    m = HostMonitor("edge", now=0.0)
    assert m.failed(1.0, "no such file") is not None  # connecting -> down
    assert m.failed(2.0, "no such file") is None
    assert m.failed(3.0, "timed out") is None  # a probe and a stream say it differently
    assert m.status.error == "timed out" and m.status.since == 1.0


def test_disabled_is_final() -> None:
    m = HostMonitor("off", enabled=False, now=5.0)
    assert m.disabled and m.status.state is HostState.DISABLED
    assert m.succeeded(6.0) is None and m.failed(7.0, "x") is None
    assert m.status.state is HostState.DISABLED


def test_probes_every_interval_while_up_and_back_off_with_jitter_while_down() -> None:
    rolls = iter([0.0, 1.0, 0.5, 0.0, 0.0])
    m = HostMonitor("edge", up_interval=10.0,
                    backoff=Backoff(0.5, 4.0, jitter=0.5, rand=lambda: next(rolls)))
    m.failed(0.0, "down")
    assert [m.next_probe() for _ in range(4)] == [0.5, 0.5, 1.5, 4.0]  # jittered, capped
    m.succeeded(1.0)
    assert m.next_probe() == 10.0
    m.failed(2.0, "down")
    assert m.next_probe() == 0.5  # a success reset the backoff


def test_the_wire_message_and_the_api_row() -> None:
    status = HostStatus("edge", HostState.DOWN, 0.0, "refused", "27.1", 2)
    assert status.message() == {"type": "host_status", "host": "edge", "state": "down",
                                "timestamp": "1970-01-01T00:00:00.000Z", "error": "refused"}
    assert "error" not in HostStatus("edge", HostState.UP, 0.0).message()
    assert status.summary() == {"id": "edge", "state": "down", "error": "refused",
                                "version": "27.1", "containers": 2}


def test_an_up_host_is_pinged_and_asked_for_info_now_and_then() -> None:
    m = HostMonitor("edge", info_every=3)
    assert m.wants_info()  # connecting: the full probe
    m.succeeded(1.0, version="20.10")
    assert [m.wants_info() for _ in range(6)] == [False, False, True, False, False, True]
    assert m.next_probe() == 1.0
    m.failed(2.0, "no answer within 5 s")
    assert m.wants_info()
