"""How the bench steps the offered rate to find the largest one absorbed with zero loss.

Double from ``start`` while a step loses nothing (up to ``ceiling``); after the first
loss, bisect between the last clean rate and the first lossy one ``refine`` times
(halve instead while no rate was clean yet).
The number of steps is bounded by construction (log2(ceiling/start) + 1 + refine), so
the bench ends in a known time whatever the node does. Pure: ``probe(rate)`` does
the measuring, so the logic is tested with made-up nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass
class Search(Generic[R]):
    """Every step taken, and what they say."""

    steps: list[tuple[float, bool, R]] = field(default_factory=list)

    @property
    def capacity(self) -> float | None:
        """The largest rate that lost nothing (None: even the first lost)."""
        clean = [rate for rate, ok, _ in self.steps if ok]
        return max(clean) if clean else None

    @property
    def first_loss(self) -> float | None:
        """The smallest rate that lost something (None: the ceiling was clean)."""
        lossy = [rate for rate, ok, _ in self.steps if not ok]
        return min(lossy) if lossy else None


def step_rates(probe: Callable[[float], tuple[bool, R]], *, start: float, ceiling: float,
               refine: int = 2, stop: Callable[[R], bool] = lambda r: False) -> Search[R]:
    """Run ``probe(rate) -> (clean, result)`` over doubling, then bisected, rates.

    ``stop(result)`` ends the search at once (e.g. the node died or ran out of
    memory: further steps would measure the wreck).
    """
    if start <= 0 or ceiling < start:
        raise ValueError(f"need 0 < start <= ceiling (start {start}, ceiling {ceiling})")
    search: Search[R] = Search()

    def run(rate: float) -> bool:
        ok, result = probe(rate)
        search.steps.append((rate, ok, result))
        return not stop(result)

    rate = start
    while True:
        if not run(rate):
            return search
        if not search.steps[-1][1]:
            break
        if rate >= ceiling:
            return search
        rate = min(rate * 2, ceiling)
    for _ in range(refine):
        good, bad = search.capacity, search.first_loss
        if good is None and bad is not None:  # even the start lost: look below it
            if not run(round(bad / 2)):
                break
            continue
        if good is None or bad is None or bad - good <= good * 0.05:
            break
        if not run(round((good + bad) / 2)):
            break
    return search
