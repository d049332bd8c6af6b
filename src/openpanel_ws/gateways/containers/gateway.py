"""`/ws/containers`: the gateway, its four handlers and `subscription_ended`
(docs/containers.md); the package docstring says what it serves and how."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from openpanel_ws import protocol
from openpanel_ws.engine.eventdata import EngineEvent, event_action
from openpanel_ws.engine.stats import Pacer
from openpanel_ws.gateways.access import container_names, resolve_container
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.containers.logs import LOGS, LogSub, LogUpstream
from openpanel_ws.gateways.containers.requests import LogsRequest, StatsRequest, container_ref
from openpanel_ws.gateways.containers.stats import STATS, StatsSub, StatsUpstream
from openpanel_ws.gateways.containers.upstream import (
    ContainersState,
    Subscription,
    Upstream,
    UpstreamLinks,
    UpstreamRegistry,
)
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError
from openpanel_ws.sendqueue import QueueLimits

if TYPE_CHECKING:
    from openpanel_ws.services import Services

__all__ = ["PERMISSION_REASON", "REMOVED_REASON", "ContainersGateway", "ended_message"]

log = logging.getLogger(__name__)

REMOVED_REASON: Final = "container_removed"
PERMISSION_REASON: Final = "permission"


@dataclass(frozen=True, slots=True)
class Target:
    """The container a subscribe names, as the engine resolved it."""

    container_id: str
    names: tuple[str, ...]
    tty: bool


def ended_message(kind: str, container_ref: str, reason: str = REMOVED_REASON) -> Message:
    """The end of a subscription the client did not ask for (documented in docs/containers.md)."""
    return {
        "type": "subscription_ended",
        "subscription": kind,
        "containerId": container_ref,
        "reason": reason,
        "message": "Container removed" if reason == REMOVED_REASON else "Permission denied",
        "timestamp": protocol.rfc3339(),
    }


# --- the gateway ------------------------------------------------------------------------


class ContainersGateway(Gateway[ContainersState]):
    name = "containers"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.log_upstreams: UpstreamRegistry[LogUpstream] = UpstreamRegistry(self._update_listener)
        self.stats_upstreams: UpstreamRegistry[StatsUpstream] = UpstreamRegistry(
            self._update_listener)
        self._registries: dict[str, UpstreamRegistry[Any]] = {
            LOGS: self.log_upstreams, STATS: self.stats_upstreams}
        self._links = UpstreamLinks(services.engine, self._on_finished, self._on_removed)
        self._listening = False

    def handlers(self) -> dict[str, Handler[ContainersState]]:
        return {
            "subscribe_logs": self.subscribe_logs,
            "unsubscribe_logs": self.unsubscribe_logs,
            "subscribe_stats": self.subscribe_stats,
            "unsubscribe_stats": self.unsubscribe_stats,
        }

    def lane(self, message: Message) -> str:
        # One lane per subscription (kind + container): a hung request for one container
        # never holds up the others, nor the other kind of the same container; replies
        # for one subscription stay in order (docs/protocol.md "Hostile clients").
        ref = message.get("containerId")
        if not isinstance(ref, str):
            return ""
        kind = str(message.get("type", "")).rpartition("_")[2]
        return f"{kind}\0{ref}"

    @staticmethod
    def state(session: Session[ContainersState]) -> ContainersState:
        if session.state is None:
            session.state = ContainersState()
        return session.state

    async def _admit(self, session: Session[ContainersState], kind: str, ref: str,
                     ack: Message) -> Target | None:
        """Inspect the container if this principal may see it, and acknowledge; None
        when the answer came too late (the session closed, or the same subscription
        was made meanwhile)."""
        info = await resolve_container(self.services.hosts.default, session.user, ref)
        if session.closed or (kind, ref) in self.state(session).subs:
            return None
        names = tuple(container_names(info))
        if not session.user.may_access_container(names):
            # The claims changed (re-auth) while the engine answered.
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "Permission denied",
                                context={"containerId": ref})
        session.send(ack)
        return Target(str(info["Id"]), names, bool((info.get("Config") or {}).get("Tty")))

    # --- logs ---------------------------------------------------------------------------

    async def subscribe_logs(self, session: Session[ContainersState], msg: Message) -> None:
        request = LogsRequest.parse(msg)
        ack: Message = {"type": "subscribed_logs", "containerId": request.ref}
        if (LOGS, request.ref) in self.state(session).subs:
            session.send(ack)
            return
        target = await self._admit(session, LOGS, request.ref, ack)
        if target is None:
            return

        def make() -> LogUpstream:
            return LogUpstream(self._links, target.container_id, tty=target.tty,
                               max_line=self.settings.log_line_max_bytes,
                               limits=QueueLimits(self.settings.send_queue_max,
                                                  self.settings.send_queue_max_bytes))

        def join(upstream: LogUpstream) -> None:
            sub = LogSub(session, request.ref, target.names, upstream)
            upstream.add(sub, request.tail, request.since)
            self.state(session).subs[sub.key] = sub

        self.log_upstreams.attach(target.container_id, make, join)

    async def unsubscribe_logs(self, session: Session[ContainersState], msg: Message) -> None:
        await self._unsubscribe(LOGS, session, msg)

    # --- stats --------------------------------------------------------------------------

    async def subscribe_stats(self, session: Session[ContainersState], msg: Message) -> None:
        request = StatsRequest.parse(msg)
        ack: Message = {"type": "subscribed_stats", "containerId": request.ref,
                        "interval": request.interval}
        existing = self.state(session).subs.get((STATS, request.ref))
        if isinstance(existing, StatsSub):
            # Same subscription, possibly a new interval.
            existing.pacer.set_interval(request.interval / 1000)
            session.send(ack)
            return
        target = await self._admit(session, STATS, request.ref, ack)
        if target is None:
            return

        def join(upstream: StatsUpstream) -> None:
            sub = StatsSub(session, request.ref, target.names, upstream,
                           Pacer(request.interval / 1000))
            upstream.add(sub)
            self.state(session).subs[sub.key] = sub

        self.stats_upstreams.attach(
            target.container_id,
            lambda: StatsUpstream(self._links, target.container_id), join)

    async def unsubscribe_stats(self, session: Session[ContainersState], msg: Message) -> None:
        await self._unsubscribe(STATS, session, msg)

    # --- both kinds ---------------------------------------------------------------------

    async def _unsubscribe(self, kind: str, session: Session[ContainersState], msg: Message) -> None:
        ref = container_ref(msg)
        state = session.state
        sub = state.subs.pop((kind, ref), None) if state is not None else None
        if sub is not None:
            await self._drop(sub)
        session.send({"type": f"unsubscribed_{kind}", "containerId": ref})

    async def _drop(self, sub: Subscription) -> None:
        """The subscriber leaves its upstream; the last one out closes it."""
        upstream = sub.upstream
        upstream.remove(sub)
        await self._registries[upstream.kind].release(upstream)

    # --- upstream callbacks -------------------------------------------------------------

    def _on_finished(self, upstream: Upstream[Any]) -> None:
        """An upstream task ended on its own (removed container, failure)."""
        self._registries[upstream.kind].forget(upstream)

    def _on_removed(self, upstream: Upstream[Any]) -> None:
        """The container is gone: tell each subscriber and drop the subscriptions."""
        for sub in list(upstream.subs):
            state = sub.session.state
            if state is not None:
                state.discard(sub)
            upstream.remove(sub)
            sub.session.send(ended_message(upstream.kind, sub.ref))

    def _update_listener(self) -> None:
        wanted = bool(len(self.log_upstreams) or len(self.stats_upstreams))
        if wanted and not self._listening:
            self.services.events.add_listener(self._on_event)
            self._listening = True
        elif not wanted and self._listening:
            self.services.events.remove_listener(self._on_event)
            self._listening = False

    def _on_event(self, event: EngineEvent) -> None:
        if event.get("Type") != "container":
            return
        actor = event.get("Actor")
        container_id = actor.get("ID") if isinstance(actor, dict) else None
        container_id = container_id or event.get("id")
        action = event_action(event)
        if not isinstance(container_id, str) or not action:
            return
        self.log_upstreams.notify(container_id, action)
        self.stats_upstreams.notify(container_id, action)

    # --- lifecycle ----------------------------------------------------------------------

    async def on_disconnect(self, session: Session[ContainersState]) -> None:
        state = session.state
        if state is None:
            return
        subs = list(state.subs.values())
        state.subs.clear()
        for sub in subs:
            await self._drop(sub)

    async def on_principal_changed(self, session: Session[ContainersState]) -> None:
        """Re-auth: every live subscription is checked against the new claims."""
        state = session.state
        if state is None:
            return
        user = session.user
        for sub in list(state.subs.values()):
            if not user.may_access_container(sub.names):
                state.discard(sub)
                await self._drop(sub)
                session.send(ended_message(sub.kind, sub.ref, PERMISSION_REASON))

    async def stop(self) -> None:
        await self.log_upstreams.close_all()
        await self.stats_upstreams.close_all()

    # For tests and the bench: engine streams held by this gateway's upstreams.
    def upstream_counts(self) -> dict[str, int]:
        return {LOGS: len(self.log_upstreams), STATS: len(self.stats_upstreams)}
