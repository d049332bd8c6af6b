"""The terminal gateway's typed `Session.state`: a `TerminalState`, changed only by `bind`,
`TerminalState.release` and `unbind`, read through `bound_terminal`."""

from __future__ import annotations

from typing import Any, cast

from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle
from openpanel_ws.gateways.terminal.live import Terminal, TerminalState, bound_terminal, unbind


class FakeTerminal:
    """What a `TerminalState` reads of its terminal: which state holds it, its lifecycle."""

    def __init__(self) -> None:
        self.attached: TerminalState | None = None
        self.lifecycle = TerminalLifecycle(session_id="session-1", host="local", container_ref="web",
                                           container_id="c1", container_name="web", shell="/bin/sh",
                                           started_at=0.0, idle_timeout=60.0, now=0.0)


def session() -> Session[TerminalState]:
    return Session("client-1", cast(Any, None))


def attach(s: Session[TerminalState], fake: FakeTerminal) -> TerminalState:
    attached = fake.attached = TerminalState.bind(s, cast(Terminal, fake))
    return attached


def test_an_idle_connection_holds_nothing() -> None:
    s = session()
    assert s.state is None and bound_terminal(s) is None and unbind(s) is None


def test_bind_makes_the_terminal_the_sessions_own() -> None:
    s, fake = session(), FakeTerminal()
    attached = attach(s, fake)
    assert s.state is attached
    assert bound_terminal(s) is cast(Terminal, fake)


def test_a_closing_terminal_is_no_longer_bound_but_stays_until_unbound() -> None:
    s, fake = session(), FakeTerminal()
    attached = attach(s, fake)
    fake.lifecycle.begin_close("User closed")
    assert bound_terminal(s) is None
    assert s.state is attached  # stale until the teardown (or a new open) drops it
    assert unbind(s) is attached and s.state is None


def test_release_leaves_a_newer_binding_alone() -> None:
    s, old_terminal, new_terminal = session(), FakeTerminal(), FakeTerminal()
    old = attach(s, old_terminal)
    new = attach(s, new_terminal)
    old.release()
    assert s.state is new
    new.release()
    assert s.state is None


def test_a_binding_taken_over_elsewhere_is_not_current() -> None:
    first, second, fake = session(), session(), FakeTerminal()
    old = attach(first, fake)
    attach(second, fake)  # a resume on another connection
    assert not old.current
    assert bound_terminal(first) is None
    assert bound_terminal(second) is cast(Terminal, fake)
