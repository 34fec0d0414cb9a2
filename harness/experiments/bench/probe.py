"""One measured step against a real backup: offer packets, count what it took.

Three witnesses, because each misses something: the backup's own ``*_recv``
statistics (what `bin_receive_loop` handed to the dialog module), its
``active_dialogs`` (what the module finished applying: every created is deleted
again, so it returns to where it was), and the kernel's drop counters in the
node's namespace (what never reached OpenSIPS at all). A step is clean only when
all three agree that nothing was lost and the node is still running.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import Node
from harness.experiments.bench.flood import Sent, send_paced
from harness.experiments.bench.kernel import KernelCounters, read_counters
from harness.instruments import node_log
from harness.instruments.mi import MIClient

RECV = ("create_recv", "update_recv", "delete_recv")
#: besides an error level, what in a node's log says a step went wrong (the first such
#: records are reported)
FAILURE_MARKS = ("No more", "out of memory", "not enough")
#: seconds the backup may take to drain what was offered, beyond the offer itself
SETTLE = 15.0


def load_average() -> float:
    """The 1-minute load average, recorded with every figure (the machine is shared)."""
    return round(os.getloadavg()[0], 2)


def recv_total(stats: dict[str, int]) -> int:
    return sum(stats.get(k, 0) for k in RECV)


def failure_lines(log: str, limit: int = 5) -> list[str]:
    """The first records of ``log`` that say something failed (an error level, or a
    message about memory), as written."""
    return [r.full for r in node_log.iter_records(log)
            if r.is_error or any(m in r.text for m in FAILURE_MARKS)][:limit]


@dataclass
class Step:
    """What one offered rate did to the backup."""

    asked: float
    offered: float
    sent: int
    received: int
    lost: int
    #: active_dialogs left above the baseline once the backup settled
    left: int
    kernel: KernelCounters | None
    alive: bool
    load: float
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        k = self.kernel
        dropped = bool(k and (k.rcvbuf_errors or k.in_errors or (k.socket_drops or 0)))
        return self.alive and self.lost == 0 and self.left == 0 and not dropped

    def as_dict(self) -> dict[str, object]:
        k = self.kernel
        return {"asked": self.asked, "offered": round(self.offered), "sent": self.sent,
                "received": self.received, "lost": self.lost, "left": self.left,
                "rcvbuf_errors": k.rcvbuf_errors if k else None,
                "socket_drops": k.socket_drops if k else None,
                "alive": self.alive, "clean": self.clean, "load": self.load, "errors": self.errors}


class BackupProbe:
    """Offers packets to one node's BIN socket and reads the witnesses around it."""

    def __init__(self, node: Node, mi: MIClient, sock: socket.socket, bin_addr: tuple[str, int],
                 progress: Callable[[str], None] = lambda _: None) -> None:
        self.node = node
        self.mi = mi
        self.sock = sock
        self.bin_addr = bin_addr
        self.progress = progress

    def kernel(self) -> KernelCounters | None:
        try:
            return read_counters(self.node, self.bin_addr[1])
        except Exception:  # a dead node has no namespace to read: the step says so
            return None

    def offer(self, packets: list[bytes], rate: float, *, expect_left: int = 0) -> Step:
        """Send ``packets`` at ``rate``/s; wait until the backup took them all or stopped taking."""
        before, kernel_before = self.mi.get_statistics("dialog:"), self.kernel()
        log_mark = len(self.node.current_logs())
        sent: Sent = send_paced(self.sock, self.bin_addr, packets, rate)
        received, alive = self._settle(before, sent.packets)
        left = self._settle_active(before, expect_left) if alive else 0
        kernel_after = self.kernel()
        kernel = (kernel_after.minus(kernel_before)
                  if kernel_after is not None and kernel_before is not None else None)
        errors = failure_lines(self.node.current_logs()[log_mark:])
        if not alive:
            errors = errors or failure_lines(self.node.death_report() or "") or ["the node exited"]
        return Step(rate, sent.rate, sent.packets, received, sent.packets - received, left,
                    kernel, alive, load_average(), errors)

    def _settle(self, before: dict[str, int], sent: int) -> tuple[int, bool]:
        """(packets the backup counted, alive): waits on the counters, not on a clock.

        Done when every packet is counted, or when the BIN socket's queue is empty and
        the count stopped moving between two polls (the rest will never come).
        """
        last = [-1]

        def settled() -> int | None:
            got = recv_total(self.mi.get_statistics("dialog:")) - recv_total(before)
            if got >= sent:
                return got
            k = self.kernel()
            if got == last[0] and k is not None and not k.rx_queue:
                return got
            last[0] = got
            return None

        try:
            return wait_until(settled, timeout=SETTLE, interval=0.25, alive=self.node.check_alive,
                              what="the backup to count what was offered"), True
        except WaitTimeout:
            return max(last[0], 0), True
        except Exception:  # NodeDied, or MI gone with it
            return max(last[0], 0), False

    def _settle_active(self, before: dict[str, int], expect_left: int) -> int:
        """Dialogs left above the baseline once applying stopped moving."""
        base = before.get("active_dialogs", 0) + expect_left
        last = [None]

        def settled() -> int | None:
            now = self.mi.get_statistics("dialog:").get("active_dialogs", 0) - base
            if now == 0 or now == last[0]:
                return now if now else True  # type: ignore[return-value]
            last[0] = now
            return None

        try:
            value = wait_until(settled, timeout=SETTLE, interval=0.25, alive=self.node.check_alive,
                               what="active_dialogs to settle")
            return 0 if value is True else int(value)
        except Exception:
            return int(last[0] or 0)
