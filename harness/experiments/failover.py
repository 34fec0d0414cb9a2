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
   BIN on the same clock) we judge and measure; when the cluster has a live witness
   (`witness`: a pybin peer both nodes also replicate to, ``cluster.peer``), what it
   received proves recovered calls too, so the proof does not hang on packets sent to
   the dead primary (which a dead host's failed neighbour entry keeps off the wire).

A run that cannot finish (calls not set up in time, SIPp or a node dying) raises
`FailoverError` carrying what was seen until then (``seen``, keys `FAILURE_KEYS`): the
command prints it as one JSON object with an ``error`` key, or one line.

What counts as lost, and how each figure is measured: `harness.experiments.failover_figures`.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.base.wait import Count, WaitStalled, WaitTimeout, wait_until
from harness.cluster import Cluster, Destination
from harness.cluster.interfaces import NodeDied
from harness.experiments.calls import CallPair
from harness.experiments.failover_figures import (
    JSON_KEYS,
    Addr,
    CallKey,
    Evidence,
    FailoverResult,
    WireBin,
    result_from,
)
from harness.instruments import node_log
from harness.instruments.capture import Capture
from harness.instruments.mi import MIClient, MIError
from harness.instruments.peer import BinPeer
from harness.instruments.sipp import SippError, SippSummary
from pybin.errors import PybinError
from pybin.pcap import CapturedDatagram, read_udp

__all__ = ["DEFAULT_RELEASE_RATE", "FAILURE_KEYS", "JSON_KEYS", "FailoverError", "FailoverResult",
           "FailoverRun", "Prober", "deadlines", "error_lines", "failure_json", "run_failover",
           "witness", "witness_topology", "witnessed"]

Progress = Callable[[str], None]


class FailoverError(RuntimeError):
    """The scenario could not be run (calls not set up, no backup...); not a loss.

    ``seen``: what the run observed until then (`FAILURE_KEYS`; see `failure_json`).
    """

    def __init__(self, message: str, seen: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.seen: dict[str, object] = dict(seen or {})


#: the JSON of a run that could not finish, in this order: the one-line cause (and the
#: rest of a multi-line one), the step it failed in, then whatever figures exist by then
FAILURE_KEYS = ("error", "error_detail", "step", "calls", "calls_held", "setup_rate", "backend",
                "mode", "elapsed_s", "deadline_s", "timed_out", "missing_on_backup",
                "backup_alive", "backup_shm_used_idle", "backup_shm_used_before",
                "primary_errors", "backup_errors", "artifacts")


def failure_json(error: BaseException | str, /, **seen: object) -> dict[str, object]:
    """The JSON object of a failed run: ``error`` (one line), then every `FAILURE_KEYS`
    key (None or empty where nothing was seen); ``seen`` overrides, e.g. from `FailoverError`."""
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, (str, FailoverError, NodeDied, SippError, WaitTimeout, MIError)):
        text = f"{type(error).__name__}: {text}"
    lines = text.splitlines()
    out: dict[str, object] = {key: None for key in FAILURE_KEYS}
    out.update(error_detail=[], timed_out=[], primary_errors=[], backup_errors=[])
    out.update({k: v for k, v in seen.items() if k in FAILURE_KEYS})
    detail = [ln for ln in lines[1:21] if ln.strip()]
    out["error"], out["error_detail"] = lines[0], detail or out["error_detail"]
    return out


#: in-dialog requests per second after the failover, by default (the issue's target rate)
DEFAULT_RELEASE_RATE = 1000.0
#: the longest a SIP transaction can wait: 64 x T1 (timer B/F), SIPp's and OpenSIPS's
SIP_TRANSACTION_S = 32.0
#: the setup deadline assumes at least this rate is achieved (calls/s), whatever was asked
SETUP_FLOOR_RATE = 100.0
#: setup gives up when no call was set up for this long
STALL_S = 20.0
#: stopping SIPp (q, Q, TERM, KILL: 2.5 s each), tcpdump, the prober
STOP_ALLOWANCE = 30.0
#: judging: fixed part and seconds per call (parsing SIPp's trace and the capture took
#: 30-60 s at 10,000 calls on a shared 2-core machine; this allows 130 s)
JUDGE_S, JUDGE_PER_CALL_S = 30.0, 0.01
#: progress lines on stderr at most this often
PROGRESS_S = 2.0
#: dialogs per dlg_list page (1.10's mi_datagram reply is at most 65457 B)
PAGE = 50
#: SIPp socket buffers at size (the kernel caps them at net.core.rmem_max/wmem_max)
SIPP_BUFF_AT_SIZE = 4 << 20
#: first error lines of the backup kept in the result
ERROR_LINES = 10


def deadlines(calls: int, rate: float, release_rate: float) -> dict[str, float]:
    """Seconds each step may take, from the size and the rates (never fixed).

    setup: twice the time SIPp needs at ``rate``, or the time at SETUP_FLOOR_RATE if that
    is longer (a setup that cannot keep the asked rate still gets to finish; no progress
    for STALL_S ends it sooner), plus 30 s; sync: 30 s plus 10 ms per
    dialog (a paged dlg_list of 10,000 dialogs takes ~1 s); release: the paced release
    (2 requests per call at ``release_rate``) plus one full SIP transaction timeout, so
    a request sent last still gets every retransmission; judge: parsing SIPp's trace
    and the capture and judging every call, 30 s plus 10 ms per call.
    """
    return {"setup": 30.0 + max(2.0 * calls / rate, calls / SETUP_FLOOR_RATE),
            "sync": 30.0 + 0.01 * calls,
            "release": 2.0 * calls / release_rate + SIP_TRANSACTION_S + 15.0,
            "judge": JUDGE_S + JUDGE_PER_CALL_S * calls}


def error_lines(log: str) -> list[str]:
    """OpenSIPS's ERROR/CRITICAL/ALERT records of a log, in order, as written."""
    return [r.full for r in node_log.errors(log)]


# --------------------------------------------------------------------------- the prober


class Prober:
    """Sends ``OPTIONS`` with ``Max-Forwards: 0`` to the VIP every ``interval`` seconds.

    Whoever holds the VIP answers 483 statelessly (the config's maxfwd check comes
    first), so the capture shows the primary's last and the backup's first answer
    within one interval of the real takeover. Answers are drained and counted only.
    """

    def __init__(self, sock: socket.socket, target: Addr, interval: float = 0.005) -> None:
        self.sock = sock
        self.target = target
        self.interval = interval
        self.sent = 0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-prober", daemon=True)

    def _message(self, n: int) -> bytes:
        ip, port = self.sock.getsockname()[:2]
        vip, vport = self.target
        return (f"OPTIONS sip:probe@{vip}:{vport} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-failover-probe-{n}\r\n"
                f"Max-Forwards: 0\r\n"
                f"From: <sip:probe@{ip}:{port}>;tag=failover-probe\r\n"
                f"To: <sip:probe@{vip}:{vport}>\r\n"
                f"Call-ID: failover-probe@{ip}\r\n"
                f"CSeq: {n} OPTIONS\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    def start(self) -> Prober:
        self.sock.setblocking(False)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            n += 1
            try:
                self.sock.sendto(self._message(n), self.target)
                self.sent += 1
            except OSError:
                pass  # e.g. no neighbour entry while the VIP moves: the next probe retries
            next_at += self.interval
            while True:
                try:
                    self.sock.recv(4096)
                    self.answers += 1
                except (BlockingIOError, OSError):
                    break
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# --------------------------------------------------------------------------- the scenario


def _role(cluster: Cluster, role: str) -> str:
    name = next((n for n, r in cluster.roles.items() if r == role), None)
    if name is None:
        raise FailoverError(f"the cluster has no {role} node (roles: {cluster.roles})")
    return name


class FailoverRun:
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
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if mode not in ("kill", "freeze"):
            raise FailoverError(f"mode must be 'kill' or 'freeze', not {mode!r}")
        if calls < 1:
            raise FailoverError("calls must be at least 1")
        if rate <= 0 or release_rate <= 0:
            raise FailoverError("rate and release_rate must be positive")
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
                for self.step, step in (("setup", self.set_up_calls),
                                        ("replication", self.wait_for_replication),
                                        ("failover", self.fail_primary),
                                        ("release", self.release_calls),
                                        ("drain", self.drain_backup)):
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

    # -- the steps ---------------------------------------------------------------------
    def set_up_calls(self) -> None:
        """Place N calls through the primary and hold each after its ACK.

        Waits (`wait_until`) on SIPp's HELD markers, read incrementally, with progress
        on stderr; gives up at the derived deadline, earlier when no call was set up for
        STALL_S, and at once when SIPp's caller exits or a node dies.
        """
        self.say(f"setting up {self.calls} calls through {self.primary} at {self.rate:g}/s "
                 f"(deadline {self.setup_timeout:.0f}s) …")
        uac = self.pair.uac
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
        if self.mode == "kill":
            node.kill()  # returns once the processes are gone
        else:
            node.freeze()
        # Not before the kill: the primary answers until its processes are gone (the
        # local backend's kill takes ~20 ms). Not after failover(): the backup answers
        # as soon as the VIP is on it. Between the two nobody can send from the VIP.
        self.kill_at = time.time()
        self.cluster.failover(self.backup)

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

    # -- evidence ------------------------------------------------------------------------
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
            witnessed=self._witnessed())

    def _witnessed(self) -> list[WireBin] | None:
        """What the cluster's live witness received (`witness`); None without one."""
        peer = getattr(self.cluster, "peer", None)
        return None if peer is None else witnessed(peer)

    def _stop_prober(self) -> None:
        if self.prober is not None:
            self.prober.stop()
            self.prober = None


def witness(backend: Any) -> BinPeer:
    """A started pybin peer at the harness address: the run's live replication witness.

    Give it to the cluster (``Cluster(..., replicate=witness_topology(w))``, then
    ``cluster.peer = w``): every node then replicates to it as well, and the
    backup's own ``updated``/``deleted`` after the kill reach a destination that is
    alive, whatever became of the primary's address (a dead container's neighbour entry
    fails and the kernel drops what the backup sends there before any capture sees
    it). `FailoverRun` counts what it received as evidence beside the capture.
    """
    return BinPeer((backend.harness_ip, 0),
                   socket_factory=lambda family: backend.socket(socket.SOCK_DGRAM)).start()


def witness_topology(peer: BinPeer, nodes: tuple[str, str] = ("primary", "backup")
                     ) -> dict[str, list[Destination]]:
    """``Cluster(replicate=...)`` for a primary/backup pair plus the witness ``peer``.

    The witness is configured *first*: 1.10's dialog module prepends each
    ``replicate_dialogs_to`` to its list (``dialog.c``: ``rd->next =
    replication_dests``), so the last one configured is sent to first. Configured
    first, the witness is sent to after the other node, and the replication lag (the
    200 OK to the first BIN packet to the backup) does not include a send to it
    (appended, it added ~0.05 ms to the local p50: 0.09-0.10 against 0.03-0.05 ms).
    """
    a, b = nodes
    return {a: [peer.address, b], b: [peer.address, a]}


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


def run_failover(cluster: Cluster, calls: int = 200, *, workdir: str | Path, rate: float = 200.0,
                 release_rate: float = DEFAULT_RELEASE_RATE, mode: str = "kill",
                 probe_interval: float | None = 0.005, setup_timeout: float | None = None,
                 progress: Progress | None = None) -> FailoverResult:
    """Run the failover scenario on a started primary/backup ``cluster`` (see FailoverRun)."""
    return FailoverRun(cluster, calls, workdir=workdir, rate=rate, release_rate=release_rate,
                       mode=mode, probe_interval=probe_interval, setup_timeout=setup_timeout,
                       progress=progress).run()
