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
   BIN on the same clock) we judge and measure.

What counts as lost, and how each figure is measured: `harness.failover_figures`.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.calls import CallPair
from harness.capture import Capture
from harness.cluster import Cluster
from harness.failover_figures import (JSON_KEYS, Addr, CallKey, Evidence, FailoverResult,
                                      result_from)
from harness.mi import MIClient
from harness.sipp import SippError, SippSummary
from harness.wait import WaitTimeout, wait_until
from pybin.pcap import read_udp

__all__ = ["JSON_KEYS", "FailoverError", "FailoverResult", "FailoverRun", "Prober", "run_failover"]

Progress = Callable[[str], None]


class FailoverError(RuntimeError):
    """The scenario could not be run (calls not set up, no backup...); not a loss."""


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
    computed from that evidence alone (`harness.failover_figures.result_from`). The
    scenario runs its own tcpdump on the cluster network (a buffer big enough for the
    burst; a fixture's capture may also run): the BIN proof of each recovered call,
    the service gap and the replication lag all come from it.

    mode: ``kill`` (SIGKILL the primary) or ``freeze`` (SIGSTOP: alive but silent).
    rate: call setup rate (calls/s); every call is held, so all N are up at once.
    sync_timeout: how long the backup may take to hold every dialog before the kill
      (missing ones are counted in ``missing_on_backup`` and will show up as lost).
    probe_interval: seconds between OPTIONS probes around the kill; None: no prober
      (the gap then spans whatever SIP traffic there was).
    """

    def __init__(self, cluster: Cluster, calls: int = 200, *, workdir: str | Path,
                 rate: float = 200.0, mode: str = "kill", probe_interval: float | None = 0.005,
                 sync_timeout: float = 30.0, finish_timeout: float | None = None,
                 drain_timeout: float = 30.0, capture_buffer_kib: int = 65536,
                 progress: Progress | None = None) -> None:
        if mode not in ("kill", "freeze"):
            raise FailoverError(f"mode must be 'kill' or 'freeze', not {mode!r}")
        if calls < 1:
            raise FailoverError("calls must be at least 1")
        self.cluster, self.calls, self.rate, self.mode = cluster, calls, rate, mode
        self.probe_interval, self.sync_timeout, self.drain_timeout = probe_interval, sync_timeout, drain_timeout
        self.finish_timeout = finish_timeout if finish_timeout is not None else 60.0 + calls * 0.1
        self.say: Progress = progress or (lambda line: None)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.primary, self.backup = _role(cluster, "primary"), _role(cluster, "backup")
        if cluster.vip_owner != self.primary:
            raise FailoverError(f"the VIP is on {cluster.vip_owner}, not on the primary")
        self.proxy: Addr = cluster.sip_addr
        self.backup_mi: MIClient = cluster.mi(self.backup)
        # max_concurrent: SIPp's default cap on open calls is 3 x rate; held calls never
        # close, so beyond 600 calls at 200/s it would stop placing new ones
        self.pair = CallPair(cluster, "reinvite", calls=calls, rate=rate, hold=True,
                             max_concurrent=calls, workdir=self.workdir / "sipp")
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
        self.dialogs_left = 0
        self.summary: SippSummary | None = None

    def run(self) -> FailoverResult:
        self.capture.start()
        try:
            self.set_up_calls()
            self.wait_for_replication()
            self.fail_primary()
            self.release_calls()
            self.drain_backup()
        finally:
            self._stop_prober()
            self.pair.stop()
            self.capture.stop()
        return result_from(self.evidence())

    # -- the steps ---------------------------------------------------------------------
    def set_up_calls(self) -> None:
        """Place N calls through the primary and hold each after its ACK."""
        self.say(f"setting up {self.calls} calls through {self.primary} at {self.rate:g}/s …")
        self.pair.start()
        setup_timeout = 30.0 + self.calls / self.rate * 2
        try:
            self.pair.uac.wait_held(self.calls, timeout=setup_timeout)
        except SippError as err:
            held = len(self.pair.uac.events("HELD"))
            raise FailoverError(f"only {held} of {self.calls} calls were set up through the primary "
                                f"within {setup_timeout:.0f}s: {str(err).splitlines()[0]}") from None
        self.keys = {(c.call_id, c.from_tag, c.to_tag) for c in self.pair.uac.result().calls}

    def wait_for_replication(self) -> None:
        """Wait until the backup holds every dialog confirmed; count the missing ones."""
        self.say(f"{self.calls} calls held; waiting for {self.backup} to hold every dialog confirmed …")

        def missing() -> set[CallKey]:
            have = {d.key for d in self.backup_mi.dlg_list(context=False, page_size=50) if d.state == 4}
            return self.keys - have

        try:
            wait_until(lambda: not missing(), timeout=self.sync_timeout, alive=self.cluster.check,
                       what=f"{self.backup} to hold every dialog confirmed")
        except WaitTimeout:
            self.missing_on_backup = len(missing())
            self.say(f"warning: {self.missing_on_backup} dialogs not on {self.backup} after "
                     f"{self.sync_timeout:g}s; going on")
        self.stats_before = self.backup_mi.get_statistics()

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
        """Every held call sends its re-INVITE, then its BYE, through the VIP."""
        self.pair.uac.release()
        self.say(f"released {self.calls} calls: re-INVITE and BYE through {self.backup} …")
        try:
            self.summary = self.pair.wait(self.finish_timeout)
        except SippError as err:
            self.say(f"warning: callers did not all finish: {str(err).splitlines()[0]}")
            self.pair.stop()
            self.summary = self.pair.uac.result()
        self._stop_prober()

    def drain_backup(self) -> None:
        """Wait until the backup's dlg_list is empty (ended dialogs linger until tm frees
        their transactions); keep how many are left and its statistics."""
        self.say(f"waiting for {self.backup}'s dlg_list to empty …")
        listed = lambda: len(self.backup_mi.dlg_list(context=False, page_size=50))  # noqa: E731
        try:
            wait_until(lambda: listed() == 0, timeout=self.drain_timeout, interval=0.2,
                       what=f"{self.backup}'s dlg_list to empty")
        except WaitTimeout:
            self.dialogs_left = listed()
        self.stats_after = self.backup_mi.get_statistics()

    # -- evidence ------------------------------------------------------------------------
    def evidence(self) -> Evidence:
        if self.summary is None:
            raise FailoverError("the calls were never released: no evidence to judge")
        addresses = self.cluster.addresses
        return Evidence(
            backend=self.cluster.backend.name, mode=self.mode, calls=self.calls, keys=self.keys,
            summary=self.summary, datagrams=list(read_udp(self.capture.path)), kill_at=self.kill_at,
            proxy=self.proxy, primary_bin=addresses[self.primary].bin_addr,
            backup_bin=addresses[self.backup].bin_addr, missing_on_backup=self.missing_on_backup,
            backup_stats_before=self.stats_before, backup_stats_after=self.stats_after,
            backup_dialogs_left=self.dialogs_left, capture=self.capture.path,
            capture_drops=self.capture.dropped, workdir=self.workdir)

    def _stop_prober(self) -> None:
        if self.prober is not None:
            self.prober.stop()
            self.prober = None


def run_failover(cluster: Cluster, calls: int = 200, *, workdir: str | Path, rate: float = 200.0,
                 mode: str = "kill", probe_interval: float | None = 0.005,
                 progress: Progress | None = None) -> FailoverResult:
    """Run the failover scenario on a started primary/backup ``cluster`` (see FailoverRun)."""
    return FailoverRun(cluster, calls, workdir=workdir, rate=rate, mode=mode,
                       probe_interval=probe_interval, progress=progress).run()
