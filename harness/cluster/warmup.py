"""Warm-up probe for OpenSIPS 1.10.5's BIN receiver defect.

1.10.5's bin_receive_loop passes an uninitialised address length to recvfrom(); on
~60% of fresh processes (ASLR-dependent stack garbage) the *first* recvfrom fails with
EINVAL, the receiver exits and the main process takes the whole node down. A receiver
that survives one packet is safe from then on (the kernel writes a valid length back).

So before a test uses a node, each BIN receiver gets one packet:
  1. a valid BIN packet for a module nobody registers (silently ignored when healthy);
  2. a *sentinel*: a `dialog` packet with an unknown command, which a live receiver
     answers with a log line carrying its pid
     ("[pid] ERROR:dialog:receive_binary_packet: Invalid dialog binary packet command: 424242").
The sentinel makes survival observable on any backend (only logs are needed) without
sleeping. A node that dies with the defect's signature is restarted (fresh ASLR), up to
settings.warmup.max_restarts times; any other death is a real failure (NodeDied).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from harness.base.errors import HarnessError
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import Node, NodeDied, ZeroedPid
from harness.instruments import node_log
from pybin.wire import PacketBuilder

DEFECT_SIGNATURE = "bin_receive_loop: recvfrom: [22] Invalid argument"
SIGCHLD_SIGNATURE = "terminating due to SIGCHLD"
SENTINEL_CMD = 424242
#: log lines kept when a receiver died but the node has not exited (no death report yet)
LOG_LINES = 20
#: sends a datagram from the cluster network: send(packet, (ip, port))
Send = Callable[[bytes, tuple[str, int]], None]
#: the record a dialog module's BIN receiver logs for the sentinel (1.10.5 dlg_replication.c)
SENTINEL_MESSAGE = f"ERROR:dialog:receive_binary_packet: Invalid dialog binary packet command: {SENTINEL_CMD}"


class _ReceiverGone(Exception):
    """A probed BIN receiver died: the node is going down, whether or not it has exited."""


class WarmupError(HarnessError, RuntimeError):
    """A node kept dying of the recvfrom defect beyond the restart bound, or never answered."""


def bin_packet(module: str, cmd: int) -> bytes:
    """A valid BIN packet with no fields: all a probe or a sentinel needs."""
    return PacketBuilder(module, cmd).finish()


def probe_packet(module: str = "harness-warmup") -> bytes:
    """The warm-up probe: valid, for a module name no OpenSIPS module registers."""
    return bin_packet(module, 1)


def sentinel_packet() -> bytes:
    return bin_packet("dialog", SENTINEL_CMD)


def died_of_defect(log_text: str) -> bool:
    """True if a run's log shows the 1.10.5 recvfrom EINVAL death."""
    return DEFECT_SIGNATURE in log_text and SIGCHLD_SIGNATURE in log_text


def sentinel_records(log_text: str) -> list[node_log.LogRecord]:
    """The records in which a receiver logged the sentinel: who (pid) and when."""
    return [r for r in node_log.iter_records(log_text) if r.message.rstrip() == SENTINEL_MESSAGE]


def sentinel_pids(log_text: str) -> set[int]:
    return {r.pid for r in sentinel_records(log_text)}


@dataclass
class WarmupEvent:
    """One node death during warm-up (kept for the run's summary)."""

    node: str
    at: float
    #: the death report (time, exit code, last log lines)
    report: str


@dataclass
class WarmupStats:
    """Process-wide tally: fresh nodes probed and how many the defect killed."""

    probed: int = 0
    died: int = 0
    events: list[WarmupEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, died: WarmupEvent | None) -> None:
        with self._lock:
            self.probed += 1
            if died:
                self.died += 1
                self.events.append(died)

    def summary(self) -> str:
        rate = f" ({100 * self.died / self.probed:.0f}%)" if self.probed else ""
        return (f"1.10.5 BIN recvfrom defect: {self.died} of {self.probed} fresh nodes "
                f"died on their first BIN packet{rate} and were restarted")


#: tally for this process (pytest worker); the plugin can print STATS.summary()
STATS = WarmupStats()


def warm_up(node: Node, send: Send,
            receiver_pids: Callable[[], list[int]], settings: Settings,
            stats: WarmupStats = STATS) -> int:
    """Probe every BIN receiver of a started node; restart it while the defect kills it.

    send(packet, addr) sends from the cluster network; receiver_pids() asks the node
    (MI `ps`) for its BIN receivers. Survival is observed through the node's
    `bin_receiver_activity(pid)` where the backend can see its receivers (local
    backend: /proc, probe only), else through the sentinel's log line (any backend;
    needs a node that accepts replicated dialogs, since only then the dialog module
    listens on BIN). A node whose receiver died is killed for good before its restart.
    Returns the number of restarts.
    """
    restarts = 0
    addr = node.addresses().bin_addr
    while True:
        try:
            pids = set(receiver_pids())
        except ZeroedPid:
            # 2.1.0-2.1.1 zero a child's pid when the child runs before its parent
            # (internal_fork): no receiver to watch, and the release's own race, not
            # what any check observes; a fresh start draws again
            if restarts >= settings.warmup.max_restarts:
                raise
            restarts += 1
            node.kill()
            node.start()
            continue
        if not pids:  # probing nobody would pass without proving anything
            raise WarmupError(f"{node.name}: MI lists no BIN receiver to probe")
        seen = [node.bin_receiver_activity(p) for p in pids]
        # /proc tells a packet taken only of receivers that sleep in a blocking recvfrom;
        # 2.1.0's receivers read a non-blocking socket (udp_init_listener sets O_NONBLOCK
        # and bin_receive_loop loops on EAGAIN), so there the sentinel's log line decides
        if all(a is not None and a[1] for a in seen):
            died = _probe_observed(node, send, addr, pids, node.bin_receiver_activity, settings)
        else:
            died = _probe_sentinel(node, send, addr, pids, settings)
        if not died:
            stats.record(None)
            return restarts
        # the main process may still be shutting down (or hang doing so): its log
        # shows how the node went, then it goes for good
        try:
            wait_until(lambda: died_of_defect(node.current_logs()) or not node.is_running(),
                       timeout=settings.timeouts.warmup, what=f"{node.name} to show how it died")
        except WaitTimeout:
            pass
        logs = node.current_logs()
        report = node.death_report() or (f"node {node.name}: a BIN receiver died; last log lines:\n"
                                         + "\n".join(logs.splitlines()[-LOG_LINES:]))
        node.kill()
        if not died_of_defect(logs):
            raise NodeDied(f"during the BIN warm-up probe, not of the known recvfrom defect: {report}")
        stats.record(WarmupEvent(node.name, time.time(), report))
        # each receiver is its own coin flip (~60% death), so more receivers need
        # more fresh starts before all of them survive together
        if restarts >= settings.warmup.max_restarts * max(1, len(pids)):
            raise WarmupError(f"{node.name}: killed by the 1.10.5 recvfrom defect "
                              f"{restarts + 1} times in a row; giving up")
        restarts += 1
        node.start()


#: one probe round: send to the receivers not yet covered, return how to observe it
#: (None: nothing seen yet; a set: the round is over, these receivers answered)
Round = Callable[[set[int]], Callable[[], "set[int] | None"]]


def _probe_observed(node: Node, send: Send, addr: tuple[str, int], pids: set[int],
                    activity: Callable[[int], tuple[int, bool] | None],
                    settings: Settings) -> bool:
    """Probe until every receiver woke up and went back to recvfrom; True if the node died.

    activity(pid) -> (voluntary context switches, blocked in recvfrom now). A receiver
    whose count moved and that sleeps in recvfrom again has done one good recvfrom.
    """
    def round_(todo: set[int]) -> Callable[[], set[int] | None]:
        before = {p: activity(p) for p in todo}
        send(probe_packet(settings.warmup.module), addr)

        def woke() -> set[int] | None:
            now = {p: activity(p) for p in before}
            if any(v is None for v in now.values()):
                raise _ReceiverGone  # the node is going down (or hangs trying to)
            done = {p for p, was in before.items()
                    if was is not None and now[p][0] > was[0] and now[p][1]}  # type: ignore[index]
            return done or None
        return woke

    return _cover(node, pids, settings, round_, "probe", "no BIN receiver picked up the warm-up probe",
                  interval=0.005)


def _probe_sentinel(node: Node, send: Send, addr: tuple[str, int], pids: set[int],
                    settings: Settings) -> bool:
    """Probe + sentinel until every receiver logged the sentinel; True if the node died."""
    def round_(todo: set[int]) -> Callable[[], set[int] | None]:
        logs = node.current_logs()
        before, deaths = len(sentinel_records(logs)), logs.count(DEFECT_SIGNATURE)
        send(probe_packet(settings.warmup.module), addr)
        send(sentinel_packet(), addr)

        def answered() -> set[int] | None:
            logs = node.current_logs()
            if len(sentinel_records(logs)) > before:
                return sentinel_pids(logs) & pids
            if logs.count(DEFECT_SIGNATURE) > deaths:
                raise _ReceiverGone
            return None
        return answered

    return _cover(node, pids, settings, round_, "sentinel",
                  "no sign of the BIN warm-up sentinel (does the node accept replicated "
                  "dialogs, with debug >= -1?)", interval=0.01)


def _cover(node: Node, pids: set[int], settings: Settings, round_: Round, what: str,
           silent: str, interval: float) -> bool:
    """Probe rounds until every receiver in ``pids`` answered one; True if the node died.

    A round ends when some receiver answers (each packet reaches one receiver of the
    shared socket), a receiver dies, or the node exits; a round nobody answers is a
    WarmupError. A dead receiver is enough: 1.10.5's main process sometimes hangs for
    seconds in its SIGCHLD shutdown, and waiting for it read as "nobody answered".
    """
    limit = settings.timeouts.warmup
    covered: set[int] = set()
    rounds = 0
    while covered < pids:
        rounds += 1
        if rounds > 4 * len(pids) + 4:
            raise WarmupError(f"{node.name}: {what} never reached receivers {sorted(pids - covered)}")
        observe = round_(pids - covered)

        def outcome() -> tuple[bool, set[int]] | None:
            answered = observe()
            if answered is not None:
                return (False, answered)
            return None if node.is_running() else (True, set())

        try:
            died, answered = wait_until(outcome, timeout=limit, interval=interval,
                                        what=f"{node.name}'s BIN receivers to take the {what}")
        except _ReceiverGone:
            return True
        except WaitTimeout:
            raise WarmupError(f"{node.name}: {silent} within {limit:g}s") from None
        if died:
            return True
        covered |= answered
    return False
