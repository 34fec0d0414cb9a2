"""The one way the harness waits: poll an observed condition until a deadline.

Every wait in the harness (a node's MI answering, a namespace emptying, SIPp's calls
held, a capture holding the BIN packets the primary counted, a backup holding every
dialog) goes through `wait_until`, so each one has a timeout, a poll interval, a
sentence saying what it waited for, evidence attached when it gives up, and gives up
at once when what it waits on has died (``alive`` raises, e.g. `NodeDied`) instead of
reporting the death as a timeout. Never a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: how much of the condition's last value a timeout message quotes
_LAST_CHARS = 200


class WaitTimeout(TimeoutError, Generic[T]):
    """What we waited for did not happen in time.

    ``last`` is the condition's last (falsy) value, for callers that report a
    partial outcome (e.g. how many dialogs were still listed) instead of failing.
    """

    def __init__(self, message: str, what: str, last: T) -> None:
        super().__init__(message)
        self.what = what
        self.last = last


def wait_until(cond: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05,
               alive: Callable[[], None] | None = None,
               evidence: Callable[[], str] | None = None) -> T:
    """Poll ``cond()`` every ``interval`` s until it is truthy; return that value.

    ``alive()`` is called after every falsy poll and should raise when the thing we
    wait on is gone (the condition is polled once more first, so an outcome that
    arrived with the death still counts). At the deadline: `WaitTimeout` naming
    ``what`` and the last value, with ``evidence()`` (e.g. a log tail) as a note.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if alive is not None:
            alive()
        left = deadline - time.monotonic()
        if left <= 0:
            last = repr(value)
            if len(last) > _LAST_CHARS:
                last = last[:_LAST_CHARS] + "…"
            err: WaitTimeout[T] = WaitTimeout(
                f"timed out after {timeout:g}s waiting for {what} (last: {last})", what, value)
            if evidence is not None:
                try:
                    err.add_note(evidence())
                except Exception as exc:  # evidence must never hide the timeout
                    err.add_note(f"(evidence unavailable: {exc})")
            raise err
        time.sleep(min(interval, left))
