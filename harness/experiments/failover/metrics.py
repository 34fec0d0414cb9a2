"""Failover figures from the evidence of one run: which calls were lost, and how fast.

This module holds the pure measurements; `harness.experiments.failover.result` puts them together.

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
from dataclasses import dataclass

from harness.instruments.sip import SipMessage, sip_datagram
from harness.instruments.sipp import CallResult, Request
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
             "backup_bin_captured", "backup_bin_witnessed", "capture_drops", "lost_calls",
             # faults (issue 18): the impaired link, the call-by-call prediction checked
             # against the outcome, a restart of the backup and a resync (None without)
             "link", "predicted_lost", "unexpected_lost", "unexpected_survivors", "lost_causes",
             "prediction_figures", "restart", "resync")
#: lost calls listed in the JSON (all are counted in ``lost``)
LOST_LISTED = 50


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
