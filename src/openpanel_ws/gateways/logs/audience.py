"""Which hosts a /ws/logs client hears from, as plain code (docs/protocol.md "The `host`
field", "Host scopes").

On `/ws/logs`: every host the principal's `hosts` claim allows; on `/hosts/{id}/ws/logs`:
that host only, and nothing when the claim does not allow it (or no such host exists).
Machine log file lines (the gateway's own machine) go to clients without a `containers`
scope on the plain endpoint, unless their `hosts` claim allows only hosts elsewhere, and
on the route of a host on this machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from openpanel_ws.auth import Principal

__all__ = ["Audience", "HostView", "audience_of"]


class HostView(Protocol):
    """What the audience rule needs of a host (`hosts.registry.Host` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def on_this_machine(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Audience:
    hosts: frozenset[str]  # ids of the hosts whose events, lines and host_status it gets
    machine: bool  # it gets the lines of the machine's log files


def audience_of(hosts: Iterable[HostView], principal: Principal, route: str | None) -> Audience:
    """The audience of a client of `principal` on the route of host `route` (None: the
    plain endpoint)."""
    visible = [h for h in hosts
               if principal.may_access_host(h.id) and (route is None or h.id == route)]
    on_machine = any(h.on_this_machine for h in visible)
    if principal.container_scopes is not None:
        machine = False  # machine log lines are about the whole machine
    elif route is not None:
        machine = on_machine
    else:
        machine = principal.host_scopes is None or on_machine
    return Audience(frozenset(h.id for h in visible), machine)
