"""Re-auth and token expiry in the sans-I/O lifecycle, with injected clocks."""

from typing import Any

from openpanel_ws.auth import AuthError, Principal
from openpanel_ws.connection import Authenticated, Close, Connection, LifecycleConfig, Send, State
from openpanel_ws.ratelimit import RateLimit

WALL0 = 1_800_000_000.0  # wall clock when the monotonic clock reads 0

TOKENS = {
    "alice-exp100": Principal("alice", expires_at=WALL0 + 100),
    "alice-exp500": Principal("alice", expires_at=WALL0 + 500),
    "alice-scoped": Principal("alice", container_scopes=("web-*",), expires_at=WALL0 + 500),
    "alice-noexp": Principal("alice"),
    "bob": Principal("bob", expires_at=WALL0 + 500),
}


class Clocks:
    def __init__(self) -> None:
        self.mono = 0.0

    def wall(self) -> float:
        return WALL0 + self.mono


def verify(token: Any) -> Principal:
    try:
        return TOKENS[token]
    except KeyError:
        raise AuthError("Invalid token") from None


def make(clocks: Clocks, leeway: float = 30.0) -> Connection:
    config = LifecycleConfig(rate_limit=RateLimit(100, 1.0), heartbeat_interval=1000.0,
                             jwt_leeway=leeway)
    return Connection("c", config, verify, now=0.0, wall_clock=clocks.wall)


def auth(c: Connection, token: str, now: float) -> list[Any]:
    return c.receive_text(f'{{"type":"auth","token":"{token}"}}', now)


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, Send)]


def test_expiry_closes_at_exp_plus_leeway() -> None:
    clocks = Clocks()
    c = make(clocks)
    auth(c, "alice-exp100", 0.0)
    assert c.next_deadline() == 130.0
    assert c.tick(129.9) == []
    actions = c.tick(130.0)
    assert sent(actions) == [{"type": "error", "code": "AUTH_FAILED", "message": "Token expired"}]
    assert actions[-1] == Close(4001, "Token expired")
    assert c.state is State.CLOSED


def test_a_fresh_auth_moves_the_expiry() -> None:
    clocks = Clocks()
    c = make(clocks)
    auth(c, "alice-exp100", 0.0)
    clocks.mono = 50.0
    actions = auth(c, "alice-exp500", 50.0)
    assert isinstance(actions[-1], Authenticated) and not actions[-1].first
    assert c.next_deadline() == 530.0
    assert c.tick(200.0) == []
    assert c.state is State.OPEN


def test_a_token_without_exp_never_expires_the_connection() -> None:
    c = make(Clocks())
    auth(c, "alice-noexp", 0.0)
    assert c.next_deadline() == 1000.0  # the heartbeat only


def test_reauth_with_another_subject_is_refused() -> None:
    c = make(Clocks())
    auth(c, "alice-exp500", 0.0)
    actions = auth(c, "bob", 1.0)
    assert sent(actions)[0]["code"] == "AUTH_FAILED"
    assert isinstance(actions[-1], Close) and actions[-1].code == 4001
    assert c.state is State.CLOSED
    assert c.principal is not None and c.principal.user_id == "alice"


def test_reauth_with_the_same_subject_replaces_the_claims() -> None:
    c = make(Clocks())
    auth(c, "alice-exp500", 0.0)
    actions = auth(c, "alice-scoped", 1.0)
    assert isinstance(actions[-1], Authenticated)
    assert actions[-1].principal.container_scopes == ("web-*",)
    assert c.principal is not None and c.principal.container_scopes == ("web-*",)
