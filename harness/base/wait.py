"""The one way the harness waits: poll an observed condition until a deadline.

Every wait in the harness (a node's MI answering, a namespace emptying, SIPp's calls
held, a capture holding the BIN packets the primary counted, a backup holding every
dialog, SIPp ending its calls, the evidence judged) goes through `wait_until`, so each
one has a timeout, a poll interval, a sentence saying what it waited for, evidence
attached when it gives up, and gives up at once when what it waits on has died
(``alive`` raises, e.g. `NodeDied`) instead of reporting the death as a timeout. Long
waits report ``progress`` and may give up early when what they watch stopped moving
(``stall``). Never a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.base.errors import HarnessError

T = TypeVar("T")

#: how much of the condition's last value a timeout message quotes
_LAST_CHARS = 200


class WaitTimeout(HarnessError, TimeoutError, Generic[T]):
    """What we waited for did not happen in time.

    ``last`` is the condition's last (falsy) value, for callers that report a
    partial outcome (e.g. how many dialogs were still listed) instead of failing.
    """

    def __init__(self, message: str, what: str, last: T) -> None:
        super().__init__(message)
        self.what = what
        self.last = last


class WaitStalled(WaitTimeout[T]):
    """The condition's value stopped changing for ``stall`` seconds before the deadline."""


@dataclass(frozen=True)
class Count:
    """A count towards a target, as a condition's value: truthy once ``n >= want``.

    Progress lines and stall detection watch it (a stall is ``n`` not moving).
    """

    n: int
    want: int

    def __bool__(self) -> bool:
        return self.n >= self.want

    def __repr__(self) -> str:
        return f"{self.n}/{self.want}"


def _quote(value: object) -> str:
    last = repr(value)
    return last[:_LAST_CHARS] + "…" if len(last) > _LAST_CHARS else last


def wait_until(cond: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05,
               alive: Callable[[], None] | None = None,
               evidence: Callable[[], str] | None = None,
               progress: Callable[[T, float], None] | None = None, progress_every: float = 2.0,
               stall: float | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Poll ``cond()`` every ``interval`` s until it is truthy; return that value.

    ``alive()`` is called after every falsy poll and should raise when the thing we
    wait on is gone (the condition is polled once more first, so an outcome that
    arrived with the death still counts). ``progress(value, elapsed)`` is called with
    the last falsy value at most every ``progress_every`` s. With ``stall``, a value
    that did not change (``==``) for that long ends the wait with `WaitStalled`. At the
    deadline: `WaitTimeout` naming ``what`` and the last value, with ``evidence()``
    (e.g. a log tail) as a note. ``clock`` and ``sleep`` are for tests (fake time).
    """
    start = clock()
    deadline = start + timeout
    last_report = changed_at = start
    seen: list[T] = []  # the previous falsy value, once there is one
    while True:
        value = cond()
        if value:
            return value
        if alive is not None:
            alive()
        now = clock()
        if not seen or value != seen[0]:
            seen[:] = [value]
            changed_at = now
        err: WaitTimeout[T] | None = None
        if now >= deadline:
            err = WaitTimeout(f"timed out after {timeout:g}s waiting for {what} "
                              f"(last: {_quote(value)})", what, value)
        elif stall is not None and now - changed_at >= stall:
            err = WaitStalled(f"no progress for {stall:g}s (after {now - start:.0f}s) waiting for "
                              f"{what} (last: {_quote(value)})", what, value)
        if err is not None:
            if evidence is not None:
                try:
                    err.add_note(evidence())
                except Exception as exc:  # evidence must never hide the timeout
                    err.add_note(f"(evidence unavailable: {exc})")
            raise err
        if progress is not None and now - last_report >= progress_every:
            last_report = now
            progress(value, now - start)
        sleep(min(interval, deadline - now))
