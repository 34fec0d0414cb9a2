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

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from harness.node import Node, NodeDied
from harness.settings import Settings
from pybin.wire import PacketBuilder

DEFECT_SIGNATURE = "bin_receive_loop: recvfrom: [22] Invalid argument"
SIGCHLD_SIGNATURE = "terminating due to SIGCHLD"
SENTINEL_CMD = 424242
_SENTINEL_RE = re.compile(
    r"\[(\d+)\] ERROR:dialog:receive_binary_packet: "
    rf"Invalid dialog binary packet command: {SENTINEL_CMD}\b")


class WarmupError(RuntimeError):
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


def sentinel_pids(log_text: str) -> set[int]:
    return {int(m.group(1)) for m in _SENTINEL_RE.finditer(log_text)}


@dataclass
class WarmupEvent:
    """One node death during warm-up (kept for the run's summary)."""

    node: str
    at: float
    log_tail: str


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


def _current_logs(node: Node) -> str:
    fn = getattr(node, "current_logs", None)
    if fn is not None:
        return fn()
    text = node.logs()
    marker = text.rfind("=== harness: start #")
    return text[marker:] if marker >= 0 else text


def warm_up(node: Node, send: Callable[[bytes, tuple[str, int]], None],
            receiver_pids: Callable[[], list[int]], settings: Settings,
            stats: WarmupStats = STATS) -> int:
    """Probe every BIN receiver of a started node; restart it while the defect kills it.

    send(packet, addr) sends from the cluster network; receiver_pids() asks the node
    (MI `ps`) for its BIN receivers. Survival is observed through the node's
    `bin_receiver_activity(pid)` when it has one (local backend: /proc, probe only),
    else through the sentinel's log line (any backend; needs a node that accepts
    replicated dialogs, since only then the dialog module listens on BIN).
    Returns the number of restarts.
    """
    restarts = 0
    addr = node.addresses().bin_addr
    activity = getattr(node, "bin_receiver_activity", None)
    while True:
        pids = set(receiver_pids())
        if callable(activity) and all(activity(p) is not None for p in pids):
            died = _probe_observed(node, send, addr, pids, activity, settings)
        else:
            died = _probe_sentinel(node, send, addr, pids, settings)
        if not died:
            stats.record(None)
            return restarts
        logs = _current_logs(node)
        tail = "\n".join(logs.splitlines()[-10:])
        if not died_of_defect(logs):
            raise NodeDied(f"node {node.name} died during the BIN warm-up probe, "
                           f"not of the known recvfrom defect; last log lines:\n{tail}")
        stats.record(WarmupEvent(node.name, time.time(), tail))
        # each receiver is its own coin flip (~60% death), so more receivers need
        # more fresh starts before all of them survive together
        if restarts >= settings.warmup.max_restarts * max(1, len(pids)):
            raise WarmupError(f"{node.name}: killed by the 1.10.5 recvfrom defect "
                              f"{restarts + 1} times in a row; giving up")
        restarts += 1
        node.start()


def _probe_observed(node: Node, send: Callable[[bytes, tuple[str, int]], None],
                    addr: tuple[str, int], pids: set[int],
                    activity: Callable[[int], tuple[int, bool] | None],
                    settings: Settings) -> bool:
    """Probe until every receiver woke up and went back to recvfrom; True if the node died.

    activity(pid) -> (voluntary context switches, blocked in recvfrom now). A receiver
    whose count moved and that sleeps in recvfrom again has done one good recvfrom.
    """
    limit = settings.timeouts.warmup
    covered: set[int] = set()
    rounds = 0
    while covered < pids:
        rounds += 1
        if rounds > 4 * len(pids) + 4:
            raise WarmupError(f"{node.name}: probe never reached receivers {sorted(pids - covered)}")
        before = {p: activity(p) for p in pids - covered}
        send(probe_packet(settings.warmup.module), addr)
        deadline = time.monotonic() + limit
        while True:
            if not node.is_running():
                return True
            woke = set()
            for p, was in before.items():
                now = activity(p)
                if now is None:  # receiver gone: the node is going down
                    break
                if was is not None and now[0] > was[0] and now[1]:
                    woke.add(p)
            if woke:
                covered |= woke
                break
            if time.monotonic() >= deadline:
                raise WarmupError(f"{node.name}: no BIN receiver picked up the warm-up "
                                  f"probe within {limit:g}s")
            threading.Event().wait(0.005)
    return False


def _probe_sentinel(node: Node, send: Callable[[bytes, tuple[str, int]], None],
                    addr: tuple[str, int], pids: set[int], settings: Settings) -> bool:
    """Probe + sentinel until every receiver logged the sentinel; True if the node died."""
    limit = settings.timeouts.warmup
    covered: set[int] = set()
    rounds = 0
    while covered < pids:
        rounds += 1
        if rounds > 4 * len(pids) + 4:
            raise WarmupError(f"{node.name}: sentinel never reached receivers "
                              f"{sorted(pids - covered)}")
        before = len(_SENTINEL_RE.findall(_current_logs(node)))
        send(probe_packet(settings.warmup.module), addr)
        send(sentinel_packet(), addr)
        deadline = time.monotonic() + limit
        while True:
            logs = _current_logs(node)
            if len(_SENTINEL_RE.findall(logs)) > before:
                covered |= sentinel_pids(logs) & pids
                break
            if not node.is_running():
                return True
            if time.monotonic() >= deadline:
                raise WarmupError(f"{node.name}: no sign of the BIN warm-up sentinel "
                                  f"within {limit:g}s (does the node accept replicated "
                                  "dialogs, with debug >= -1?)")
            threading.Event().wait(0.01)
    return False
