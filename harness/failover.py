"""Failover figures for a primary/backup pair: no dialog lost, and how long it took.

    harness failover --calls 200 [--json] [--backend auto|docker|local] [--freeze]

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

What counts as *not lost*: a call is recovered when its re-INVITE (CSeq 2) and its BYE
both got a 200 **and** the backup proved that its dialog module matched them to the
replicated dialog — the capture shows the backup sending BIN ``updated`` (the
re-INVITE moved the dialog's cseq) and ``deleted`` (the BYE ended it) for that Call-ID
after the kill. A 200 alone proves nothing: ``loose_route`` would relay an in-dialog
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

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.sip import SipMessage, sip_datagram
from harness.sipp import CallResult, SippError, SippSummary
from harness.wait import WaitTimeout, wait_until
from pybin.dialog import Command
from pybin.errors import PybinError
from pybin.pcap import CapturedDatagram, read_udp
from pybin.wire import MARKER

Addr = tuple[str, int]
Progress = Callable[[str], None]

JSON_KEYS = ("calls", "lost", "service_gap_ms", "recovery_ms_p50", "recovery_ms_p95",
             "recovery_ms_p99", "replication_lag_ms_p50", "replication_lag_ms_p99", "backend")


class FailoverError(RuntimeError):
    """The scenario could not be run (calls not set up, no backup...); not a loss."""


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

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in JSON_KEYS}

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
            ("backup update_sent / delete_sent", f"+{self._delta('update_sent')} / "
                                                 f"+{self._delta('delete_sent')}"),
            ("backup dialogs left", str(self.backup_dialogs_left)),
        ]
        if self.workdir is not None:
            rows.append(("artifacts", str(self.workdir)))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        for cid, why in list(self.lost_calls.items())[:10]:
            lines.append(f"  lost {cid}: {why}")
        if len(self.lost_calls) > 10:
            lines.append(f"  … and {len(self.lost_calls) - 10} more")
        return "\n".join(lines)

    def _delta(self, key: str) -> int:
        return self.backup_stats_after.get(key, 0) - self.backup_stats_before.get(key, 0)


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


def _role(cluster: Any, role: str) -> str:
    name = next((n for n, r in cluster.roles.items() if r == role), None)
    if name is None:
        raise FailoverError(f"the cluster has no {role} node (roles: {cluster.roles})")
    return name


def run_failover(cluster: Any, calls: int = 200, *, workdir: str | Path, rate: float = 200.0,
                 mode: str = "kill", probe_interval: float | None = 0.005,
                 sync_timeout: float = 30.0, finish_timeout: float | None = None,
                 drain_timeout: float = 30.0, capture_buffer_kib: int = 65536,
                 progress: Progress | None = None) -> FailoverResult:
    """Run the failover scenario on a started primary/backup ``cluster``; see the module doc.

    The scenario runs its own tcpdump on the cluster network (with a buffer big enough
    for the burst; a fixture's capture may also run): the BIN proof of each recovered
    call, the service gap and the replication lag all come from it.

    mode: ``kill`` (SIGKILL the primary) or ``freeze`` (SIGSTOP: alive but silent).
    rate: call setup rate (calls/s); every call is held, so all N are up at once.
    sync_timeout: how long the backup may take to hold every dialog before the kill
      (missing ones are counted in ``missing_on_backup`` and will show up as lost).
    probe_interval: seconds between OPTIONS probes around the kill; None: no prober
      (the gap then spans whatever SIP traffic there was).
    """
    from harness.calls import CallPair
    from harness.capture import Capture

    if mode not in ("kill", "freeze"):
        raise FailoverError(f"mode must be 'kill' or 'freeze', not {mode!r}")
    if calls < 1:
        raise FailoverError("calls must be at least 1")
    say = progress or (lambda line: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    primary, backup = _role(cluster, "primary"), _role(cluster, "backup")
    if cluster.vip_owner != primary:
        raise FailoverError(f"the VIP is on {cluster.vip_owner}, not on the primary")
    backend = cluster.backend
    paddr, baddr = cluster.addresses[primary], cluster.addresses[backup]
    proxy: Addr = cluster.sip_addr
    bmi = cluster.mi(backup)

    # max_concurrent: SIPp's default cap on open calls is 3 x rate; held calls never
    # close, so beyond 600 calls at 200/s it would stop placing new ones
    pair = CallPair(cluster, "reinvite", calls=calls, rate=rate, hold=True,
                    max_concurrent=calls, workdir=workdir / "sipp")
    # a burst of N calls overflows tcpdump's default 2 MB ring: lost packets would
    # read as lost dialogs, so give it room (and 16 KB snaplen: SIP and BIN here fit)
    cap = Capture(backend.capture_host(), workdir / "failover.pcap", snaplen=16384,
                  buffer_kib=capture_buffer_kib)
    cap.start()
    prober: Prober | None = None
    result = FailoverResult(calls, calls, None, None, None, None, None, None, backend.name,
                            mode=mode, workdir=workdir)
    summary: SippSummary | None = None
    kill_at = math.inf  # set once the primary is dead, before the VIP moves
    try:
        say(f"setting up {calls} calls through {primary} at {rate:g}/s …")
        pair.start()
        setup_timeout = 30.0 + calls / rate * 2
        try:
            pair.uac.wait_held(calls, timeout=setup_timeout)
        except SippError as err:
            held = len(pair.uac.events("HELD"))
            raise FailoverError(f"only {held} of {calls} calls were set up through the primary "
                                f"within {setup_timeout:.0f}s: {str(err).splitlines()[0]}") from None
        keys = {(c.call_id, c.from_tag, c.to_tag) for c in pair.uac.result().calls}

        say(f"{calls} calls held; waiting for {backup} to hold every dialog confirmed …")

        def missing() -> set[tuple[str, str | None, str | None]]:
            have = {d.key for d in bmi.dlg_list(context=False, page_size=50) if d.state == 4}
            return keys - have

        try:
            wait_until(lambda: not missing(), timeout=sync_timeout, alive=cluster.check,
                       what=f"{backup} to hold every dialog confirmed")
            left: set[tuple[str, str | None, str | None]] = set()
        except WaitTimeout:
            left = missing()
        result.missing_on_backup = len(left)
        if left:
            say(f"warning: {len(left)} dialogs not on {backup} after {sync_timeout:g}s; going on")
        result.backup_stats_before = bmi.get_statistics()

        if probe_interval is not None:
            prober = Prober(backend.udp_socket(0), proxy, probe_interval).start()
            try:  # the primary answers probes
                wait_until(lambda: prober.answers >= 3, timeout=5.0, interval=0.005,
                           what="the primary to answer three probes")
            except WaitTimeout:
                pass  # the gap is then measured from whatever answers there were
        say(f"{'killing' if mode == 'kill' else 'freezing'} {primary}, moving the VIP to {backup} …")
        if mode == "kill":
            cluster.nodes[primary].kill()  # returns once the processes are gone
        else:
            cluster.nodes[primary].freeze()
        # Not before the kill: the primary answers until its processes are gone (the
        # local backend's kill takes ~20 ms). Not after failover(): the backup answers
        # as soon as the VIP is on it. Between the two nobody can send from the VIP.
        kill_at = time.time()
        cluster.failover(backup)
        pair.uac.release()
        say(f"released {calls} calls: re-INVITE and BYE through {backup} …")
        try:
            summary = pair.wait(finish_timeout if finish_timeout is not None else 60.0 + calls * 0.1)
        except SippError as err:
            say(f"warning: callers did not all finish: {str(err).splitlines()[0]}")
            pair.stop()
            summary = pair.uac.result()
        if prober is not None:
            prober.stop()
            prober = None

        say(f"waiting for {backup}'s dlg_list to empty …")
        result.backup_dialogs_left = _drain(bmi, drain_timeout)
        result.backup_stats_after = bmi.get_statistics()
    finally:
        if prober is not None:
            prober.stop()
        pair.stop()
        cap.stop()

    assert summary is not None
    by_id = {c.call_id: c for c in summary.calls}
    result.final_codes = {
        cid: (getattr(c.final_response("INVITE", 2), "code", None),
              getattr(c.final_response("BYE"), "code", None))
        for cid, c in by_id.items()}
    result.capture = cap.path
    result.capture_drops = cap.dropped
    sip, bins = split_capture(read_udp(cap.path))
    gap = service_gap(sip, proxy, kill_at)
    lags = replication_lags(sip, bins, proxy, paddr.bin_addr, baddr.bin_addr, until=kill_at)
    matched = backup_commands(bins, baddr.bin_addr, kill_at)
    result.gap = gap
    result.lost_calls = judge_calls(by_id.values(), matched)
    for cid in {k[0] for k in keys} - set(by_id):
        result.lost_calls[cid] = "no SIPp record of the call"
    result.lost = len(result.lost_calls)
    result.service_gap_ms = None if gap is None else round(gap.ms, 3)
    result.recovery_s = recovery_times(by_id.values())
    firsts = [t for c in by_id.values() if (t := c.first_sent("INVITE", 2)) is not None]
    result.release_spread_ms = _ms(max(firsts) - min(firsts)) if firsts else None
    rec = list(result.recovery_s.values())
    result.recovery_ms_p50 = _ms(percentile(rec, 50))
    result.recovery_ms_p95 = _ms(percentile(rec, 95))
    result.recovery_ms_p99 = _ms(percentile(rec, 99))
    result.replication_lag_s = {cid: lag for cid, lag in lags.items() if cid in by_id}
    lag = list(result.replication_lag_s.values())
    result.replication_lag_ms_p50 = _ms(percentile(lag, 50))
    result.replication_lag_ms_p99 = _ms(percentile(lag, 99))
    return result


def _drain(mi: Any, timeout: float) -> int:
    """Wait until ``mi``'s dlg_list is empty (ended dialogs linger until tm frees their
    transactions); the number still listed at the deadline."""
    try:
        wait_until(lambda: not mi.dlg_list(context=False, page_size=50), timeout=timeout,
                   interval=0.2, what="the backup's dlg_list to empty")
    except WaitTimeout:
        return len(mi.dlg_list(context=False, page_size=50))
    return 0


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls (default 200)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--backend", default=os.environ.get("HARNESS_BACKEND", "auto"),
                        choices=("auto", "docker", "local"), help="how to run OpenSIPS (default auto)")
    parser.add_argument("--rate", type=float, default=200.0, help="call setup rate, calls/s (default 200)")
    parser.add_argument("--freeze", action="store_true",
                        help="SIGSTOP the primary (a hung node) instead of SIGKILL")
    parser.add_argument("--settings", help="YAML file overriding harness/defaults.yaml")
    parser.add_argument("--workdir", help="keep capture and SIPp logs here (default: a temp dir, "
                                          "removed unless calls were lost)")


def run(args: argparse.Namespace) -> int:
    """``harness failover``: start a primary/backup cluster, fail it over, report."""
    import shutil

    from harness.backends import choose_backend
    from harness.cluster import Cluster
    from harness.settings import load_settings

    def progress(line: str) -> None:
        print(f"failover: {line}", file=sys.stderr, flush=True)

    if args.calls < 1 or args.rate <= 0:
        print("harness failover: --calls must be at least 1 and --rate positive", file=sys.stderr)
        return 2
    settings = load_settings(args.settings)
    choice = choose_backend(args.backend, settings)
    if choice.name is None:
        print(f"harness failover: {choice.reason}", file=sys.stderr)
        return 2
    keep = args.workdir is not None
    # under the temp dir: the docker backend mounts it into SIPp containers
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="harness-failover-"))
    progress(f"backend {choice.name}; starting primary + backup (BIN warm-up) …")
    backend = choice.factory()(settings)
    try:
        with Cluster(backend, ("primary", "backup"), settings=settings) as cluster:
            result = run_failover(cluster, args.calls, workdir=workdir, rate=args.rate,
                                  mode="freeze" if args.freeze else "kill", progress=progress)
    except FailoverError as err:
        print(f"harness failover: {err}", file=sys.stderr)
        return 2
    if result.lost or result.capture_drops:
        keep = True
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    if result.capture_drops:
        progress(f"warning: tcpdump dropped {result.capture_drops} packets; figures may be off")
    if keep:
        progress(f"artifacts kept in {workdir}")
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(result.table())
    return 1 if result.lost else 0
