"""The harness's one wait helper: value, timeout with evidence, fail-fast on death (offline)."""

from __future__ import annotations

import itertools
import time

import pytest

from harness.base.wait import Count, WaitStalled, WaitTimeout, wait_until
from harness.cluster.interfaces import NodeDied


def test_returns_the_first_truthy_value() -> None:
    polls = itertools.count()
    assert wait_until(lambda: next(polls) >= 3 and "ready", timeout=5, interval=0,
                      what="three polls") == "ready"
    assert next(polls) == 4  # polled exactly four times, then stopped


def test_timeout_names_what_and_last_value_and_carries_evidence() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: [], timeout=0.05, interval=0.01, what="the backup's dialogs",
                   evidence=lambda: "last log lines:\nboom")
    err = info.value
    assert str(err) == "timed out after 0.05s waiting for the backup's dialogs (last: [])"
    assert err.what == "the backup's dialogs" and err.last == []
    assert err.__notes__ == ["last log lines:\nboom"]


def test_a_failing_evidence_does_not_hide_the_timeout() -> None:
    def broken() -> str:
        raise OSError("log gone")

    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: 0, timeout=0.01, interval=0.01, what="x", evidence=broken)
    assert info.value.__notes__ == ["(evidence unavailable: log gone)"]


def test_a_death_ends_the_wait_at_once_not_at_the_deadline() -> None:
    def dead() -> None:
        raise NodeDied("node backup died at 12:00:00.000 (exit code 255)")

    started = time.monotonic()
    with pytest.raises(NodeDied, match="node backup died"):
        wait_until(lambda: False, timeout=30, what="anything", alive=dead)
    assert time.monotonic() - started < 1


def test_an_outcome_that_came_with_the_death_still_counts() -> None:
    def dead() -> None:  # pragma: no cover - must not be reached
        raise NodeDied("late")

    assert wait_until(lambda: 7, timeout=1, what="x", alive=dead) == 7


# -- progress and stall detection, on a fake clock -------------------------------------------

class FakeClock:
    """time.monotonic and time.sleep that only move when the wait sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


def test_count_is_truthy_once_the_target_is_reached() -> None:
    assert not Count(9, 10) and Count(10, 10) and Count(11, 10)
    assert repr(Count(3, 10)) == "3/10"


def test_progress_reports_the_last_value_at_its_own_pace() -> None:
    clock, counts, seen = FakeClock(), itertools.count(), []
    wait_until(lambda: Count(next(counts), 50), timeout=60, what="50 polls", interval=0.2,
               progress=lambda v, t: seen.append((v.n, round(t, 1))), progress_every=2.0,
               clock=clock, sleep=clock.sleep)
    # one line per 2 s of the 10 s it took, each with the value of that poll
    assert seen == [(10, 2.0), (20, 4.0), (30, 6.0), (40, 8.0)]
    assert round(sum(clock.slept), 1) == 10.0  # nothing but the poll interval


def test_a_value_that_stops_moving_ends_the_wait_early() -> None:
    clock = FakeClock()
    values = iter([Count(n, 100) for n in (0, 1, 2, 3)])
    stuck = Count(3, 100)
    with pytest.raises(WaitStalled) as info:
        wait_until(lambda: next(values, stuck), timeout=600, what="100 calls held", interval=1.0,
                   stall=20.0, clock=clock, sleep=clock.sleep, evidence=lambda: "SIPp: dead")
    err = info.value
    assert isinstance(err, WaitTimeout) and err.last == stuck
    assert str(err) == "no progress for 20s (after 23s) waiting for 100 calls held (last: 3/100)"
    assert err.__notes__ == ["SIPp: dead"]
    assert clock.now - 100.0 == pytest.approx(23.0)  # last change at 3 s, + 20 s; not 600 s


def test_a_value_that_keeps_moving_runs_to_the_deadline() -> None:
    clock, counts = FakeClock(), itertools.count()
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: Count(next(counts), 10**9), timeout=60, what="slow", interval=1.0,
                   stall=5.0, clock=clock, sleep=clock.sleep)
    assert type(info.value) is WaitTimeout and clock.now - 100.0 == pytest.approx(60.0)
    assert str(info.value) == "timed out after 60s waiting for slow (last: 60/1000000000)"
