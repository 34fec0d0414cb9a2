"""A failover run on one time axis, for the report's pictures: what happened when.

Pure, like `metrics`: computed from the `Evidence` alone (the capture's datagrams,
SIPp's per-call results, the kill and VIP-move instants), so every mark of the picture
can be checked offline. Times are absolute (the capture's and SIPp's clock, both the
host's wall clock); the pictures show them relative to the kill.

What is on it:

- the calls held (SIPp's ``HELD`` marker of each call) and ended (``END``);
- the kill (the primary signalled, then gone) and the VIP move (``Cluster.failover()``
  ran from the primary gone to its return);
- the proxy address's SIP answers (mostly the prober's OPTIONS around the kill) and,
  among them, the last before the kill and the first after it: the service gap;
- each call's recovery: its re-INVITE's first send and the 200 OK it got;
- the BIN dialog packets each node sent, counted per 10 ms bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.experiments.failover.metrics import Gap, service_gap, split_capture
from harness.experiments.failover.result import Evidence
from harness.instruments.sipp import CallResult

#: the width of a bucket of BIN packets, seconds
BUCKET_S = 0.010


@dataclass(frozen=True)
class Recovery:
    """One call's re-INVITE after the failover: first sent, answered 200 (SIPp's clock)."""

    call_id: str
    sent: float
    answered: float

    @property
    def ms(self) -> float:
        return (self.answered - self.sent) * 1000.0


@dataclass(frozen=True)
class Timeline:
    """The marks and series of a run's picture (absolute times, seconds)."""

    kill_at: float
    vip_moved_at: float | None
    gap: Gap | None
    #: the primary signalled (SIGKILL or SIGSTOP); kill_at: it was gone
    kill_started_at: float | None
    #: SIGKILL or SIGSTOP
    signal: str
    #: every SIP response the proxy address sent, in order
    answers: list[float]
    held: list[float]
    ended: list[float]
    #: recovered re-INVITEs, by first send
    recoveries: list[Recovery]
    #: node name ("primary", "backup") -> the BIN dialog packets it sent, in order
    bin_sent: dict[str, list[float]] = field(default_factory=dict)

    @property
    def zero(self) -> float:
        """The pictures' time origin: the primary signalled (when known), else gone."""
        return self.kill_started_at if self.kill_started_at is not None else self.kill_at

    @property
    def span(self) -> tuple[float, float]:
        """From the first event of the run to its last (the kill when there is nothing)."""
        times = [self.kill_at, *self.held[:1], *self.held[-1:], *self.ended[-1:],
                 *self.answers[:1], *self.answers[-1:],
                 *(r.answered for r in self.recoveries[-1:])]
        for sent in self.bin_sent.values():
            times += [*sent[:1], *sent[-1:]]
        return min(times), max(times)

    @property
    def takeover(self) -> tuple[float, float]:
        """The window a person zooms into: from 100 ms before the earliest mark (the
        signal, the last answer) to 300 ms after the latest (the first answer, the VIP
        move done), so the first recovered calls show too."""
        marks = [self.kill_at, *(t for t in (self.kill_started_at, self.vip_moved_at) if t is not None)]
        if self.gap is not None:
            marks += [self.gap.last_before, self.gap.first_after]
        return min(marks) - 0.1, max(marks) + 0.3


def timeline_from(ev: Evidence) -> Timeline:
    """The picture's marks and series from the evidence of a run."""
    sip, bins = split_capture(ev.datagrams)
    answers = [w.t for w in sip if w.src == ev.proxy and w.msg.is_response]
    names = {ev.primary_bin: "primary", ev.backup_bin: "backup"}
    bin_sent: dict[str, list[float]] = {"primary": [], "backup": []}
    for b in bins:
        if b.src in names:
            bin_sent[names[b.src]].append(b.t)
    return Timeline(
        kill_at=ev.kill_at, vip_moved_at=ev.vip_moved_at,
        gap=service_gap(sip, ev.proxy, ev.kill_at), kill_started_at=ev.kill_started_at,
        signal="SIGKILL" if ev.mode == "kill" else "SIGSTOP", answers=answers,
        held=sorted(c.events["HELD"] for c in ev.summary.calls if "HELD" in c.events),
        ended=sorted(c.events["END"] for c in ev.summary.calls if "END" in c.events),
        recoveries=recoveries(ev.summary.calls), bin_sent=bin_sent)


def recoveries(calls: Iterable[CallResult]) -> list[Recovery]:
    """Each call whose re-INVITE (CSeq 2) got a 200: when it left SIPp, when the 200 came
    (the same pairs as `metrics.recovery_times`), by first send."""
    out = []
    for c in calls:
        sent = c.first_sent("INVITE", 2)
        final = c.final_response("INVITE", 2)
        if sent is not None and final is not None and final.code == 200:
            out.append(Recovery(c.call_id, sent, final.t))
    return sorted(out, key=lambda r: (r.sent, r.call_id))


def per_bucket(times: Sequence[float], start: float, end: float,
               width: float = BUCKET_S) -> list[int]:
    """How many of ``times`` fall in each ``width``-wide bucket from ``start`` on (the
    last bucket holds ``end``); times outside [start, end] are not counted."""
    if end < start or width <= 0:
        raise ValueError(f"no buckets from {start} to {end} by {width}")
    n = int(math.floor((end - start) / width)) + 1
    counts = [0] * n
    for t in times:
        if start <= t <= end:
            counts[min(n - 1, int((t - start) / width))] += 1
    return counts


def cdf(values: Iterable[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF: the sorted values and, for each, the fraction at or below it."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
