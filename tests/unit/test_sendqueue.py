"""The send-queue policy, sans-I/O: order, conflation, discard, the slow-consumer bound."""

from openpanel_ws.outbound import text_frame
from openpanel_ws.sendqueue import Overflow, QueueLimits, SendQueue


def queue(frames: int = 10, nbytes: int = 1000) -> SendQueue:
    return SendQueue(QueueLimits(frames, nbytes))


def test_ordered_frames_pop_in_order_and_leave_it_empty() -> None:
    q = queue()
    for i in range(5):
        assert q.push(b"%d" % i) is None
    assert len(q) == 5
    assert q.pop_all() == [b"0", b"1", b"2", b"3", b"4"]
    assert not q and q.pop_all() == [] and q.queued_bytes == 0


def test_latest_value_replaces_in_place_and_keeps_its_place() -> None:
    q = queue()
    q.push(b"ack")
    for i in range(100):
        q.push_latest("stats:web", b"s%d" % i)
    q.push(b"log")
    q.push_latest("stats:db", b"d")
    assert len(q) == 4
    assert q.pop_all() == [b"ack", b"s99", b"log", b"d"]


def test_latest_values_do_not_count_against_the_ordered_bound() -> None:
    q = queue(frames=3, nbytes=10)
    for i in range(50):
        q.push_latest(f"k{i % 2}", b"x" * 100)
    assert q.push(b"a") is None
    assert q.pop_all()[-1] == b"a"


def test_discard_drops_the_frame_and_its_place() -> None:
    q = queue()
    q.push(b"first")
    q.push_latest("metrics", b"old")
    q.discard("metrics")
    q.push(b"ack")
    q.push_latest("metrics", b"new")
    assert q.pop_all() == [b"first", b"ack", b"new"]
    q.discard("never-queued")  # no-op
    assert q.pop_all() == []


def test_frame_bound_overflows_and_clears_the_backlog() -> None:
    q = queue(frames=3, nbytes=10_000)
    assert [q.push(text_frame(b"x")) for _ in range(3)] == [None, None, None]
    assert q.push(text_frame(b"x")) == Overflow(frames=3, bytes=3)
    assert not q and q.backlog == 0.0


def test_byte_bound_counts_payload_bytes_and_overflows() -> None:
    q = queue(frames=100, nbytes=1000)
    for _ in range(10):
        assert q.push(text_frame(b"y" * 100)) is None  # headers are not counted
    assert q.queued_bytes == 1000 and q.backlog == 1.0
    assert isinstance(q.push(text_frame(b"z")), Overflow)
    assert q.queued_bytes == 0


def test_header_sizes_of_long_frames_are_left_out() -> None:
    q = queue(frames=10, nbytes=1 << 20)
    q.push(text_frame(b"a" * 300))  # 4-byte header
    q.push(text_frame(b"b" * 70_000))  # 10-byte header
    assert q.queued_bytes == 70_300


def test_backlog_is_the_fuller_of_count_and_bytes() -> None:
    q = queue(frames=10, nbytes=1000)
    q.push(text_frame(b"x" * 500))
    assert q.backlog == 0.5
    for _ in range(7):
        q.push(text_frame(b""))
    assert q.backlog == 0.8


def test_clear_forgets_everything() -> None:
    q = queue()
    q.push(b"a")
    q.push_latest("k", b"b")
    q.clear()
    assert q.pop_all() == [] and q.queued_bytes == 0
    q.push_latest("k", b"c")
    assert q.pop_all() == [b"c"]
