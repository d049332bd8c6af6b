"""`/ws/containers`: the gateway, its four handlers and `subscription_ended`
(docs/containers.md); the package docstring says what it serves and how."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from openpanel_ws import protocol
from openpanel_ws.engine.eventdata import EngineEvent, event_action
from openpanel_ws.engine.stats import Pacer
from openpanel_ws.gateways.access import (
    container_names,
    docker_unavailable,
    permission_denied,
    resolve_container,
    resolve_host,
)
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.containers.logs import LOGS, LogSub, LogUpstream
from openpanel_ws.gateways.containers.requests import LogsRequest, StatsRequest, container_ref
from openpanel_ws.gateways.containers.stats import STATS, StatsSub, StatsUpstream
from openpanel_ws.gateways.containers.upstream import (
    ContainersState,
    Subscription,
    Upstream,
    UpstreamKey,
    UpstreamLinks,
    UpstreamRegistry,
)
from openpanel_ws.hosts.status import HostState, HostStatus
from openpanel_ws.protocol import Message
from openpanel_ws.sendqueue import QueueLimits

if TYPE_CHECKING:
    from openpanel_ws.hosts.registry import Host
    from openpanel_ws.services import Services

__all__ = ["PERMISSION_REASON", "REMOVED_REASON", "ContainersGateway", "ended_message"]

log = logging.getLogger(__name__)

REMOVED_REASON: Final = "container_removed"
PERMISSION_REASON: Final = "permission"


@dataclass(frozen=True, slots=True)
class Target:
    """The container a subscribe names, as its host's engine resolved it."""

    host: Host
    container_id: str
    names: tuple[str, ...]
    tty: bool

    @property
    def key(self) -> UpstreamKey:
        return (self.host.id, self.container_id)


def ended_message(kind: str, container_ref: str, reason: str = REMOVED_REASON,
                  host: str | None = None) -> Message:
    """The end of a subscription the client did not ask for (documented in docs/containers.md)."""
    message: Message = {
        "type": "subscription_ended",
        "subscription": kind,
        "containerId": container_ref,
        "reason": reason,
        "message": "Container removed" if reason == REMOVED_REASON else "Permission denied",
        "timestamp": protocol.rfc3339(),
    }
    if host is not None:
        message["host"] = host
    return message


# --- the gateway ------------------------------------------------------------------------


class ContainersGateway(Gateway[ContainersState]):
    name = "containers"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.log_upstreams: UpstreamRegistry[LogUpstream] = UpstreamRegistry(self._update_listeners)
        self.stats_upstreams: UpstreamRegistry[StatsUpstream] = UpstreamRegistry(
            self._update_listeners)
        self._registries: dict[str, UpstreamRegistry[Any]] = {
            LOGS: self.log_upstreams, STATS: self.stats_upstreams}
        self._links: dict[str, UpstreamLinks] = {}  # by host id, made on first use
        # The event listener of each host whose events this gateway listens to.
        self._listening: dict[str, Callable[[EngineEvent], None]] = {}
        services.hosts.add_status_listener(self._on_host_status)

    def handlers(self) -> dict[str, Handler[ContainersState]]:
        return {
            "subscribe_logs": self.subscribe_logs,
            "unsubscribe_logs": self.unsubscribe_logs,
            "subscribe_stats": self.subscribe_stats,
            "unsubscribe_stats": self.unsubscribe_stats,
        }

    def lane(self, message: Message) -> str:
        # One lane per subscription (kind + host + container): a hung request for one
        # container (or one host) never holds up the others, nor the other kind of the
        # same container; replies for one subscription stay in order (docs/protocol.md
        # "Hostile clients").
        ref = message.get("containerId")
        if not isinstance(ref, str):
            return ""
        host = message.get("host")
        kind = str(message.get("type", "")).rpartition("_")[2]
        return f"{kind}\0{host if isinstance(host, str) else ''}\0{ref}"

    @staticmethod
    def state(session: Session[ContainersState]) -> ContainersState:
        if session.state is None:
            session.state = ContainersState()
        return session.state

    def _host(self, session: Session[ContainersState], msg: Message, ref: str) -> Host:
        """The request's host, checked against the `hosts` claim (docs/protocol.md "Hosts")."""
        return resolve_host(self.services.hosts, session, msg, {"containerId": ref})

    def links(self, host: Host) -> UpstreamLinks:
        links = self._links.get(host.id)
        if links is None:
            links = self._links[host.id] = UpstreamLinks(
                host.engine, self._on_finished, self._on_removed, host.id, self._on_unavailable)
        return links

    async def _admit(self, session: Session[ContainersState], kind: str, host: Host, ref: str,
                     ack: Message) -> Target | None:
        """Inspect the container if this principal may see it, and acknowledge; None
        when the answer came too late (the session closed, or the same subscription
        was made meanwhile)."""
        info = await resolve_container(host, session.user, ref)
        if session.closed or (kind, host.id, ref) in self.state(session).subs:
            return None
        names = tuple(container_names(info))
        user = session.user
        if not (user.may_access_host(host.id) and user.may_access_container(names)):
            # The claims changed (re-auth) while the engine answered.
            raise permission_denied({"containerId": ref, "host": host.id})
        session.send(ack)
        return Target(host, str(info["Id"]), names, bool((info.get("Config") or {}).get("Tty")))

    # --- logs ---------------------------------------------------------------------------

    async def subscribe_logs(self, session: Session[ContainersState], msg: Message) -> None:
        request = LogsRequest.parse(msg)
        host = self._host(session, msg, request.ref)
        ack: Message = {"type": "subscribed_logs", "containerId": request.ref, "host": host.id}
        if (LOGS, host.id, request.ref) in self.state(session).subs:
            session.send(ack)
            return
        target = await self._admit(session, LOGS, host, request.ref, ack)
        if target is None:
            return

        def make() -> LogUpstream:
            return LogUpstream(self.links(host), target.container_id, tty=target.tty,
                               max_line=self.settings.log_line_max_bytes,
                               limits=QueueLimits(self.settings.send_queue_max,
                                                  self.settings.send_queue_max_bytes))

        def join(upstream: LogUpstream) -> None:
            sub = LogSub(session, request.ref, target.names, upstream)
            upstream.add(sub, request.tail, request.since)
            self.state(session).subs[sub.key] = sub

        self.log_upstreams.attach(target.key, make, join)

    async def unsubscribe_logs(self, session: Session[ContainersState], msg: Message) -> None:
        await self._unsubscribe(LOGS, session, msg)

    # --- stats --------------------------------------------------------------------------

    async def subscribe_stats(self, session: Session[ContainersState], msg: Message) -> None:
        request = StatsRequest.parse(msg)
        host = self._host(session, msg, request.ref)
        ack: Message = {"type": "subscribed_stats", "containerId": request.ref,
                        "interval": request.interval, "host": host.id}
        existing = self.state(session).subs.get((STATS, host.id, request.ref))
        if isinstance(existing, StatsSub):
            # Same subscription, possibly a new interval.
            existing.pacer.set_interval(request.interval / 1000)
            session.send(ack)
            return
        target = await self._admit(session, STATS, host, request.ref, ack)
        if target is None:
            return

        def join(upstream: StatsUpstream) -> None:
            sub = StatsSub(session, request.ref, target.names, upstream,
                           Pacer(request.interval / 1000))
            upstream.add(sub)
            self.state(session).subs[sub.key] = sub

        self.stats_upstreams.attach(
            target.key, lambda: StatsUpstream(self.links(host), target.container_id), join)

    async def unsubscribe_stats(self, session: Session[ContainersState], msg: Message) -> None:
        await self._unsubscribe(STATS, session, msg)

    # --- both kinds ---------------------------------------------------------------------

    async def _unsubscribe(self, kind: str, session: Session[ContainersState], msg: Message) -> None:
        ref = container_ref(msg)
        host = self._host(session, msg, ref)
        state = session.state
        sub = state.subs.pop((kind, host.id, ref), None) if state is not None else None
        if sub is not None:
            await self._drop(sub)
        session.send({"type": f"unsubscribed_{kind}", "containerId": ref, "host": host.id})

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
            sub.session.send(ended_message(upstream.kind, sub.ref, host=upstream.host))

    def _on_unavailable(self, upstream: Upstream[Any]) -> None:
        """The host's engine does not answer: each subscriber is told; the subscriptions
        stay and resume when it answers again (docs/protocol.md "A host that is down or
        hangs")."""
        for sub in list(upstream.subs):
            sub.session.send(docker_unavailable(sub.ref, upstream.host).to_message())

    def _on_host_status(self, status: HostStatus) -> None:
        """A host went down (its probe or events stream failed, e.g. it hangs) or came
        back: its upstreams report the outage now rather than when their own streams
        notice."""
        for registry in self._registries.values():
            for upstream in registry.on_host(status.host):
                if status.state is HostState.DOWN:
                    upstream.engine_failed()
                elif status.state is HostState.UP:
                    upstream.engine_answered()

    def _update_listeners(self) -> None:
        """Listen to the events of exactly the hosts that hold upstreams."""
        wanted = self.log_upstreams.hosts() | self.stats_upstreams.hosts()
        for host_id in wanted - self._listening.keys():
            host = self.services.hosts.get(host_id)
            if host is not None:
                listener = self._event_listener(host_id)
                host.events.add_listener(listener)
                self._listening[host_id] = listener
        for host_id in self._listening.keys() - wanted:
            listener = self._listening.pop(host_id)
            host = self.services.hosts.get(host_id)
            if host is not None:
                host.events.remove_listener(listener)

    def _event_listener(self, host_id: str) -> Callable[[EngineEvent], None]:
        def on_event(event: EngineEvent) -> None:
            self._on_event(host_id, event)
        return on_event

    def _on_event(self, host_id: str, event: EngineEvent) -> None:
        if event.get("Type") != "container":
            return
        actor = event.get("Actor")
        container_id = actor.get("ID") if isinstance(actor, dict) else None
        container_id = container_id or event.get("id")
        action = event_action(event)
        if not isinstance(container_id, str) or not action:
            return
        self.log_upstreams.notify((host_id, container_id), action)
        self.stats_upstreams.notify((host_id, container_id), action)

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
        """Re-auth: every live subscription is checked against the new claims (its host
        against `hosts`, its container against `containers`)."""
        state = session.state
        if state is None:
            return
        user = session.user
        for sub in list(state.subs.values()):
            if not (user.may_access_host(sub.host) and user.may_access_container(sub.names)):
                state.discard(sub)
                await self._drop(sub)
                session.send(ended_message(sub.kind, sub.ref, PERMISSION_REASON, sub.host))

    async def stop(self) -> None:
        self.services.hosts.remove_status_listener(self._on_host_status)
        await self.log_upstreams.close_all()
        await self.stats_upstreams.close_all()

    # For tests and the bench: engine streams held by this gateway's upstreams.
    def upstream_counts(self) -> dict[str, int]:
        return {LOGS: len(self.log_upstreams), STATS: len(self.stats_upstreams)}
