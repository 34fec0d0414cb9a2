"""Judging a failover run's evidence: SIPp's trace, the capture and the live witness,
bounded like every other step (`Judging` is the part of `FailoverRun` that does it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.base.wait import WaitTimeout, wait_until
from harness.experiments.failover.deadlines import ERROR_LINES, PROGRESS_S
from harness.experiments.failover.errors import FailoverError, error_lines
from harness.experiments.failover.metrics import CallKey, WireBin
from harness.experiments.failover.prediction import Prediction
from harness.experiments.failover.result import Evidence, FailoverResult, result_from
from harness.instruments.peer import BinPeer
from pybin.errors import PybinError
from pybin.pcap import CapturedDatagram, read_udp

if TYPE_CHECKING:
    from harness.cluster import Cluster
    from harness.experiments.calls import CallPair
    from harness.instruments.capture import Capture
    from harness.instruments.link import LinkRelay
    from harness.instruments.sipp import SippSummary


class Judging:
    """The judging steps of `FailoverRun`, over the state its other steps recorded."""

    cluster: Cluster
    pair: CallPair
    capture: Capture
    witness: BinPeer | None
    summary: SippSummary | None
    released: bool
    judging: str
    judge_timeout: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    say: Callable[[str], None]
    keys: set[CallKey]
    workdir: Path
    calls: int
    mode: str
    step: str
    held: int
    setup_s: float
    started: float
    deadline_s: float
    timed_out: list[str]
    missing_on_backup: int
    shm: dict[str, int | None]
    primary: str
    backup: str
    backup_errors: list[str]
    link: LinkRelay | None
    restart_info: dict[str, Any] | None
    resync_info: dict[str, Any] | None
    prediction: Callable[[], Prediction | None]
    #: set by the failover step: as it signals the primary, once the VIP is on the backup
    kill_started_at: float | None = None
    vip_moved_at: float | None = None

    def judge(self) -> FailoverResult:
        """Parse SIPp's trace and the capture and judge every call (`result_from`).

        Seconds at 10,000 calls, so it is a step like the others: it runs in a worker
        thread while `wait_until` reports its progress on stderr and bounds it by the
        derived judge deadline (part of `deadline_s`); past it the run fails with what it
        saw (a daemon thread left parsing does not hold the process up).
        """
        self.say(f"judging the evidence (deadline {self.judge_timeout:.0f}s) …")
        outcome: list[FailoverResult | BaseException] = []

        def work() -> None:
            try:
                outcome.append(result_from(self.evidence()))
            except BaseException as err:  # handed to the waiting thread
                outcome.append(err)

        t0 = self.clock()
        threading.Thread(target=work, name="failover-judge", daemon=True).start()
        try:
            wait_until(lambda: bool(outcome), timeout=self.judge_timeout, interval=0.1,
                       what="the evidence to be judged",
                       progress=lambda _v, t: self.say(f"  judging: {self.judging} ({t:.0f}s)"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
        except WaitTimeout:
            raise FailoverError(f"judging the evidence did not finish within its "
                                f"{self.judge_timeout:.0f}s deadline (was {self.judging})") from None
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        self.say(f"  judged in {self.clock() - t0:.1f}s")
        return outcome[0]

    def observed(self) -> dict[str, object]:
        """What the run saw so far, for a failure report (`FAILURE_KEYS`); never raises."""
        def safe(get: Callable[[], object], default: object = None) -> object:
            try:
                return get()
            except Exception:
                return default

        past_replication = self.step not in ("start", "setup", "replication")
        primary, backup = self.cluster.nodes[self.primary], self.cluster.nodes[self.backup]
        return {
            # held as last counted (SIPp goes on setting up until it is stopped)
            "step": self.step, "calls": self.calls, "calls_held": self.held,
            "setup_rate": round(self.held / self.setup_s, 1) if self.held and self.setup_s > 0 else None,
            "backend": safe(lambda: self.cluster.backend.name), "mode": self.mode,
            "elapsed_s": round(self.clock() - self.started, 1), "deadline_s": round(self.deadline_s, 1),
            "timed_out": list(self.timed_out),
            "missing_on_backup": self.missing_on_backup if past_replication else None,
            "backup_alive": safe(backup.is_running),
            "backup_shm_used_idle": self.shm.get("used_idle"),
            "backup_shm_used_before": self.shm.get("used_before"),
            "primary_errors": safe(lambda: error_lines(primary.current_logs())[:ERROR_LINES], []),
            "backup_errors": self.backup_errors or safe(
                lambda: error_lines(backup.current_logs())[:ERROR_LINES], []),
            "artifacts": str(self.workdir),
        }

    def _datagrams(self) -> list[CapturedDatagram]:
        out: list[CapturedDatagram] = []
        for d in read_udp(self.capture.path):
            out.append(d)
            if len(out) % 10000 == 0:
                self.judging = f"reading the capture ({len(out)} datagrams so far)"
        return out

    def evidence(self) -> Evidence:
        """What the run observed; parses SIPp's caller trace (once) and the capture."""
        if not self.released:
            raise FailoverError("the calls were never released: no evidence to judge")
        if self.summary is None:
            self.judging = "parsing SIPp's caller trace"
            self.summary = self.pair.uac.result()
        self.judging = "reading the capture"
        datagrams = self._datagrams()
        prediction = self._predict()
        self.judging = f"judging {len(self.summary.calls)} calls against {len(datagrams)} datagrams"
        addresses = self.cluster.addresses
        return Evidence(
            backend=self.cluster.backend.name, mode=self.mode, calls=self.calls, keys=self.keys,
            summary=self.summary, datagrams=datagrams, kill_at=self.kill_at,
            proxy=self.proxy, primary_bin=addresses[self.primary].bin_addr,
            backup_bin=addresses[self.backup].bin_addr, missing_on_backup=self.missing_on_backup,
            backup_stats_before=self.stats_before, backup_stats_after=self.stats_after,
            backup_dialogs_left=self.dialogs_left, capture=self.capture.path,
            capture_drops=self.capture.dropped, workdir=self.workdir,
            release_rate_asked=self.release_rate, backup_shm=dict(self.shm),
            timed_out=list(self.timed_out), backup_alive=self.backup_alive,
            backup_errors=list(self.backup_errors), deadline_s=round(self.deadline_s, 1),
            witnessed=self._witnessed(), link=None if self.link is None else self.link.describe(),
            replication_to=None if self.link is None else self.link.address,
            prediction=prediction, restart=self.restart_info, resync=self.resync_info,
            kill_started_at=self.kill_started_at, vip_moved_at=self.vip_moved_at)

    def _predict(self) -> Prediction | None:
        self.judging = "predicting which calls the backup can carry"
        return self.prediction()

    def _witnessed(self) -> list[WireBin] | None:
        """What the run's live witness received; None without one."""
        return None if self.witness is None else witnessed(self.witness)

    def _stop_prober(self) -> None:
        if self.prober is not None:
            self.prober.stop()
            self.prober = None


def witnessed(peer: BinPeer) -> list[WireBin]:
    """The dialog packets ``peer`` received, as capture-like `WireBin` records (its
    arrival time, the sender, the peer's address); undecodable ones are skipped."""
    out: list[WireBin] = []
    dst = peer.address
    for item in list(peer.received):
        try:
            m = item.dialog()
        except PybinError:
            continue
        out.append(WireBin(item.time, item.source, dst, int(m.command),
                           m.call_id.decode("utf-8", "replace")))
    return out
