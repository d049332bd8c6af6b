"""The outbound path: the sans-I/O `OutboundProtocol` through every exit, with plain calls;
then its shell `ClientWriter` on a fake socket (tests/fakes.py; the real one:
tests/e2e/test_lifecycle.py, tests/e2e/test_outbound_wire.py)."""

import asyncio
from typing import Any

from fakes import Sink, unframe
from helpers import loop_turns
from openpanel_ws.outbound import (
    OP_CLOSE,
    OP_TEXT,
    ClientWriter,
    OutboundProtocol,
    OutboundState,
    Step,
    WriteScheduler,
    close_frame,
    frame,
    mask,
    masked_frame,
    text_frame,
)
from openpanel_ws.protocol import SLOW_CONSUMER_REASON
from openpanel_ws.sendqueue import QueueLimits

# --- the protocol, plain calls --------------------------------------------------------


def machine(max_frames: int = 10, max_bytes: int = 10_000) -> tuple[OutboundProtocol, list[Any]]:
    woken: list[Any] = []
    return OutboundProtocol(QueueLimits(max_frames, max_bytes), woken.append), woken


def closes(frames: list[bytes]) -> list[tuple[int, bytes]]:
    return [(op, p) for f in frames for op, p in unframe(f) if op == OP_CLOSE]


def test_frames_are_handed_out_in_order_and_the_shell_is_told_once_per_write() -> None:
    p, woken = machine()
    assert p.send(b"a") and p.send(b"b")
    p.send_latest("k", b"s1")
    p.send_latest("k", b"s2")
    assert woken == [p]  # once until the next data_to_send
    assert p.next_step(paused=False) is Step.WRITE
    assert p.next_step(paused=True) is Step.WAIT_RESUME
    assert p.data_to_send() == [b"a", b"b", b"s2"]
    assert p.next_step(paused=False) is Step.IDLE
    p.send(b"c")
    assert woken == [p, p]


def test_a_machine_joins_a_nonempty_ready_list_without_calling_back() -> None:
    marked: list[Any] = []
    ready: list[Any] = []
    first = OutboundProtocol(QueueLimits(10, 10_000), marked.append, ready)
    second = OutboundProtocol(QueueLimits(10, 10_000), marked.append, ready)
    first.send(b"a")
    assert marked == [first] and ready == []  # the first of a turn: the scheduler's mark
    ready.append(first)  # what mark does (and it arms the flush)
    second.send(b"b")
    second.send(b"c")
    assert marked == [first] and ready == [first, second]  # joined once, no call


def test_close_writes_the_queue_then_our_close_then_waits_for_the_peer() -> None:
    p, _ = machine()
    p.send(b"a")
    p.close(4001, "bye")
    assert p.closing and not p.closed
    assert not p.send(b"late")  # nothing after close()
    p.send_latest("k", b"late")
    assert p.next_step(paused=True) is Step.WAIT_RESUME  # the backlog first
    frames = p.data_to_send()
    assert frames[0] == b"a" and frames[1:] == [close_frame(4001, "bye")]
    assert p.state is OutboundState.CLOSE_SENT
    assert p.data_to_send() == []  # nothing is written after our Close
    assert p.next_step(paused=False) is Step.WAIT_PEER_CLOSE
    p.close(1000, "")  # a second close changes nothing
    p.peer_closed(1000)  # the answer
    assert p.next_step(paused=False) is Step.CLOSE_TRANSPORT
    assert p.closed and p.next_step(paused=False) is Step.IDLE


def test_reader_done_ends_the_wait_for_the_peers_close() -> None:
    p, _ = machine()
    p.close(1000, "")
    p.data_to_send()
    p.reader_done()
    assert p.next_step(paused=False) is Step.CLOSE_TRANSPORT and p.closed


def test_close_timeout_closes_or_aborts_when_the_peer_does_not_read() -> None:
    for buffered, step in ((0, Step.CLOSE_TRANSPORT), (10, Step.ABORT)):
        p, _ = machine()
        p.close(1000, "")
        p.data_to_send()
        p.close_timed_out(buffered)
        assert p.closed and p.next_step(paused=False) is step
        assert p.next_step(paused=False) is Step.IDLE  # taken once


def test_a_close_timeout_before_our_close_is_out_changes_nothing() -> None:
    p, _ = machine()
    p.close(1000, "")
    p.close_timed_out(10)
    assert p.state is OutboundState.CLOSING


def test_the_peers_close_is_answered_at_once_and_the_queue_dropped() -> None:
    p, _ = machine()
    p.send(b"dropped")
    p.peer_closed(4321)
    assert not p.send(b"x")
    assert p.next_step(paused=True) is Step.WRITE  # the answer is written even when paused
    assert p.data_to_send() == [close_frame(4321)]  # the peer's code, echoed
    assert p.next_step(paused=False) is Step.CLOSE_TRANSPORT


def test_the_peers_close_interrupts_our_closing_and_an_invalid_code_is_answered_1000() -> None:
    p, _ = machine()
    p.send(b"queued")
    p.close(4001, "bye")
    p.peer_closed(999)
    assert p.data_to_send() == [close_frame(1000)]
    assert p.next_step(paused=False) is Step.CLOSE_TRANSPORT


def test_overflow_is_the_slow_consumer_verdict() -> None:
    p, woken = machine(max_frames=3)
    assert [p.send(b"x") for _ in range(4)] == [True, True, True, False]
    assert p.closing and woken == [p, p]  # told again: the verdict is the next step
    assert p.next_step(paused=False, buffered=10) is Step.WRITE
    assert p.data_to_send() == [close_frame(1013, SLOW_CONSUMER_REASON)]  # backlog dropped


def test_a_slow_consumer_with_a_full_transport_is_aborted() -> None:
    p, _ = machine(max_frames=100, max_bytes=100)
    p.send(text_frame(b"x" * 90))
    assert not p.send(text_frame(b"y" * 20))
    assert p.next_step(paused=True, buffered=101) is Step.ABORT
    assert p.closed and p.data_to_send() == []


def test_abort_and_transport_lost_end_everything() -> None:
    p, _ = machine()
    p.send(b"a")
    p.abort()
    assert p.closed and not p.send(b"b") and p.data_to_send() == []
    assert p.next_step(paused=False) is Step.ABORT
    q, _ = machine()
    q.send(b"a")
    q.close(1000, "")
    q.transport_lost()  # aiohttp closed by itself, or the peer left
    assert q.closed and q.next_step(paused=False) is Step.IDLE and q.data_to_send() == []
    q.peer_closed(1000)
    q.abort()  # nothing after the end
    assert q.next_step(paused=False) is Step.IDLE


def test_discarding_a_latest_value_keeps_later_frames_in_order() -> None:
    p, _ = machine()
    p.send(b"first")
    p.send_latest("m", b"old")
    p.discard_latest("m")
    p.send(b"ack")
    p.send_latest("m", b"new")
    assert p.data_to_send() == [b"first", b"ack", b"new"]


def test_backlog_is_the_fill_of_the_bound() -> None:
    p, _ = machine(max_frames=1000, max_bytes=2000)
    for _ in range(10):
        p.send(text_frame(b"x" * 100))
    assert p.backlog == 0.5


def test_one_encoder_for_server_and_client_frames() -> None:
    for n in (0, 5, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
        assert unframe(frame(OP_TEXT, payload)) == [(OP_TEXT, payload)]
        key = b"\x01\x02\x03\x04"
        masked = masked_frame(OP_TEXT, payload, key)
        assert masked[1] & 0x80  # the mask bit
        head = 2 + (0 if n < 126 else 2 if n < 65536 else 8)
        assert masked[head:head + 4] == key
        assert mask(key, masked[head + 4:]) == payload
        assert (masked[1] & 0x7F) == (frame(OP_TEXT, payload)[1] & 0x7F)


# --- the shell, on a fake socket -------------------------------------------------------


class Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


class PayloadWriter(ClientWriter):
    """The writer, fed payloads (it is fed complete frames in the server)."""

    def send(self, frame: bytes) -> bool:
        return super().send(text_frame(frame))

    def send_latest(self, key: str, frame: bytes) -> None:
        super().send_latest(key, text_frame(frame))


def writer(sink: Sink, transport: Any = None, **kw: Any) -> ClientWriter:
    opts = {"max_frames": 10, "max_bytes": 10_000, "send_timeout": 1.0} | kw
    if transport is not None:
        sink.on_abort = transport.abort
    scheduler = WriteScheduler(QueueLimits(opts["max_frames"], opts["max_bytes"]), opts["send_timeout"],
                               watch_period=0.05)
    w = PayloadWriter(sink.ws, sink, scheduler)
    sink.peer = w
    return w


async def released_and_closed(sink: Sink, w: ClientWriter) -> list[bytes]:
    """Let the held-up socket take frames again, close normally: what it received."""
    sink.gate.set()
    w.close(1000, "")
    await asyncio.wait_for(w.wait_closed(), 2)
    return sink.frames


async def test_ordered_frames_arrive_in_order_then_close() -> None:
    sink = Sink()
    w = writer(sink)
    for i in range(5):
        assert w.send(b"%d" % i)
    w.close(1000, "bye")
    await asyncio.wait_for(w.wait_closed(), 2)
    assert sink.frames == [b"0", b"1", b"2", b"3", b"4"]
    assert sink.closed == (1000, b"bye")


async def test_latest_value_frames_conflate_in_place() -> None:
    sink = Sink()
    sink.gate.clear()  # a client that is not reading yet
    w = writer(sink)
    w.send(b"ack")
    for i in range(100):
        w.send_latest("stats:web", b"s%d" % i)
    w.send(b"log")
    assert await released_and_closed(sink, w) == [b"ack", b"s99", b"log"]


async def test_ordered_overflow_closes_1013_and_drops_the_backlog() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink, max_frames=10)
    accepted = [w.send(b"x") for _ in range(15)]
    assert accepted.count(True) == 10
    assert w.closing
    sink.gate.set()
    await asyncio.wait_for(w.wait_closed(), 2)
    assert sink.closed is not None and sink.closed[0] == 1013
    assert len(sink.frames) <= 1  # the frame in flight at most


async def test_a_stalled_send_aborts_the_transport() -> None:
    sink = Sink()
    sink.gate.clear()  # never drains
    transport = Transport()
    w = writer(sink, transport, send_timeout=0.2)
    w.send(b"x")
    await asyncio.wait_for(w.wait_closed(), 2)
    assert transport.aborted


async def test_a_discarded_latest_value_does_not_jump_ahead_of_later_frames() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink)
    w.send(b"first")
    w.send_latest("metrics", b"old-sample")
    w.discard_latest("metrics")  # unsubscribe
    w.send(b"ack")  # resubscribe acknowledged
    w.send_latest("metrics", b"new-sample")
    assert await released_and_closed(sink, w) == [b"first", b"ack", b"new-sample"]


async def test_wait_backlog_below_is_backpressure_for_pausable_producers() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink, max_frames=1000, max_bytes=2000)
    for _ in range(10):
        w.send(b"x" * 100)
    assert w.backlog == 0.5  # 1000 of 2000 bytes
    waiting = asyncio.ensure_future(w.wait_backlog_below(0.15))
    await loop_turns(5)
    assert not waiting.done()
    sink.gate.set()
    await asyncio.wait_for(waiting, 2)
    assert w.backlog < 0.15
    await w.wait_backlog_below(0.15)  # already below: returns at once
    w.close(1000, "")
    await asyncio.wait_for(w.wait_closed(), 2)


async def test_wait_backlog_below_returns_when_the_client_closes() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink, max_frames=1000, max_bytes=1_000_000)
    w.send(b"x" * 500)
    waiting = asyncio.ensure_future(w.wait_backlog_below(0.0001))
    await loop_turns(5)
    w.close(1000, "")
    await asyncio.wait_for(waiting, 2)
    sink.gate.set()
    await asyncio.wait_for(w.wait_closed(), 2)


async def test_cancel_aborts_and_ends_the_wait() -> None:
    sink = Sink()
    sink.gate.clear()  # the peer does not read: the drain waits
    w = writer(sink)
    w.send(b"x")
    w.close(1000, "")
    await loop_turns(2)
    assert not w.closed
    w.cancel()
    await asyncio.wait_for(w.wait_closed(), 2)
    assert w.closed and sink.aborted and sink.closed is None  # no Close frame went out


async def test_the_peers_close_is_answered_at_once_and_the_tcp_closed() -> None:
    sink = Sink()
    w = writer(sink)
    w.send(b"dropped")  # queued for the end of this loop turn
    w.peer_closed(4000)
    assert sink.closed == (4000, b"") and sink.tcp_closed
    assert sink.frames == [] and w.closed and not w.send(b"late")
    await asyncio.wait_for(w.wait_closed(), 2)


async def test_a_transport_gone_under_the_writer_ends_it_quietly() -> None:
    sink = Sink()
    w = writer(sink)
    w.send(b"x")
    sink.tcp_closed = True  # the peer left (or aiohttp closed by itself)
    await loop_turns(2)
    assert w.closed and sink.frames == [] and not w.send(b"y")
