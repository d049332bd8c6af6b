"""The one reconnect backoff (src/openpanel_ws/backoff.py), with plain calls."""

from __future__ import annotations

import pytest

from openpanel_ws.backoff import Backoff


def test_no_jitter_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.25, 1.0)
    assert [b.next_delay() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == 0.25


@pytest.mark.parametrize(("jitter", "r", "expected"), [
    (1.0, 0.0, 4.0), (1.0, 0.75, 1.0),   # full jitter: (0, d]
    (0.5, 0.0, 4.0), (0.5, 0.999, 2.002),  # half: [d/2, d]
])
def test_jitter_takes_a_fraction_of_the_delay(jitter: float, r: float, expected: float) -> None:
    b = Backoff(1.0, 30.0, jitter, rand=lambda: r)
    b.attempts = 2  # d = 4
    assert b.next_delay() == pytest.approx(expected)


def test_max_attempts_ends_in_none() -> None:
    b = Backoff(1.0, 2.0, max_attempts=2)
    assert [b.next_delay(), b.next_delay(), b.next_delay()] == [1.0, 2.0, None]


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    b = Backoff(1.0, 30.0)
    b.attempts = 10_000
    assert b.next_delay() == 30.0


@pytest.mark.parametrize(("initial", "cap", "jitter"), [(0, 1, 0), (2, 1, 0), (1, 2, 1.5)])
def test_nonsense_is_refused(initial: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, jitter)
