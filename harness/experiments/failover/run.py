"""The failover scenario: N held calls, the primary killed, the backup carries every one.

    harness failover --calls 200 [--json] [--backend auto|docker|local] [--freeze]
    (arguments: harness/cli.py)

Why: the reason to replicate dialogs over BIN is that a backup carries the calls of a
primary that died. This scenario proves it with N concurrent confirmed calls and puts
numbers on it, on either backend:

1. N calls (SIPp, ``reinvite`` scenario) are set up through the primary and held after
   their ACK; we wait (polling the backup's ``dlg_list``, no fixed sleep) until the
   backup holds every one of them confirmed.
2. The primary is SIGKILLed (or SIGSTOPped: a hung primary), the VIP moves to the backup
   (``Cluster.failover()``, which also flushes the clients' neighbour entries), and
   every call is released: each sends its re-INVITE, then its BYE, through the VIP.
3. From SIPp's per-call logs and one tcpdump capture of the cluster network (SIP and
   BIN on the same clock) we judge and measure; when the run has a live witness (a
   pybin peer both nodes also replicate to: ``harness.live.start(peer="first")``), what it
   received proves recovered calls too, so the proof does not hang on packets sent to
   the dead primary (which a dead host's failed neighbour entry keeps off the wire).

A run that cannot finish (calls not set up in time, SIPp or a node dying) raises
`FailoverError` carrying what was seen until then (``seen``, keys `FAILURE_KEYS`): the
command prints it as one JSON object with an ``error`` key, or one line.

What counts as lost, and how each figure is measured: `harness.experiments.failover_figures`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from harness.base.wait import Count, WaitStalled, WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.experiments.calls import CallPair
from harness.experiments.failover.deadlines import (
    DEFAULT_RELEASE_RATE,
    ERROR_LINES,
    PAGE,
    PROGRESS_S,
    SIPP_BUFF_AT_SIZE,
    STALL_S,
    STOP_ALLOWANCE,
    deadlines,
)
from harness.experiments.failover.errors import FailoverError, error_lines, failure_json
from harness.experiments.failover.faults import Faults, check_faults
from harness.experiments.failover.judging import Judging
from harness.experiments.failover.metrics import Addr, CallKey
from harness.experiments.failover.prober import Prober
from harness.experiments.failover.result import FailoverResult
from harness.instruments.capture import Capture
from harness.instruments.link import LinkRelay
from harness.instruments.mi import MIClient
from harness.instruments.mi_replies import MIError
from harness.instruments.peer import BinPeer
from harness.instruments.sipp import SippError, SippSummary
from pybin.dialog import DialogCreated

Progress = Callable[[str], None]


def _role(cluster: Cluster, role: str) -> str:
    name = next((n for n, r in cluster.roles.items() if r == role), None)
    if name is None:
        raise FailoverError(f"the cluster has no {role} node (roles: {cluster.roles})")
    return name


class FailoverRun(Judging, Faults):
    """The scenario as named steps over a started primary/backup ``cluster``.

    `run()` calls them in order; each records what it observed, and the result is
    computed from that evidence alone (`harness.experiments.failover_figures.result_from`). The
    scenario runs its own tcpdump on the cluster network (a buffer big enough for the
    burst; a fixture's capture may also run): the BIN proof of each recovered call,
    the service gap and the replication lag all come from it.

    mode: ``kill`` (SIGKILL the primary) or ``freeze`` (SIGSTOP: alive but silent).
    rate: call setup rate (calls/s); every call is held, so all N are up at once.
    release_rate: in-dialog requests per second after the failover (each call sends a
      re-INVITE and a BYE, so calls are released at half this rate, on a schedule):
      recovery then measures the backup at a rate a user chose, not a burst of N.
    sync_timeout: how long the backup may take to hold every dialog before the kill
      (missing ones are counted in ``missing_on_backup`` and will show up as lost);
      default derived from N.
    probe_interval: seconds between OPTIONS probes around the kill; None: no prober
      (the gap then spans whatever SIP traffic there was).
    link: the relay impairing primary → backup (``live.start(link=...)``); restart: restart
      the backup under the held calls; resync: then resync it from the primary (`Faults`).
      Each makes a call-by-call prediction the result checks.

    Every step has a deadline derived from N and the rates (`deadlines`), judging the
    evidence included, so a run ends within `deadline_s` whatever OpenSIPS does; a step
    that ran out is named in the result's ``timed_out`` and the run goes on to report
    what it saw. A run that cannot go on (calls not set up, SIPp or a node dead, the
    judging past its deadline) raises `FailoverError` with ``seen``.
    setup_timeout: overrides the derived setup deadline (e.g. to see a failed setup).
    clock, sleep: for tests (fake time); every wait goes through `wait_until` with them.
    """

    def __init__(self, cluster: Cluster, calls: int = 200, *, workdir: str | Path,
                 rate: float = 200.0, release_rate: float = DEFAULT_RELEASE_RATE,
                 mode: str = "kill", probe_interval: float | None = 0.005,
                 sync_timeout: float | None = None, finish_timeout: float | None = None,
                 drain_timeout: float = 30.0, capture_buffer_kib: int = 65536,
                 setup_timeout: float | None = None, progress: Progress | None = None,
                 witness: BinPeer | None = None, link: LinkRelay | None = None,
                 restart: bool = False, resync: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if mode not in ("kill", "freeze"):
            raise FailoverError(f"mode must be 'kill' or 'freeze', not {mode!r}")
        if calls < 1:
            raise FailoverError("calls must be at least 1")
        if rate <= 0 or release_rate <= 0:
            raise FailoverError("rate and release_rate must be positive")
        check_faults(link, restart, resync)
        self.link, self.restart, self.resync = link, restart, resync
        self.recv_before: dict[str, int] = {}
        self.restart_info: dict[str, object] | None = None
        self.resync_info: dict[str, object] | None = None
        self.resent: list[tuple[float, DialogCreated]] = []
        self.cluster, self.calls, self.rate, self.mode = cluster, calls, rate, mode
        self.release_rate = release_rate
        d = deadlines(calls, rate, release_rate)
        self.setup_timeout = setup_timeout if setup_timeout is not None else d["setup"]
        self.sync_timeout = sync_timeout if sync_timeout is not None else d["sync"]
        self.finish_timeout = finish_timeout if finish_timeout is not None else d["release"]
        self.judge_timeout = d["judge"]
        self.probe_interval, self.drain_timeout = probe_interval, drain_timeout
        self.clock, self.sleep = clock, sleep
        #: the whole run's bound: every step's deadline, judging the evidence, stopping
        self.deadline_s = (self.setup_timeout + self.sync_timeout + self.finish_timeout
                           + self.drain_timeout + self.judge_timeout + STOP_ALLOWANCE)
        self.say: Progress = progress or (lambda line: None)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.primary, self.backup = _role(cluster, "primary"), _role(cluster, "backup")
        if cluster.vip_owner != self.primary:
            raise FailoverError(f"the VIP is on {cluster.vip_owner}, not on the primary")
        self.proxy: Addr = cluster.sip_addr
        self.backup_mi: MIClient = cluster.mi(self.backup)
        # max_concurrent: SIPp's default cap on open calls is 3 x rate; held calls never
        # close, so beyond 600 calls at 200/s it would stop placing new ones.
        # At size: socket buffers as large as the kernel allows (a burst of retransmissions
        # must not overflow SIPp's own socket), and the callee keeps no message trace
        # (nobody judges it; at 10,000 calls it is ~100 MB written synchronously).
        big = calls > 1000
        self.pair = CallPair(cluster, "reinvite", calls=calls, rate=rate, hold=True,
                             max_concurrent=calls, workdir=self.workdir / "sipp",
                             buff_size=SIPP_BUFF_AT_SIZE if big else 1 << 20,
                             uas_options={"trace_messages": not big,
                                          "buff_size": SIPP_BUFF_AT_SIZE if big else 1 << 20})
        # a burst of N calls overflows tcpdump's default 2 MB ring: lost packets would
        # read as lost dialogs, so give it room (and 16 KB snaplen: SIP and BIN here fit)
        self.capture = Capture(cluster.backend.capture_host(), self.workdir / "failover.pcap",
                               snaplen=16384, buffer_kib=capture_buffer_kib)
        self.prober: Prober | None = None
        #: a pybin peer every node also replicates to; what it received proves recovery too
        self.witness = witness
        # evidence, filled in by the steps
        self.keys: set[CallKey] = set()
        self.kill_at = math.inf  # set once the primary is dead, before the VIP moves
        self.missing_on_backup = 0
        self.stats_before: dict[str, int] = {}
        self.stats_after: dict[str, int] = {}
        self.shm: dict[str, int | None] = {}
        self.dialogs_left = 0
        self.summary: SippSummary | None = None
        self.released = False
        self.timed_out: list[str] = []
        self.backup_alive = True
        self.backup_errors: list[str] = []
        self._log_mark = 0
        #: the step running (named in a failure), calls held so far, setup's duration
        self.step = "start"
        self.held = 0
        self.setup_s = 0.0
        self.started = clock()
        self.judging = ""  # what the judging is doing now (its progress lines say it)

    def run(self) -> FailoverResult:
        """Every step, then the judging; a failure is a `FailoverError` with ``seen``."""
        self.started = self.clock()
        self.say(f"{self.calls} calls at {self.rate:g}/s, released at {self.release_rate:g} "
                 f"requests/s; the run ends within {self.deadline_s:.0f}s")
        try:
            self.capture.start()
            try:
                self._shm("idle")
                for self.step, step in self.steps():
                    step()
            finally:
                self._stop_prober()
                self.pair.stop()
                self.capture.stop()
            self.step = "judge"
            return self.judge()
        except Exception as err:
            seen = self.observed()
            raise FailoverError(str(failure_json(err)["error"]), failure_json(err, **seen)) from err

    # -- the steps ---------------------------------------------------------------------
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The steps in order: the fault steps (`Faults`) where the run has them."""
        faults = [("restart", self.restart_backup)] if self.restart else []
        faults += [("resync", self.resync_backup)] if self.resync else []
        return [("setup", self.set_up_calls),
                ("replication", self.wait_for_link if self.link else self.wait_for_replication),
                *faults, ("failover", self.fail_primary), ("release", self.release_calls),
                ("drain", self.drain_backup)]

    def set_up_calls(self) -> None:
        """Place N calls through the primary and hold each after its ACK.

        Waits (`wait_until`) on SIPp's HELD markers, read incrementally, with progress
        on stderr; gives up at the derived deadline, earlier when no call was set up for
        STALL_S, and at once when SIPp's caller exits or a node dies.
        """
        self.say(f"setting up {self.calls} calls through {self.primary} at {self.rate:g}/s "
                 f"(deadline {self.setup_timeout:.0f}s) …")
        uac = self.pair.uac
        self.recv_before = self.backup_mi.get_statistics()
        self.pair.start()
        t0 = self.clock()

        def held() -> Count:
            self.held, self.setup_s = uac.count_events("HELD"), self.clock() - t0
            return Count(self.held, self.calls)

        def alive() -> None:
            self.cluster.check()  # a dead node is the better diagnosis
            if not uac.running():
                raise FailoverError("SIPp's caller exited")

        try:
            wait_until(held, timeout=self.setup_timeout, interval=0.2, alive=alive,
                       what=f"{self.calls} calls held", stall=STALL_S,
                       progress=lambda c, t: self.say(f"  {c.n}/{self.calls} calls held ({c.n / t:.0f}/s)"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
        except (WaitTimeout, FailoverError) as err:
            why = (f"no call set up for {STALL_S:g}s" if isinstance(err, WaitStalled)
                   else f"deadline {self.setup_timeout:.0f}s passed" if isinstance(err, WaitTimeout)
                   else str(err))
            took = self.clock() - t0
            raise FailoverError(
                f"only {self.held} of {self.calls} calls were set up through the primary "
                f"within {took:.0f}s ({self.held / max(took, 1e-9):.0f}/s): {why}; "
                f"SIPp: {uac.stderr_tail(3).splitlines()[-1:] or '-'}; primary errors: "
                f"{error_lines(self.cluster.nodes[self.primary].current_logs())[:3]}") from None
        self.say(f"  {self.calls} calls held in {self.clock() - t0:.1f}s")
        self.keys = {(c.call_id, c.from_tag, c.to_tag) for c in uac.result().calls}

    def wait_for_replication(self) -> None:
        """Wait until the backup holds every dialog confirmed; count the missing ones.

        Polls the backup's dialog count (one MI page of one, cheap at any size) and
        lists every dialog (paged) only once the count says they may all be there.
        """
        self.say(f"waiting for {self.backup} to hold every dialog confirmed "
                 f"(deadline {self.sync_timeout:.0f}s) …")
        def missing() -> set[CallKey]:
            have = {d.key for d in self.backup_mi.dlg_list(context=False, page_size=PAGE) if d.state == 4}
            return self.keys - have

        listed = [0]

        def all_there() -> bool:
            listed[0] = self.backup_mi.dlg_count()
            return listed[0] >= len(self.keys) and not missing()

        try:
            wait_until(all_there, timeout=self.sync_timeout, interval=0.5, alive=self.cluster.check,
                       what=f"{self.backup} to hold every dialog confirmed",
                       progress=lambda _v, _t: self.say(f"  {self.backup} lists {listed[0]}/{self.calls} dialogs"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
        except WaitTimeout:
            self.timed_out.append("replication")
            self.missing_on_backup = len(missing())
            self.say(f"warning: {self.missing_on_backup} dialogs not on {self.backup} after "
                     f"{self.sync_timeout:g}s; going on")
        self.stats_before = self.backup_mi.get_statistics()
        self._shm("before")

    def fail_primary(self) -> None:
        """Start the prober, kill (or freeze) the primary, note the instant, move the VIP."""
        if self.probe_interval is not None:
            self.prober = Prober(self.cluster.backend.udp_socket(0), self.proxy, self.probe_interval).start()
            prober = self.prober
            try:  # the primary answers probes
                wait_until(lambda: prober.answers >= 3, timeout=5.0, interval=0.005,
                           what="the primary to answer three probes")
            except WaitTimeout:
                pass  # the gap is then measured from whatever answers there were
        self.say(f"{'killing' if self.mode == 'kill' else 'freezing'} {self.primary}, "
                 f"moving the VIP to {self.backup} …")
        self._log_mark = len(self.cluster.nodes[self.backup].current_logs())
        node = self.cluster.nodes[self.primary]
        self.kill_started_at = time.time()
        if self.mode == "kill":
            node.kill()  # returns once the processes are gone
        else:
            node.freeze()
        # Not before the kill: the primary answers until its processes are gone (the
        # local backend's kill takes ~20 ms). Not after failover(): the backup answers
        # as soon as the VIP is on it. Between the two nobody can send from the VIP.
        self.kill_at = time.time()
        self.cluster.failover(self.backup)
        self.vip_moved_at = time.time()

    def release_calls(self) -> None:
        """Release the held calls at ``release_rate / 2`` calls/s (each sends a re-INVITE,
        then its BYE, through the VIP); wait for SIPp until the derived deadline. Its
        trace is parsed once, by `judge`."""
        uac = self.pair.uac
        per_s = self.release_rate / 2
        self.say(f"releasing {self.calls} calls at {per_s:g}/s ({self.release_rate:g} requests/s) "
                 f"through {self.backup} (deadline {self.finish_timeout:.0f}s) …")
        t0 = self.clock()
        deadline = t0 + self.finish_timeout
        try:
            uac.release(rate=per_s, deadline=deadline,
                        progress=lambda n, total: self.say(f"  released {n}/{total}; "
                                                           f"{uac.count_events('END')} calls ended"))
        except (OSError, SippError) as err:
            self.say(f"warning: releasing stopped: {err}")
        self._stop_prober()
        try:
            wait_until(lambda: not uac.running(), timeout=max(0.0, deadline - self.clock()),
                       interval=0.2, what="SIPp's caller to end every call",
                       progress=lambda _v, _t: self.say(f"  {uac.count_events('END')}/{self.calls} calls ended"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
        except WaitTimeout:
            self.timed_out.append("release")
            self.say(f"warning: {self.calls - uac.count_events('END')} calls still open after "
                     f"{self.finish_timeout:.0f}s; stopping SIPp")
        self.pair.stop()
        self.released = True
        self.say(f"  {uac.count_events('END')}/{self.calls} calls ended in {self.clock() - t0:.1f}s")

    def drain_backup(self) -> None:
        """Wait until the backup's dlg_list is empty (ended dialogs linger until tm frees
        their transactions); keep how many are left, its statistics and first errors."""
        backup = self.cluster.nodes[self.backup]
        self.backup_errors = error_lines(backup.current_logs()[self._log_mark:])[:ERROR_LINES]
        if not backup.is_running():
            self.backup_alive = False
            report = backup.death_report() or ""
            self.backup_errors = (self.backup_errors or error_lines(report)[:ERROR_LINES]
                                  or report.splitlines()[:ERROR_LINES])
            self.say(f"warning: {self.backup} is not running")
            return
        self.say(f"waiting for {self.backup}'s dlg_list to empty …")
        try:
            wait_until(lambda: self.backup_mi.dlg_count() == 0, timeout=self.drain_timeout,
                       interval=0.2, what=f"{self.backup}'s dlg_list to empty",
                       clock=self.clock, sleep=self.sleep)
        except WaitTimeout:
            self.timed_out.append("drain")
            self.dialogs_left = self.backup_mi.dlg_count()
        except NodeDied as err:
            self.backup_alive = False
            self.backup_errors = self.backup_errors or str(err).splitlines()[:ERROR_LINES]
            return
        self.stats_after = self.backup_mi.get_statistics()
        self._shm("after")

    def _shm(self, when: str) -> None:
        """The backup's shared memory (MI ``get_statistics shmem:``) at a point of the run."""
        try:
            stats = self.backup_mi.get_statistics("shmem:")
        except (MIError, OSError):
            return
        self.shm[f"used_{when}"] = stats.get("real_used_size", stats.get("used_size"))
        self.shm["max_used"] = stats.get("max_used_size")
        self.shm["total"] = stats.get("total_size")


def run_failover(cluster: Cluster, calls: int = 200, *, workdir: str | Path, rate: float = 200.0,
                 release_rate: float = DEFAULT_RELEASE_RATE, mode: str = "kill",
                 probe_interval: float | None = 0.005, setup_timeout: float | None = None,
                 progress: Progress | None = None, witness: BinPeer | None = None,
                 link: LinkRelay | None = None, restart: bool = False,
                 resync: bool = False) -> FailoverResult:
    """Run the failover scenario on a started primary/backup ``cluster`` (see FailoverRun);
    ``witness``: a pybin peer every node also replicates to (``live.start(peer="first")``);
    ``link``, ``restart``, ``resync``: the faults (`Faults`)."""
    return FailoverRun(cluster, calls, workdir=workdir, rate=rate, release_rate=release_rate,
                       mode=mode, probe_interval=probe_interval, setup_timeout=setup_timeout,
                       progress=progress, witness=witness, link=link, restart=restart,
                       resync=resync).run()
