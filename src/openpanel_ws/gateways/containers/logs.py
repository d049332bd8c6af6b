"""Container logs: one engine `logs?follow=1` stream per container, shared by every
subscriber (docs/containers.md "One upstream per container").

The stream belongs to no subscriber: it starts at "now" and never uses a client's
`tail`/`since`. Every subscriber is attached to the live stream at once (its lines
held back), its own history is fetched by a separate non-follow request, and
`HandoverFilter` joins the two with no gap and no duplicate. When the stream ends
(container stopped, engine restarted) the upstream waits for the container's next
`start` and re-opens with `since` = its `FollowCursor`, dropping what was already
delivered; a failing stream backs off (capped exponential).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from openpanel_ws.backoff import Backoff
from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.logs import ContainerLogLine, FollowCursor, HandoverFilter, LogParser
from openpanel_ws.engine.streams import pump, time_param
from openpanel_ws.gateways.containers.upstream import (
    BACKOFF_INITIAL,
    Subscription,
    Upstream,
    UpstreamLinks,
    next_wait,
)
from openpanel_ws.gateways.hold import Hold, cut_off
from openpanel_ws.outbound import text_frame
from openpanel_ws.sendqueue import QueueLimits

__all__ = ["LOGS", "LogSub", "LogUpstream", "log_frame"]

log = logging.getLogger(__name__)

LOGS: Final = "logs"
# A late subscriber's history is fetched with at least this many lines, so the handover
# can recognise the shared stream's older lines even when the client asked for few.
HANDOVER_WINDOW: Final = 100
# A logs stream that keeps failing is retried at most this often.
STREAM_BACKOFF_MAX: Final = 30.0
# A logs stream that lived at least this long was healthy: the backoff starts over.
HEALTHY_STREAM_SECONDS: Final = 5.0
# The shared logs stream starts this long before it was created (see LogUpstream).
START_MARGIN_NANOS: Final = 1_000_000_000
LOGS_PARAMS: Final = {"stdout": True, "stderr": True, "timestamps": True}


@dataclass(eq=False)
class LogSub(Subscription):
    kind: ClassVar[str] = LOGS
    upstream: LogUpstream
    # Live lines (and their frames) held while this subscriber's history is being
    # fetched (None: live).
    held: Hold[tuple[ContainerLogLine, bytes]] | None = None
    handover: HandoverFilter | None = None
    history_task: asyncio.Task[None] | None = None
    joined_nanos: int = 0


def log_frame(container_ref: str, line: ContainerLogLine, host: str | None = None) -> bytes:
    """The `log` message for one line, framed (built once per distinct `containerId`);
    `host` names the container's host (docs/protocol.md "The `host` field")."""
    message: dict[str, Any] = {
        "type": "log",
        "containerId": container_ref,
        "timestamp": line.timestamp,
        "stream": line.stream,
        "data": line.data,
    }
    if host is not None:
        message["host"] = host
    return text_frame(orjson.dumps(message))


def line_frame(sub: LogSub, line: ContainerLogLine, frames: dict[str, bytes]) -> bytes:
    """The line's frame for `sub`: encoded and framed once per distinct `containerId`
    text, the same bytes for each subscriber."""
    frame = frames.get(sub.ref)
    if frame is None:
        frame = frames[sub.ref] = log_frame(sub.ref, line, sub.host)
    return frame


def _by_time(line: ContainerLogLine) -> int:
    return line.nanos


class LogUpstream(Upstream[LogSub]):
    kind: ClassVar[str] = LOGS

    def __init__(self, links: UpstreamLinks, container_id: str, *, tty: bool, max_line: int,
                 limits: QueueLimits) -> None:
        super().__init__(links, container_id)
        self.tty = tty
        self.cursor = FollowCursor()
        # The shared stream belongs to no subscriber: it starts at "now" (a little before,
        # so nothing falls between it and a subscriber's history request) and resumes by
        # its own cursor. A subscriber's `tail`/`since` shape only its own history.
        self.start_nanos = time.time_ns() - START_MARGIN_NANOS
        self.backoff = Backoff(BACKOFF_INITIAL, STREAM_BACKOFF_MAX, jitter=0.0)
        self.max_line = max_line
        # Lines held for a late subscriber while its history is fetched are bounded as
        # the send queue is (`Hold`): past it, the subscriber is a slow consumer.
        self.limits = limits

    def _parser(self) -> LogParser:
        return LogParser(tty=self.tty, max_line_bytes=self.max_line)

    def _follow_params(self) -> dict[str, Any]:
        """The shared stream's request: right after the last delivered line; with nothing
        delivered yet, the current run, but never before the stream began."""
        since = self.cursor.since_param()
        if since is None:
            since = time_param(max(self.start_nanos, self.finished_at or 0))
        return {**LOGS_PARAMS, "follow": True, "tail": "all", "since": since}

    async def run(self) -> None:
        while self.subs:
            failed = False
            opened_at = time.monotonic()
            try:
                await pump(self.engine.stream_chunks(self.path + "/logs", self._follow_params()),
                           self._parser(), self.deliver)
            except EngineNotFound:
                pass  # removed, or about to be: wait_running decides
            except EngineError as exc:
                failed = True
                log.info("logs stream of %s on %s interrupted: %s", self.container_id[:12],
                         self.host, exc)
                if isinstance(exc, EngineUnavailable):
                    self.engine_failed()
            # A failing upstream (engine error, or a stream that ends at once while the
            # container runs) backs off exponentially, capped, instead of spinning.
            if time.monotonic() - opened_at >= HEALTHY_STREAM_SECONDS and not failed:
                self.backoff.reset()
            if failed:
                await asyncio.sleep(next_wait(self.backoff))
            settle = 0.0 if failed else next_wait(self.backoff)
            if not await self.wait_running(settle=settle):
                self.end_removed()
                return
            # The next stream resumes right after the last delivered line (the cursor
            # drops what it replays); never-seen output of a new run starts after the
            # previous run finished.
            self.cursor.begin_replay()

    def deliver(self, lines: list[ContainerLogLine]) -> None:
        # stdout and stderr are logged in arrival order, each line stamped when read:
        # put what arrived together back in time order (stable: split lines stay put).
        lines.sort(key=_by_time)
        for line in lines:
            if not self.cursor.admit(line):
                continue
            frames: dict[str, bytes] = {}
            for sub in list(self.subs):
                if sub.held is not None:
                    frame = line_frame(sub, line, frames)
                    if sub.held.push((line, frame), len(frame)) is not None:
                        cut_off(sub.session)
                    continue
                if sub.handover is not None:
                    if not sub.handover.admit(line):
                        continue
                    if sub.handover.done:
                        sub.handover = None
                sub.session.send_frame(line_frame(sub, line, frames))

    def add(self, sub: LogSub, tail: int | str, since: int | None) -> None:
        """Attach a subscriber to the live stream at once (its lines held) and fetch its
        own history by a separate request."""
        sub.held = Hold(self.limits)
        sub.joined_nanos = time.time_ns()
        self.subs[sub] = None
        sub.history_task = asyncio.get_running_loop().create_task(
            self._history(sub, tail, since), name=f"logs-history-{self.container_id[:12]}"
        )

    async def _history(self, sub: LogSub, tail: int | str, since: int | None) -> None:
        """A late subscriber's backlog by a separate non-follow request; then live."""
        fetch: int | str = "all" if tail == "all" else max(int(tail), HANDOVER_WINDOW)
        params: dict[str, Any] = {**LOGS_PARAMS, "tail": fetch}
        if since is not None:
            params["since"] = time_param(since)
        history: list[ContainerLogLine] = []
        try:
            await pump(self.engine.stream_chunks(self.path + "/logs", params),
                       self._parser(), history.extend)
            history.sort(key=_by_time)
        except EngineError as exc:
            # No history (engine trouble): the subscriber still gets the live lines.
            log.info("logs history of %s failed: %s", self.container_id[:12], exc)
        if sub not in self.subs:
            return
        shown = history if tail == "all" else history[len(history) - int(tail):] if tail else []
        for i, line in enumerate(shown):
            sub.session.send_frame(log_frame(sub.ref, line, sub.host))
            if i % 256 == 255:
                await asyncio.sleep(0)  # let the writer drain a big backlog
                if sub not in self.subs:
                    return
        # A `since` in the future gives an empty history, then the live lines: the
        # handover floor is never later than the moment the subscriber joined.
        floor = None if since is None else min(since, sub.joined_nanos)
        handover = HandoverFilter(history, floor)
        held, sub.held = sub.held.release() if sub.held is not None else [], None
        for line, frame in held:
            if handover.admit(line):
                sub.session.send_frame(frame)
        sub.handover = None if handover.done else handover
        sub.history_task = None

    def remove(self, sub: LogSub) -> None:
        self.subs.pop(sub, None)
        if sub.history_task is not None:
            sub.history_task.cancel()
            sub.history_task = None
