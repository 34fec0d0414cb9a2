"""The harness's one wait helper: value, timeout with evidence, fail-fast on death (offline)."""

from __future__ import annotations

import itertools
import time

import pytest

from harness.node import NodeDied
from harness.wait import WaitTimeout, wait_until


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
