"""Which hosts a /ws/logs client hears from, with plain calls."""

from dataclasses import dataclass

from openpanel_ws.auth import Principal
from openpanel_ws.gateways.logs.audience import Audience, audience_of


@dataclass(frozen=True)
class FakeHost:
    id: str
    on_this_machine: bool


HOSTS = [FakeHost("local", True), FakeHost("edge-1", False), FakeHost("edge-2", False)]


def principal(**claims: object) -> Principal:
    return Principal(user_id="u", roles=frozenset({"admin"}), **claims)  # type: ignore[arg-type]


def test_the_plain_endpoint_hears_every_host_the_claim_allows() -> None:
    assert audience_of(HOSTS, principal(), None) == Audience(
        frozenset({"local", "edge-1", "edge-2"}), True)
    assert audience_of(HOSTS, principal(host_scopes=("edge-*",)), None) == Audience(
        frozenset({"edge-1", "edge-2"}), False)  # only remote hosts: no machine lines
    assert audience_of(HOSTS, principal(host_scopes=()), None) == Audience(frozenset(), False)


def test_a_host_route_hears_its_host_only_and_nothing_out_of_scope() -> None:
    assert audience_of(HOSTS, principal(), "edge-1") == Audience(frozenset({"edge-1"}), False)
    assert audience_of(HOSTS, principal(), "local") == Audience(frozenset({"local"}), True)
    assert audience_of(HOSTS, principal(host_scopes=("local",)), "edge-1") == Audience(
        frozenset(), False)
    assert audience_of(HOSTS, principal(), "nowhere") == Audience(frozenset(), False)


def test_a_container_scope_never_gets_machine_lines() -> None:
    scoped = principal(container_scopes=("web-*",))
    assert audience_of(HOSTS, scoped, None).machine is False
    assert audience_of(HOSTS, scoped, "local") == Audience(frozenset({"local"}), False)
