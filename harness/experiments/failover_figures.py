"""Failover figures from the evidence of one run: which calls were lost, and how fast.

Pure (no I/O, no clock): `result_from` turns what `harness.experiments.failover` collected (the
capture's datagrams, SIPp's per-call results, the backup's MI figures) into a
`FailoverResult`, so every figure can be checked offline.

What counts as *not lost*: a call is recovered when its re-INVITE (CSeq 2) and its BYE
both got a 200 **and** the backup proved that its dialog module matched them to the
replicated dialog — the backup sent BIN ``updated`` (the re-INVITE moved the
dialog's cseq) and ``deleted`` (the BYE ended it) for that Call-ID after the kill, as
seen in the capture (to any destination) or as received by the run's live witness (a
pybin peer every node also replicates to, `Evidence.witnessed`). The witness is what
makes the proof independent of the dead primary: packets the backup addresses to it may
never reach the wire (a dead host's neighbour entry fails and the kernel drops them),
and tcpdump may drop some under load; either source suffices. A 200 alone proves nothing: ``loose_route`` would relay an in-dialog
request to the callee (which answers 200) even for a dialog the backup never had.
``lost`` is N minus the recovered calls; the reason for each is kept.

What is measured (all times from one clock: the capture's, or SIPp's for recovery):

- ``service_gap_ms``: the last SIP response the proxy address (VIP:SIP port) sent before
  the split point → the first it sent after. The split is taken once ``kill()`` (or
  ``freeze()``) returned and before the VIP moves: every answer before it is the
  primary's, every one after the backup's, and the kill's own duration (~20 ms locally,
  the primary answers until its processes are gone) cannot be mistaken for the gap. A prober sends an OPTIONS with
  ``Max-Forwards: 0`` to the VIP every ``probe_interval`` seconds from the harness
  address; whoever holds the VIP answers 483 at once without touching any dialog, so
  the gap measures the takeover itself (kill → VIP moved → ARP → answering), not the
  quiet time this scenario spends waiting for replication before the kill.
  Resolution: one probe interval.
- ``recovery_ms_p50/p95/p99``: per call, SIPp's first send of the post-failover
  re-INVITE → the 200 OK it received for it (retransmissions included in the wait).
  All calls are released at once, so this is the backup's latency under a burst of N.
- ``replication_lag_ms_p50/p99``: per call, the capture time of the 200 OK to the
  initial INVITE leaving the VIP towards the caller (the primary forwarding it) → the
  capture time of the first BIN packet from the primary's BIN address to the backup's
  carrying that Call-ID (``created``, or ``updated`` when 1.10.5's ``created`` lost its
  race with the ACK). It is the time until the dialog is *on the wire* to the backup;
  the backup's own processing is not included. It can be negative: the dialog module
  may send ``created`` before tm writes the 200 OK out.

Percentiles are nearest-rank (the smallest sample with at least q% of samples at or
below it): with 200 samples p99 is the 198th smallest, an actually observed value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.instruments.sip import SipMessage, sip_datagram
from harness.instruments.sipp import CallResult, Request, SippSummary
from pybin.dialog import Command
from pybin.errors import PybinError
from pybin.pcap import CapturedDatagram
from pybin.wire import MARKER

Addr = tuple[str, int]
CallKey = tuple[str, "str | None", "str | None"]

JSON_KEYS = ("calls", "lost", "service_gap_ms", "recovery_ms_p50", "recovery_ms_p95",
             "recovery_ms_p99", "replication_lag_ms_p50", "replication_lag_ms_p99", "backend",
             # at scale (issue 11): the rates achieved, what had to be sent again or failed,
             # the backup's shared memory, and what the run could not finish
             "setup_rate", "release_rate", "release_rate_asked", "retransmissions",
             "failed_requests", "backup_shm_used_before", "backup_shm_used_after",
             "backup_shm_max_used", "backup_alive", "backup_errors", "missing_on_backup",
             "backup_dialogs_left", "timed_out", "deadline_s",
             # where the proof of recovery came from: the backup's BIN packets after the
             # kill in the capture and at the live witness; packets tcpdump dropped
             "backup_bin_captured", "backup_bin_witnessed", "capture_drops", "lost_calls")
#: lost calls listed in the JSON (all are counted in ``lost``)
LOST_LISTED = 50


# --------------------------------------------------------------------------- metrics (pure)


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 100) of ``values``; None when there are none.

    Nearest rank, not interpolation: a reported p99 is a latency some call really had.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must be in (0, 100], not {q}")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class WireSip:
    """A SIP datagram seen on the cluster network."""

    t: float
    src: Addr
    dst: Addr
    msg: SipMessage


@dataclass(frozen=True)
class WireBin:
    """A BIN dialog packet seen on the cluster network."""

    t: float
    src: Addr
    dst: Addr
    command: int
    call_id: str


def split_capture(datagrams: Iterable[CapturedDatagram]) -> tuple[list[WireSip], list[WireBin]]:
    """SIP and BIN dialog datagrams of a capture, in capture order; the rest is ignored."""
    from pybin.dialog import decode

    sip: list[WireSip] = []
    bins: list[WireBin] = []
    for d in datagrams:
        if d.data.startswith(MARKER):
            try:
                m = decode(d.data)
            except PybinError:
                continue  # not a dialog packet (warm-up probes) or damaged: not evidence
            bins.append(WireBin(d.timestamp, d.src, d.dst, int(m.command),
                                m.call_id.decode("utf-8", "replace")))
            continue
        msg = sip_datagram(d.data, d.timestamp)
        if msg is not None:
            sip.append(WireSip(d.timestamp, d.src, d.dst, msg))
    return sip, bins


@dataclass(frozen=True)
class Gap:
    """The proxy's last answer before the kill and its first after (capture times)."""

    last_before: float
    first_after: float

    @property
    def ms(self) -> float:
        return (self.first_after - self.last_before) * 1000.0


def service_gap(sip: Sequence[WireSip], proxy: Addr, kill_at: float) -> Gap | None:
    """Gap between the proxy address's last SIP response before ``kill_at`` and its first after.

    Every response sent from the VIP before the kill came from the primary (it held the
    VIP) and every one after from the backup (the primary is dead or frozen), so time
    alone tells them apart. None when either side has no response.
    """
    answers = [w.t for w in sip if w.src == proxy and w.msg.is_response]
    before = [t for t in answers if t < kill_at]
    after = [t for t in answers if t >= kill_at]
    if not before or not after:
        return None
    return Gap(max(before), min(after))


def replication_lags(sip: Sequence[WireSip], bins: Sequence[WireBin], proxy: Addr,
                     primary_bin: Addr, backup_bin: Addr,
                     until: float = math.inf) -> dict[str, float]:
    """Call-ID → seconds from the primary forwarding the 200 OK to the initial INVITE to
    the first BIN packet carrying that dialog from the primary to the backup.

    Only events before ``until`` (the kill) count. Calls missing either event are absent.
    """
    ok_at: dict[str, float] = {}
    for w in sip:
        m = w.msg
        if (w.t < until and w.src == proxy and m.code == 200 and m.method == "INVITE"
                and m.call_id and m.call_id not in ok_at):
            ok_at[m.call_id] = w.t  # the first 200 to an INVITE is the initial one's
    sent_at: dict[str, float] = {}
    for b in bins:
        if (b.t < until and b.src == primary_bin and b.dst == backup_bin
                and b.command in (Command.CREATED, Command.UPDATED) and b.call_id not in sent_at):
            sent_at[b.call_id] = b.t
    return {cid: sent_at[cid] - t for cid, t in ok_at.items() if cid in sent_at}


def backup_commands(bins: Sequence[WireBin], backup_bin: Addr, after: float) -> dict[str, set[int]]:
    """Call-ID → BIN commands the backup sent after ``after``: proof it matched the dialog.

    A backup replicates only its own dialog events: ``updated`` means an in-dialog
    request moved a dialog it holds, ``deleted`` that a BYE ended one.
    """
    out: dict[str, set[int]] = {}
    for b in bins:
        if b.t >= after and b.src == backup_bin:
            out.setdefault(b.call_id, set()).add(b.command)
    return out


def recovery_times(calls: Iterable[CallResult], cseq: int = 2) -> dict[str, float]:
    """Call-ID → seconds from the first send of the re-INVITE (``cseq``) to its 200 OK."""
    out: dict[str, float] = {}
    for c in calls:
        sent = c.first_sent("INVITE", cseq)
        final = c.final_response("INVITE", cseq)
        if sent is not None and final is not None and final.code == 200:
            out[c.call_id] = final.t - sent
    return out


def judge_calls(calls: Iterable[CallResult], matched: dict[str, set[int]],
                reinvite_cseq: int = 2) -> dict[str, str]:
    """Call-ID → why the call was lost; recovered calls are absent.

    Recovered = 200 to the re-INVITE and to the BYE, and the backup replicated
    ``updated`` and ``deleted`` for the call (it matched both requests to its dialog).
    """
    lost: dict[str, str] = {}
    for c in calls:
        reasons = []
        reinvite = c.final_response("INVITE", reinvite_cseq)
        bye = c.final_response("BYE")
        if reinvite is None:
            reasons.append("re-INVITE unanswered")
        elif reinvite.code != 200:
            reasons.append(f"re-INVITE got {reinvite.code}")
        if bye is None:
            reasons.append("BYE unanswered")
        elif bye.code != 200:
            reasons.append(f"BYE got {bye.code}")
        seen = matched.get(c.call_id, set())
        if Command.UPDATED not in seen:
            reasons.append("backup sent no BIN updated (re-INVITE not matched to a dialog)")
        if Command.DELETED not in seen:
            reasons.append("backup sent no BIN deleted (BYE not matched to a dialog)")
        if reasons:
            lost[c.call_id] = "; ".join(reasons)
    return lost


def in_dialog(c: CallResult) -> list[Request]:
    """The post-failover requests a caller sent: re-INVITE (CSeq 2) and BYE, every send."""
    return [r for r in c.requests if (r.method == "INVITE" and r.cseq == 2) or r.method == "BYE"]


def retransmitted(calls: Iterable[CallResult]) -> int:
    """How many re-INVITEs and BYEs (one per call each) were sent more than once."""
    n = 0
    for c in calls:
        again = {(r.method, r.cseq) for r in in_dialog(c) if r.retransmission}
        n += len(again)
    return n


def failed_requests(calls: Iterable[CallResult]) -> int:
    """re-INVITEs and BYEs that got no 200 (another final code, or none at all)."""
    n = 0
    for c in calls:
        for method, cseq in (("INVITE", 2), ("BYE", None)):
            final = c.final_response(method, cseq)
            n += final is None or final.code != 200
    return n


def achieved_rate(times: Sequence[float]) -> float | None:
    """Events per second over their span (first to last); None for fewer than two."""
    if len(times) < 2 or max(times) <= min(times):
        return None
    return round((len(times) - 1) / (max(times) - min(times)), 1)


def setup_rate(calls: Iterable[CallResult]) -> float | None:
    """Calls per second from the first initial INVITE to the last call held."""
    calls = list(calls)
    starts = [t for c in calls if (t := c.first_sent("INVITE", 1)) is not None]
    held = [c.events["HELD"] for c in calls if "HELD" in c.events]
    if not starts or len(held) < 2:
        return None
    span = max(held) - min(starts)
    return round(len(held) / span, 1) if span > 0 else None


def release_rate(calls: Iterable[CallResult]) -> float | None:
    """In-dialog requests per second as the caller first sent them (re-INVITE, BYE)."""
    firsts = [r.t for c in calls for r in in_dialog(c) if not r.retransmission]
    return achieved_rate(firsts)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


# --------------------------------------------------------------------------- result


@dataclass
class FailoverResult:
    """Figures of one failover run; ``to_json()`` is the published form."""

    calls: int
    lost: int
    service_gap_ms: float | None
    recovery_ms_p50: float | None
    recovery_ms_p95: float | None
    recovery_ms_p99: float | None
    replication_lag_ms_p50: float | None
    replication_lag_ms_p99: float | None
    backend: str
    #: Call-ID -> why it counts as lost
    lost_calls: dict[str, str] = field(default_factory=dict)
    #: Call-ID -> seconds (the samples behind the percentiles)
    recovery_s: dict[str, float] = field(default_factory=dict)
    replication_lag_s: dict[str, float] = field(default_factory=dict)
    #: the backup's dialog statistics before the kill and after the last call ended
    backup_stats_before: dict[str, int] = field(default_factory=dict)
    backup_stats_after: dict[str, int] = field(default_factory=dict)
    #: dialogs still in the backup's dlg_list at the end (should be 0)
    backup_dialogs_left: int = 0
    #: dialogs the backup did not hold when the primary was killed
    missing_on_backup: int = 0
    #: per-call responses SIPp saw, for assertions: Call-ID -> (re-INVITE code, BYE code)
    final_codes: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    #: first to last call's re-INVITE leaving SIPp: how much of a burst the backup got
    #: (recovery times under a 10 ms burst and under a trickle differ tenfold)
    release_spread_ms: float | None = None
    mode: str = "kill"
    gap: Gap | None = None
    capture: Path | None = None
    workdir: Path | None = None
    capture_drops: int | None = None
    #: calls/s SIPp achieved setting up; in-dialog requests/s after the failover (and asked)
    setup_rate: float | None = None
    release_rate: float | None = None
    release_rate_asked: float | None = None
    #: re-INVITEs and BYEs sent more than once; those that got no 200
    retransmissions: int = 0
    failed_requests: int = 0
    #: the backup's shm in bytes (real_used_size): idle, holding N dialogs, after the drain
    backup_shm_used_idle: int | None = None
    backup_shm_used_before: int | None = None
    backup_shm_used_after: int | None = None
    backup_shm_max_used: int | None = None
    backup_alive: bool = True
    #: the backup's first ERROR/CRITICAL log lines after the kill
    backup_errors: list[str] = field(default_factory=list)
    #: the steps that ran out of their deadline (replication, release, drain)
    timed_out: list[str] = field(default_factory=list)
    #: the bound on the whole run, derived from its size and rates
    deadline_s: float | None = None
    #: BIN dialog packets the backup sent after the kill: seen in the capture (to any
    #: destination), received by the live witness (None: the run had none)
    backup_bin_captured: int = 0
    backup_bin_witnessed: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in JSON_KEYS}
        out["lost_calls"] = dict(list(self.lost_calls.items())[:LOST_LISTED])
        return out

    def table(self) -> str:
        """Human-readable summary."""
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f} ms"

        rows = [
            ("backend", self.backend),
            ("primary failure", "SIGKILL" if self.mode == "kill" else "SIGSTOP (frozen)"),
            ("calls", str(self.calls)),
            ("lost", str(self.lost)),
            ("service gap", f(self.service_gap_ms)),
            ("recovery p50 / p95 / p99", " / ".join(f(v) for v in (
                self.recovery_ms_p50, self.recovery_ms_p95, self.recovery_ms_p99))),
            ("replication lag p50 / p99", " / ".join(f(v) for v in (
                self.replication_lag_ms_p50, self.replication_lag_ms_p99))),
            ("re-INVITEs sent within", f(self.release_spread_ms)),
            ("setup rate", f"{self.setup_rate} calls/s"),
            ("release rate (asked)", f"{self.release_rate} requests/s ({self.release_rate_asked:g})"
             if self.release_rate_asked is not None else f"{self.release_rate} requests/s"),
            ("retransmitted / failed requests", f"{self.retransmissions} / {self.failed_requests}"),
            ("backup shm idle/held/after/max",
             " / ".join(_mb(v) for v in (self.backup_shm_used_idle, self.backup_shm_used_before,
                                         self.backup_shm_used_after, self.backup_shm_max_used))),
            ("backup alive", str(self.backup_alive)),
            ("steps past their deadline", ", ".join(self.timed_out) or "none"),
            ("backup update_sent / delete_sent", f"+{self._delta('update_sent')} / "
                                                 f"+{self._delta('delete_sent')}"),
            ("backup dialogs left", str(self.backup_dialogs_left)),
            ("backup BIN captured / witnessed",
             f"{self.backup_bin_captured} / {self.backup_bin_witnessed}"),
        ]
        if self.workdir is not None:
            rows.append(("artifacts", str(self.workdir)))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        for line in self.backup_errors:
            lines.append(f"  backup: {line}")
        for cid, why in list(self.lost_calls.items())[:10]:
            lines.append(f"  lost {cid}: {why}")
        if len(self.lost_calls) > 10:
            lines.append(f"  … and {len(self.lost_calls) - 10} more")
        return "\n".join(lines)

    def _delta(self, key: str) -> int:
        return self.backup_stats_after.get(key, 0) - self.backup_stats_before.get(key, 0)




# --------------------------------------------------------------------------- from evidence


@dataclass
class Evidence:
    """Everything one failover run observed; the result is computed from this alone."""

    backend: str
    mode: str
    calls: int
    #: (Call-ID, from tag, to tag) of every call set up through the primary
    keys: set[CallKey]
    #: what SIPp's caller saw of every call, after the release
    summary: SippSummary
    #: the capture's UDP datagrams (SIP and BIN on one clock)
    datagrams: list[CapturedDatagram]
    #: the kill (or freeze) instant: after the primary was gone, before the VIP moved
    kill_at: float
    proxy: Addr
    primary_bin: Addr
    backup_bin: Addr
    missing_on_backup: int = 0
    backup_stats_before: dict[str, int] = field(default_factory=dict)
    backup_stats_after: dict[str, int] = field(default_factory=dict)
    backup_dialogs_left: int = 0
    capture: Path | None = None
    capture_drops: int | None = None
    workdir: Path | None = None
    release_rate_asked: float | None = None
    #: the backup's shm (used_idle, used_before, used_after, max_used, total), bytes
    backup_shm: dict[str, int | None] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)
    backup_alive: bool = True
    backup_errors: list[str] = field(default_factory=list)
    deadline_s: float | None = None
    #: BIN dialog packets the run's live witness (a pybin peer replicated to) received,
    #: with its arrival times; None: the run had no witness
    witnessed: list[WireBin] | None = None


def _mb(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 1048576:.1f} MB"


def _code(call: CallResult, method: str, cseq: int | None = None) -> int | None:
    final = call.final_response(method, cseq)
    return None if final is None else final.code


def result_from(ev: Evidence) -> FailoverResult:
    """The figures of a run, judged from its evidence (see the module doc)."""
    by_id = {c.call_id: c for c in ev.summary.calls}
    sip, bins = split_capture(ev.datagrams)
    gap = service_gap(sip, ev.proxy, ev.kill_at)
    lags = replication_lags(sip, bins, ev.proxy, ev.primary_bin, ev.backup_bin, until=ev.kill_at)
    witnessed = ev.witnessed or []
    lost_calls = judge_calls(by_id.values(),
                             backup_commands([*bins, *witnessed], ev.backup_bin, ev.kill_at))
    for cid in {k[0] for k in ev.keys} - set(by_id):
        lost_calls[cid] = "no SIPp record of the call"
    recovery = recovery_times(by_id.values())
    lag_s = {cid: lag for cid, lag in lags.items() if cid in by_id}
    firsts = [t for c in by_id.values() if (t := c.first_sent("INVITE", 2)) is not None]
    rec, lag = list(recovery.values()), list(lag_s.values())
    return FailoverResult(
        ev.calls, len(lost_calls), None if gap is None else round(gap.ms, 3),
        _ms(percentile(rec, 50)), _ms(percentile(rec, 95)), _ms(percentile(rec, 99)),
        _ms(percentile(lag, 50)), _ms(percentile(lag, 99)), ev.backend,
        lost_calls=lost_calls, recovery_s=recovery, replication_lag_s=lag_s,
        backup_stats_before=ev.backup_stats_before, backup_stats_after=ev.backup_stats_after,
        backup_dialogs_left=ev.backup_dialogs_left, missing_on_backup=ev.missing_on_backup,
        final_codes={cid: (_code(c, "INVITE", 2), _code(c, "BYE")) for cid, c in by_id.items()},
        release_spread_ms=_ms(max(firsts) - min(firsts)) if firsts else None,
        mode=ev.mode, gap=gap, capture=ev.capture, workdir=ev.workdir,
        capture_drops=ev.capture_drops,
        setup_rate=setup_rate(by_id.values()), release_rate=release_rate(by_id.values()),
        release_rate_asked=ev.release_rate_asked,
        retransmissions=retransmitted(by_id.values()), failed_requests=failed_requests(by_id.values()),
        backup_shm_used_idle=ev.backup_shm.get("used_idle"),
        backup_shm_used_before=ev.backup_shm.get("used_before"),
        backup_shm_used_after=ev.backup_shm.get("used_after"),
        backup_shm_max_used=ev.backup_shm.get("max_used"),
        backup_alive=ev.backup_alive, backup_errors=list(ev.backup_errors),
        timed_out=list(ev.timed_out), deadline_s=ev.deadline_s,
        backup_bin_captured=sum(1 for b in bins if b.src == ev.backup_bin and b.t >= ev.kill_at),
        backup_bin_witnessed=None if ev.witnessed is None else sum(
            1 for b in witnessed if b.src == ev.backup_bin and b.t >= ev.kill_at))
