"""The per-client writer: ordering, conflation, the slow-consumer bound (fake socket:
tests/fakes.py; the real one: tests/e2e/test_lifecycle.py)."""

import asyncio
from typing import Any

from fakes import Sink
from openpanel_ws.outbound import ClientWriter, WriteScheduler, text_frame
from openpanel_ws.sendqueue import QueueLimits


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
    assert w.closed
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


async def test_wait_drained_is_backpressure_for_pausable_producers() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink, max_frames=1000, max_bytes=2000)
    for _ in range(10):
        w.send(b"x" * 100)
    assert w.backlog == 0.5  # 1000 of 2000 bytes
    waiting = asyncio.ensure_future(w.wait_backlog_below(0.15))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    sink.gate.set()
    await asyncio.wait_for(waiting, 2)
    assert w.backlog < 0.15
    await w.wait_backlog_below(0.15)  # already below: returns at once
    w.close(1000, "")
    await asyncio.wait_for(w.wait_closed(), 2)


async def test_wait_drained_returns_when_the_client_closes() -> None:
    sink = Sink()
    sink.gate.clear()
    w = writer(sink, max_frames=1000, max_bytes=1_000_000)
    w.send(b"x" * 500)
    waiting = asyncio.ensure_future(w.wait_backlog_below(0.0001))
    await asyncio.sleep(0.01)
    w.close(1000, "")
    await asyncio.wait_for(waiting, 2)
    sink.gate.set()
    await asyncio.wait_for(w.wait_closed(), 2)
