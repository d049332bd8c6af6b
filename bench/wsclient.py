"""Load generators: many WebSocket clients per process on a bare asyncio Protocol.

A full client library spends more CPU per received frame than the server spends
sending it; on a 2-core machine that would measure the clients. `RawClient` does the
handshake itself, parses frames with a few slices (on the received bytes as they are
when no partial frame is pending; a frame of the awaited type is counted from its
header and `type` alone, without copying its payload), answers heartbeats (protocol
`ping` messages and ping frames) and counts frames by their `type`, so one process
keeps up with a large fan-out.

`Fleet` is one client process, driven by its parent through a `multiprocessing` pipe:

    parent                               fleet process
    ------                               -------------
    ready_fleets(specs)   ------------>  connect + auth every client of every target
                          <------------  ("ready", {target: authenticated clients})
    ("expect", t, kind, n, timeout) -->  arm: done when every client of t saw n frames
                          <------------  ("armed",)
    ...trigger the server...
                          <------------  ("done", t, monotonic time, clients reaching n)
    ("collect", t, reset) ------------>  counts by type, latencies, errors
    ("close",)            ------------>  close the sockets, exit
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
from common import raise_nofile

from openpanel_ws.outbound.frames import masked_frame

PONG = b'{"type":"pong"}'


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One client frame (FIN set, masked, as RFC 6455 requires from clients): the
    project's one encoder, `openpanel_ws.outbound.frames.masked_frame`."""
    return masked_frame(opcode, payload)


_second_cache: dict[bytes, int] = {}


def rfc3339_to_epoch(ts: bytes) -> float:
    """b'2026-11-27T00:25:13.123456789Z' -> epoch seconds (float)."""
    base = ts[:19]
    seconds = _second_cache.get(base)
    if seconds is None:
        seconds = calendar.timegm(time.strptime(base.decode(), "%Y-%m-%dT%H:%M:%S"))
        _second_cache[base] = seconds
    frac = ts[20:].rstrip(b"Z")
    return seconds + (float(b"0." + frac) if frac else 0.0)


@dataclass
class TargetSpec:
    """`count` clients on ws://127.0.0.1:`port``path`, each sending `after_auth` once authenticated."""

    name: str
    port: int
    path: str
    count: int
    token: str
    after_auth: list[dict[str, Any]] = field(default_factory=list)
    after_auth_gap: float = 0.0  # seconds between two after_auth messages (rate limits)
    latency_type: bytes = b""  # frames of this type record (receive time - their `timestamp`)


class Target:
    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.clients: list[RawClient] = []
        self.counts: dict[bytes, int] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.goal_kind = b""
        self.goal = 0
        self.reached = 0
        self.goal_future: asyncio.Future[float] | None = None

    def arm(self, kind: bytes, n: int) -> asyncio.Future[float]:
        self.goal_kind, self.goal, self.reached = kind, n, 0
        for client in self.clients:
            client.goal_count = 0
        self.goal_future = asyncio.get_running_loop().create_future()
        return self.goal_future


class RawClient(asyncio.Protocol):
    __slots__ = ("authenticated", "buf", "closed", "goal_count", "open", "target", "transport")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.goal_count = 0
        self.authenticated: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        spec = self.target.spec
        transport.write(
            (f"GET {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
             ).encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.authenticated.done():
            self.authenticated.set_exception(ConnectionError(f"connection lost before auth: {exc}"))

    def send_json(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(orjson.dumps(message)))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf: bytes | bytearray
        if self.buf or not self.open:
            self.buf += data
            buf = self.buf
        else:
            buf = data  # the common case: parse the bytes as they came, no copy
        pos = 0
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buf[:end]:
                self._fail(f"handshake refused: {bytes(buf[:end])[:80]!r}")
                return
            self.open = True
            pos = end + 4
            assert self.transport is not None
            self.transport.write(mask_frame(orjson.dumps({"type": "auth", "token": self.target.spec.token})))
        size = len(buf)
        target = self.target
        counts = target.counts
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            off = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                off = pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                off = pos + 10
            if size - off < n:
                break
            pos = off + n
            opcode = b0 & 0x0F
            if opcode == 0x1:
                # The type by slicing; the payload is copied only when it is needed.
                if buf.startswith(b'{"type":"', off):
                    kind = bytes(buf[off + 9 : buf.find(b'"', off + 9, pos)])
                else:
                    kind = b""
                if kind and kind == target.goal_kind and kind != target.spec.latency_type:
                    counts[kind] = counts.get(kind, 0) + 1
                    self._goal()
                else:
                    self._text(bytes(buf[off:pos]), now)
            elif opcode == 0x9:
                assert self.transport is not None
                self.transport.write(mask_frame(bytes(buf[off:pos]), 0xA))
            elif opcode == 0x8:
                assert self.transport is not None
                payload = bytes(buf[off:pos])
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.target.errors.append(f"closed by server: {code} {payload[2:]!r}")
                self.transport.close()
                break
        if buf is self.buf:
            if pos:
                del self.buf[:pos]
        elif pos < size:
            self.buf = bytearray(buf[pos:])

    # --- messages -----------------------------------------------------------------------

    def _goal(self) -> None:
        target = self.target
        self.goal_count += 1
        if self.goal_count == target.goal:
            target.reached += 1
            if target.reached == len(target.clients) and target.goal_future is not None \
                    and not target.goal_future.done():
                target.goal_future.set_result(time.monotonic())

    def _text(self, payload: bytes, now: float) -> None:
        target = self.target
        if payload.startswith(b'{"type":"'):
            kind = payload[9 : payload.find(b'"', 9)]
        else:
            start = payload.find(b'"type":"')
            kind = payload[start + 8 : payload.find(b'"', start + 8)] if start >= 0 else b"?"
        counts = target.counts
        counts[kind] = counts.get(kind, 0) + 1
        if kind == target.goal_kind:
            self._goal()
        if kind == target.spec.latency_type:
            at = payload.find(b'"timestamp":"')
            if at >= 0:
                ts = payload[at + 13 : payload.find(b'"', at + 13)]
                target.latencies.append(now - rfc3339_to_epoch(ts))
        elif kind == b"ping":
            assert self.transport is not None
            self.transport.write(mask_frame(PONG))
        elif kind == b"authenticated":
            if not self.authenticated.done():
                self.authenticated.set_result(None)
            asyncio.get_running_loop().create_task(self._after_auth())
        elif kind == b"error" and len(target.errors) < 20:
            target.errors.append(payload.decode("utf-8", "replace")[:200])

    async def _after_auth(self) -> None:
        spec = self.target.spec
        for i, message in enumerate(spec.after_auth):
            if i and spec.after_auth_gap:
                await asyncio.sleep(spec.after_auth_gap)
            self.send_json(message)

    def _fail(self, reason: str) -> None:
        if not self.authenticated.done():
            self.authenticated.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()


class Fleet:
    def __init__(self, conn: Connection, specs: list[TargetSpec], concurrency: int) -> None:
        self.conn = conn
        self.targets = {spec.name: Target(spec) for spec in specs}
        self.concurrency = concurrency
        self.stop = asyncio.Event()

    async def connect(self) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.concurrency)

        async def one(target: Target) -> None:
            async with sem:
                client = RawClient(target)
                target.clients.append(client)
                try:
                    await loop.create_connection(lambda: client, "127.0.0.1", target.spec.port)
                    await asyncio.wait_for(client.authenticated, 60)
                except (OSError, TimeoutError) as exc:
                    if len(target.errors) < 20:
                        target.errors.append(f"connect: {exc!r}")

        await asyncio.gather(*(one(t) for t in self.targets.values() for _ in range(t.spec.count)))
        return {name: sum(1 for c in t.clients if c.authenticated.done()
                          and c.authenticated.exception() is None and not c.closed)
                for name, t in self.targets.items()}

    def on_command(self) -> None:
        while self.conn.poll():
            command = self.conn.recv()
            kind = command[0]
            if kind == "expect":
                _, name, frame_type, n, timeout = command
                asyncio.get_running_loop().create_task(self._expect(name, frame_type.encode(), n, timeout))
            elif kind == "collect":
                _, name, reset = command
                target = self.targets[name]
                self.conn.send(("collected", {
                    "counts": {k.decode(): v for k, v in target.counts.items()},
                    "latencies": list(target.latencies),
                    "errors": list(target.errors),
                    "open": sum(1 for c in target.clients if not c.closed),
                }))
                if reset:
                    target.counts.clear()
                    target.latencies.clear()
            elif kind == "close":
                self.stop.set()

    async def _expect(self, name: str, frame_type: bytes, n: int, timeout: float) -> None:
        target = self.targets[name]
        future = target.arm(frame_type, n)
        self.conn.send(("armed",))
        try:
            done_at = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            done_at = float("nan")
        self.conn.send(("done", name, done_at, target.reached))

    async def run(self) -> None:
        ready = await self.connect()
        errors = [e for t in self.targets.values() for e in t.errors[:3]]
        self.conn.send(("ready", ready, errors))
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self.on_command)
        await self.stop.wait()
        loop.remove_reader(self.conn.fileno())
        for target in self.targets.values():
            for client in target.clients:
                if client.transport is not None:
                    client.transport.abort()
        with contextlib.suppress(Exception):
            self.conn.send(("closed",))


def _fleet_main(conn: Connection, specs: list[TargetSpec], concurrency: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (fork)
    raise_nofile()
    asyncio.run(Fleet(conn, specs, concurrency).run())


class FleetHandle:
    """The parent's side of one client process."""

    def __init__(self, specs: list[TargetSpec], concurrency: int = 64) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fleet_main, args=(child, specs, concurrency), daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client process {self.proc.pid} did not answer in {timeout:g} s")
        return self.conn.recv()

    def wait_ready(self, timeout: float = 180.0) -> tuple[dict[str, int], list[str]]:
        kind, ready, errors = self.recv(timeout)
        assert kind == "ready"
        return ready, errors

    def expect(self, target: str, frame_type: str, n: int, timeout: float) -> None:
        self.conn.send(("expect", target, frame_type, n, timeout))
        assert self.recv(30)[0] == "armed"

    def wait_done(self, timeout: float) -> tuple[float, int]:
        kind, _, done_at, reached = self.recv(timeout)
        assert kind == "done"
        return done_at, reached

    def collect(self, target: str, reset: bool = False) -> dict[str, Any]:
        self.conn.send(("collect", target, reset))
        kind, data = self.recv(60)
        assert kind == "collected"
        result: dict[str, Any] = data
        return result

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(("close",))
            self.recv(20)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@contextlib.contextmanager
def ready_fleets(specs_per_process: list[list[TargetSpec]], timeout: float = 180.0,
                 concurrency: int = 64) -> Iterator[list[FleetHandle]]:
    """One client process per spec list, every client of every target connected and
    authenticated (else RuntimeError); the processes are closed at exit."""
    fleets = [FleetHandle(specs, concurrency) for specs in specs_per_process]
    try:
        ready: dict[str, int] = {}
        errors: list[str] = []
        for fleet in fleets:
            fleet_ready, fleet_errors = fleet.wait_ready(timeout)
            for name, n in fleet_ready.items():
                ready[name] = ready.get(name, 0) + n
            errors.extend(fleet_errors)
        expected: dict[str, int] = {}
        for spec in (s for specs in specs_per_process for s in specs):
            expected[spec.name] = expected.get(spec.name, 0) + spec.count
        if any(ready.get(name, 0) != n for name, n in expected.items()):
            raise RuntimeError(f"only {ready} of {expected} clients authenticated: {errors[:3]}")
        yield fleets
    finally:
        for fleet in fleets:
            fleet.close()


def collect_all(fleets: list[FleetHandle], target: str) -> list[dict[str, Any]]:
    """Every fleet's counts, latencies and errors of `target` since the last call (reset)."""
    return [fleet.collect(target, reset=True) for fleet in fleets]


@dataclass(frozen=True)
class Collected:
    """`collect_all`'s answers merged: latencies in ms, frames by type, errors."""

    latencies_ms: list[float]
    counts: dict[str, int]
    errors: list[str]

    @property
    def frames(self) -> int:
        return sum(self.counts.values())


def merged(data: list[dict[str, Any]]) -> Collected:
    counts: dict[str, int] = {}
    for d in data:
        for kind, n in d["counts"].items():
            counts[kind] = counts.get(kind, 0) + n
    return Collected([x * 1000.0 for d in data for x in d["latencies"]], counts,
                     [e for d in data for e in d["errors"]])


def split(total: int, parts: int) -> list[int]:
    """`total` clients over `parts` processes, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
