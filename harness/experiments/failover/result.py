"""A failover run's result: the `Evidence` it collected, and `result_from` turning it into
`FailoverResult` (figures, table, JSON). Pure: every figure can be checked offline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiments.failover.metrics import (
    JSON_KEYS,
    LOST_LISTED,
    Addr,
    CallKey,
    Gap,
    WireBin,
    _ms,
    backup_commands,
    failed_requests,
    judge_calls,
    percentile,
    recovery_times,
    release_rate,
    replication_lags,
    retransmitted,
    service_gap,
    setup_rate,
    split_capture,
)
from harness.experiments.failover.prediction import Prediction, check
from harness.instruments.sipp import CallResult, SippSummary
from pybin.pcap import CapturedDatagram


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
    #: what the figures were computed from (for the report's pictures; not published)
    evidence: Evidence | None = field(default=None, repr=False, compare=False)
    #: the impaired link ("link primary>backup: relay … (loss=0.2,seed=7), log …"), None without
    link: str | None = None
    #: the prediction's figures (`prediction.check`): None for a run without one
    predicted_lost: int | None = None
    #: the replay's own figures (what the relay sent, what the backup accepted, the link's delay)
    prediction_figures: dict[str, Any] | None = None
    lost_causes: dict[str, list[str]] | None = None
    unexpected_lost: list[str] | None = None
    unexpected_survivors: list[str] | None = None
    #: the backup's restart (when, how long, what it lacked after it, the exposure) and the resync
    restart: dict[str, Any] | None = None
    resync: dict[str, Any] | None = None

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
        rows += self._fault_rows()
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

    def _fault_rows(self) -> list[tuple[str, str]]:
        rows = []
        if self.link is not None:
            rows.append(("link", self.link))
        if self.restart is not None:
            r = self.restart
            rows.append(("backup restart", f"{r['took_s']} s; held {r['held_before']} → {r['held_after']}, "
                                           f"lacked {r['lacking']} for {r['exposure_s']} s"))
        if self.resync is not None:
            r = self.resync
            rows.append(("resync", f"{r['sent']} created sent in {r['took_s']} s; {r['differences']} "
                                   f"differences in {r['compared']} dialogs compared"))
        if self.predicted_lost is not None:
            rows.append(("lost / predicted lost", f"{self.lost} / {self.predicted_lost}"))
            rows.append(("unexpected lost / survivors",
                         f"{len(self.unexpected_lost or [])} / {len(self.unexpected_survivors or [])}"))
        return rows

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
    #: just before the primary was signalled (kill_at is once it was gone), and when
    #: ``Cluster.failover()`` returned: the VIP on the backup, neighbours told; None:
    #: not recorded. kill_started_at → kill_at is the kill, kill_at → vip_moved_at the move
    kill_started_at: float | None = None
    vip_moved_at: float | None = None
    link: str | None = None
    #: where the primary's replication to the backup goes: the relay of an impaired link
    #: (the replication lag is then the primary's send to it); None: the backup's BIN address
    replication_to: Addr | None = None
    prediction: Prediction | None = None
    restart: dict[str, Any] | None = None
    resync: dict[str, Any] | None = None


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
    lags = replication_lags(sip, bins, ev.proxy, ev.primary_bin, ev.replication_to or ev.backup_bin,
                            until=ev.kill_at)
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
            1 for b in witnessed if b.src == ev.backup_bin and b.t >= ev.kill_at),
        evidence=ev, link=ev.link, **check(ev.prediction, lost_calls),
        prediction_figures=None if ev.prediction is None else ev.prediction.figures, restart=_exposure(ev, by_id.values()),
        resync=ev.resync)


def _exposure(ev: Evidence, calls: Iterable[CallResult]) -> dict[str, Any] | None:
    """The restart's figures with its exposure: the seconds the backup lacked the calls
    it lost in the restart, from the restart until a resync restored them or, without
    one, until the last of them ended (failover or not, it never had them again)."""
    if ev.restart is None:
        return None
    ends = [c.events["END"] for c in calls if "END" in c.events]
    until = ev.resync["done_at"] if ev.resync else (max(ends) if ends else None)
    exposure = None if until is None or not ev.restart["lacking"] else round(until - ev.restart["at"], 3)
    return {**ev.restart, "exposure_s": exposure}
