"""`/ws/metrics`: the machine's CPU, memory, disk and network.

The numbers describe the gateway's machine, so they are the metrics of every host on
this machine (a `unix://` engine); a subscribe naming a remote host is refused
(docs/protocol.md "The `host` field").

One sampler task per distinct interval, shared by all its subscribers: it starts with
the first subscriber and stops when the last one leaves. Each tick reads the host once,
encodes the message once and hands the same bytes to every subscriber as a conflated
latest-value frame, so a slow dashboard gets the newest sample, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field

from openpanel_ws import protocol
from openpanel_ws.gateways.access import resolve_host
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.machine.metrics import MachineReader, MachineSample, Reading, Usage, machine_sample
from openpanel_ws.protocol import Message, rfc3339
from openpanel_ws.services import Services

__all__ = [
    "FRESH_SECONDS",
    "MIN_CPU_WINDOW",
    "MetricsGateway",
    "MetricsState",
    "Sampler",
    "metrics_message",
    "next_deadline",
    "subscribed_message",
    "unsubscribed_message",
]

log = logging.getLogger(__name__)

# CPU percent needs some time between two readings to mean anything.
MIN_CPU_WINDOW = 0.2
# A late joiner gets the sampler's last sample if it is at most this old; otherwise one
# sample is taken for it at once (and reused by other joiners within this window).
FRESH_SECONDS = 1.0

_keys = itertools.count(1)


@dataclass(eq=False)
class Sampler:
    """The shared upstream of one interval."""

    interval_ms: int
    # session -> its latest-value key (a new key per subscription, see `_subscribe`)
    subscribers: dict[Session[MetricsState], str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    prev: Reading | None = None  # baseline of the next tick: this sampler's last tick
    payload: bytes | None = None  # the last sample's JSON (`send_latest` frames it once)
    payload_at: float = 0.0
    ticks: int = 0
    failing: bool = False

    @property
    def period(self) -> float:
        return self.interval_ms / 1000.0


@dataclass(frozen=True, slots=True)
class MetricsState:
    """A connection's metrics subscription (`Session.state`): its interval and the
    latest-value key its frames are conflated under."""

    interval_ms: int
    key: str


# --- wire format (docs/protocol.md "Metrics") ----------------------------------------


def _usage(usage: Usage) -> Message:
    return {"total": usage.total, "used": usage.used, "free": usage.free,
            "percent": usage.percent}


def metrics_message(sample: MachineSample) -> Message:
    """The `metrics` message of one sample.

    The specification's fields come first and keep their exact names and meaning; the
    rest (`perCore`, `loadAverage`, `swap`, `uptime`, `rx_rate`, `tx_rate`) are additive.
    """
    return {
        "type": "metrics",
        "timestamp": rfc3339(sample.wall),
        "system": {
            "cpu": {
                "usage": sample.cpu_usage,
                "cores": sample.cores,
                "perCore": list(sample.per_core),
                "loadAverage": list(sample.load),
            },
            "memory": _usage(sample.memory),
            "disk": _usage(sample.disk),
            "network": {
                "rx_bytes": sample.rx_bytes,
                "tx_bytes": sample.tx_bytes,
                "rx_rate": sample.rx_rate,
                "tx_rate": sample.tx_rate,
            },
            "swap": _usage(sample.swap),
            "uptime": sample.uptime,
        },
    }


def subscribed_message(interval_ms: int) -> Message:
    return {"type": "subscribed", "interval": interval_ms}


def unsubscribed_message() -> Message:
    return {"type": "unsubscribed"}


def next_deadline(deadline: float, period: float, now: float) -> float:
    """The next tick after `deadline`; slots missed on a loaded machine are skipped, not
    burst out, and the sampler keeps its phase."""
    deadline += period
    if deadline <= now:
        deadline += period * math.ceil((now - deadline) / period + 1e-9)
    return deadline


class MetricsGateway(Gateway[MetricsState]):
    """`/ws/metrics`: one subscription per connection (`Session.state`), one shared
    sampler per distinct interval."""

    name = "metrics"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.reader = MachineReader(
            self.settings.metrics_disk_path,
            include_virtual=self.settings.metrics_include_virtual_interfaces,
        )
        self._samplers: dict[int, Sampler] = {}
        self._last: Reading | None = None  # newest reading of any sampler
        self._disk_error_logged = False
        # Counters for tests and operators.
        self.samples_taken = 0
        self.samplers_started = 0

    def handlers(self) -> dict[str, Handler[MetricsState]]:
        return {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe}

    # --- introspection -----------------------------------------------------------------

    @property
    def sampler_count(self) -> int:
        return len(self._samplers)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s.subscribers) for s in self._samplers.values())

    def sampler(self, interval_ms: int) -> Sampler | None:
        return self._samplers.get(interval_ms)

    # --- messages ------------------------------------------------------------------------

    def _check_host(self, session: Session[MetricsState], msg: Message) -> None:
        """The request's host must be one this principal may see, on this machine."""
        host = resolve_host(self.services.hosts, session, msg)
        if not host.on_this_machine:
            error = protocol.invalid(
                f"Host metrics are not available for remote host '{host.id}'", "host")
            error.context["host"] = host.id
            raise error

    async def _subscribe(self, session: Session[MetricsState], msg: Message) -> None:
        interval = protocol.interval_ms(msg)  # raises INVALID_MESSAGE before any change
        self._check_host(session, msg)
        old = session.state
        if old is not None:
            # Drop an unsent frame of the old subscription. A fresh key per subscription
            # keeps the old key's queue slot from carrying the new frame ahead of the ack.
            session.discard_latest(old.key)
            if old.interval_ms != interval:
                self._leave(session, old)
        sub = MetricsState(interval, f"metrics#{next(_keys)}")
        session.state = sub
        session.send(subscribed_message(interval))
        sampler = self._samplers.get(interval)
        if sampler is None:
            sampler = self._start_sampler(interval)
        sampler.subscribers[session] = sub.key
        self._first_sample(sampler, session, sub.key)

    async def _unsubscribe(self, session: Session[MetricsState], msg: Message) -> None:
        resolve_host(self.services.hosts, session, msg)
        self._end(session, discard_unsent=True)
        session.send(unsubscribed_message())

    async def on_disconnect(self, session: Session[MetricsState]) -> None:
        self._end(session, discard_unsent=False)

    def _end(self, session: Session[MetricsState], *, discard_unsent: bool) -> None:
        """The session's subscription (if any) ends; `discard_unsent`: its unsent frame
        too (the connection lives on)."""
        old, session.state = session.state, None
        if old is None:
            return
        if discard_unsent:
            session.discard_latest(old.key)
        self._leave(session, old)

    async def stop(self) -> None:
        samplers = list(self._samplers.values())
        self._samplers.clear()
        for sampler in samplers:
            sampler.subscribers.clear()
            await self._cancel(sampler)

    # --- samplers ------------------------------------------------------------------------

    def _leave(self, session: Session[MetricsState], sub: MetricsState) -> None:
        sampler = self._samplers.get(sub.interval_ms)
        if sampler is None:
            return
        sampler.subscribers.pop(session, None)
        if not sampler.subscribers:
            del self._samplers[sub.interval_ms]
            if sampler.task is not None:
                sampler.task.cancel()

    async def _cancel(self, sampler: Sampler) -> None:
        if sampler.task is not None:
            sampler.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler.task

    def _start_sampler(self, interval_ms: int) -> Sampler:
        sampler = Sampler(interval_ms)
        self._samplers[interval_ms] = sampler
        sampler.task = asyncio.get_running_loop().create_task(
            self._run(sampler), name=f"metrics-sampler-{interval_ms}"
        )
        self.samplers_started += 1
        return sampler

    def _first_sample(self, sampler: Sampler, session: Session[MetricsState], key: str) -> None:
        """A new subscriber gets a sample now, not after a full interval."""
        if sampler.payload is None or sampler.prev is None:
            return  # the sampler is warming up: its first tick is at most MIN_CPU_WINDOW away
        if time.monotonic() - sampler.payload_at > FRESH_SECONDS:
            # Out-of-band sample over the period since the sampler's last tick; the tick
            # baseline is left alone so the shared samples keep measuring whole periods.
            payload = self._sample(sampler.prev)
            if payload is None:
                return
            sampler.payload, sampler.payload_at = payload, time.monotonic()
        assert sampler.payload is not None
        session.send_latest(key, sampler.payload)

    def _read(self) -> Reading:
        reading = self.reader.read()
        self._last = reading
        return reading

    def _sample(self, prev: Reading | None) -> bytes | None:
        try:
            reading = self._read()
        except Exception:
            log.exception("metrics: reading the host failed")
            return None
        self._note_disk()
        self.samples_taken += 1
        return protocol.encode(metrics_message(machine_sample(prev, reading)))

    def _note_disk(self) -> None:
        error = self.reader.disk_error
        if error is not None and not self._disk_error_logged:
            log.warning("metrics: disk path unreadable (reporting zeros): %s", error)
        self._disk_error_logged = error is not None

    def _tick(self, sampler: Sampler) -> None:
        try:
            reading = self._read()
        except Exception:
            if not sampler.failing:  # log a failure streak once, not every tick
                log.exception("metrics: reading the host failed")
            sampler.failing = True
            return
        sampler.failing = False
        self._note_disk()
        payload = protocol.encode(metrics_message(machine_sample(sampler.prev, reading)))
        sampler.prev = reading
        sampler.payload, sampler.payload_at = payload, reading.monotonic
        sampler.ticks += 1
        self.samples_taken += 1
        for session, key in sampler.subscribers.items():
            session.send_latest(key, payload)

    async def _run(self, sampler: Sampler) -> None:
        # Baseline: the newest reading of any sampler if it is recent, else a fresh one;
        # then wait until the CPU window is long enough for the first tick.
        base = self._last
        now = time.monotonic()
        if base is None or now - base.monotonic > sampler.period:
            try:
                base = self._read()
            except Exception:
                log.exception("metrics: reading the host failed")
                base = None
        if base is not None:
            sampler.prev = base
            await asyncio.sleep(max(0.0, base.monotonic + MIN_CPU_WINDOW - time.monotonic()))
        deadline = time.monotonic()
        while True:
            self._tick(sampler)
            deadline = next_deadline(deadline, sampler.period, time.monotonic())
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
