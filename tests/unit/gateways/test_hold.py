"""The one gateway-side slow-consumer hold, with plain calls."""

from openpanel_ws.gateways.hold import Hold
from openpanel_ws.sendqueue import Overflow, QueueLimits


def test_items_come_back_in_order_and_the_hold_is_left_empty() -> None:
    hold: Hold[str] = Hold(QueueLimits(10, 1000))
    for item in "abc":
        assert hold.push(item, 1) is None
    assert len(hold) == 3
    assert hold.release() == ["a", "b", "c"]
    assert hold.release() == [] and len(hold) == 0


def test_past_the_frame_bound_everything_is_dropped_once() -> None:
    hold: Hold[int] = Hold(QueueLimits(3, 1000))
    assert [hold.push(i, 10) for i in range(3)] == [None] * 3
    assert hold.push(3, 10) == Overflow(3, 30)  # the 4th: a slow consumer
    assert hold.overflowed and len(hold) == 0
    assert hold.push(4, 10) is None  # the client is being closed: dropped, no 2nd verdict
    assert hold.release() == []


def test_past_the_byte_bound_everything_is_dropped() -> None:
    hold: Hold[str] = Hold(QueueLimits(100, 25))
    assert hold.push("a", 20) is None
    assert hold.push("b", 5) is None  # exactly at the bound is fine
    assert hold.push("c", 1) == Overflow(2, 25)
    assert hold.release() == []
