"""When a check may read its result: once the behaviour it provoked is over.

Over means, for the calls a check made, on every node that still answers MI:

- tm holds no more transactions than before the check: the calls' INVITE, CANCEL and
  BYE transactions have run out their timers (1.10.0 replicates ``deleted`` only when
  the dialog is freed, which waits for them; 1.10.1-1.10.2 send another ``deleted``
  when the INVITE transaction goes);
- the nodes named in ``gone_on`` (the primary, which handled the SIP) list none of the
  calls' dialogs: destroyed, not just ended;
- the pybin peer, a replication destination of every node, holds exactly as many
  packets from each node as that node counted sent (``*_sent``) since the check
  began: nothing is in flight;
- every node's dialog statistics have stayed the same for `SETTLE_S`.

Only then are the statistics, the peer's packets and the nodes' dialogs read. A
deadline that passes is an error of the cell (`Incomplete`, with what was still
missing), never a partial value; the session keeps beside it what the nodes' processes
were doing then (`harness.instruments.processes`), so a stuck node can be told from a
wait for the wrong thing. A node that stops answering MI (a deadlocked 1.10.2
backup) is not waited for: it is reported as such, an observation like any other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.base.errors import HarnessError
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import NodeDied
from harness.instruments.mi_replies import MIError
from harness.instruments.peer import PeerPacket
from harness.live import LiveCluster

#: statistics unchanged this long (seconds) = settled
SETTLE_S = 0.5
#: the longest a provoked behaviour may take to end: a SIP transaction's 32 s timer,
#: tm's 5 s wait timer and a margin
END_S = 60.0
#: one MI question while waiting; a node that does not answer in time is "no answer"
MI_S = 2.0
SENT = ("create_sent", "update_sent", "delete_sent")


class Incomplete(HarnessError):
    """The behaviour did not end before its deadline: the cell is an error."""


def _sent(stats: dict[str, int]) -> int:
    return sum(stats.get(k, 0) for k in SENT)


@dataclass
class Window:
    """What a check started from: statistics, tm's transactions and the peer's packets."""

    lc: LiveCluster
    nodes: tuple[str, ...]
    stats: dict[str, dict[str, int]]
    transactions: dict[str, int]
    peer_index: int
    opened: float = field(default_factory=time.time)


@dataclass
class Closed:
    """What a check may read once the behaviour is over."""

    #: dialog statistics per node that answered, and how they moved in the window
    stats: dict[str, dict[str, int]]
    moved: dict[str, dict[str, int]]
    #: the peer's packets of the window, per sending node
    packets: dict[str, list[PeerPacket]]
    #: nodes that stopped answering MI (dead or stuck) during the window
    silent: list[str]
    seconds: float


def _stats(lc: LiveCluster, node: str) -> tuple[dict[str, int], int]:
    mi = lc.cluster.mi(node, MI_S)
    return mi.get_statistics("dialog:"), mi.get_statistics("tm:").get("inuse_transactions", 0)


def transactions_back(window: Window, node: str = "primary", timeout: float = END_S) -> None:
    """Wait until ``node``'s tm holds no more transactions than when the window opened:
    e.g. held calls' INVITE transactions have run out their timers, so a call released
    now outlives them (1.10.1-1.10.2 replicate another deleted when an INVITE
    transaction ends after its dialog did)."""
    def back() -> bool:
        return _stats(window.lc, node)[1] <= window.transactions[node]
    try:
        wait_until(back, timeout=timeout, interval=0.1, what=f"{node}'s transactions to run out")
    except WaitTimeout:
        raise Incomplete(f"{node}'s tm still holds transactions after {timeout:g} s") from None


def open_window(lc: LiveCluster, nodes: Iterable[str] | None = None) -> Window:
    """Snapshot before a check provokes anything (``nodes``: default every node)."""
    names = tuple(nodes or lc.cluster.nodes)
    stats, tm = {}, {}
    for n in names:
        stats[n], tm[n] = _stats(lc, n)
    index = len(lc.peer.received) if lc.peer is not None else 0
    return Window(lc, names, stats, tm, index)


def close(window: Window, calls: Iterable[str], *, gone_on: Iterable[str] = ("primary",),
          transactions: bool = True, timeout: float = END_S) -> Closed:
    """Wait until the behaviour of ``calls`` is over (module docstring); what it left.

    ``transactions=False, gone_on=()``: only until replication is quiet (every packet
    counted sent has arrived, the statistics settled), e.g. while calls are held up.
    """
    lc, calls = window.lc, set(calls)
    gone_on = [n for n in gone_on if n in window.nodes]
    silent: list[str] = []
    last: dict[str, tuple[dict[str, int], int]] = {}
    stable_since = time.monotonic()
    missing: list[str] = []

    def peer_packets() -> dict[str, list[PeerPacket]]:
        out: dict[str, list[PeerPacket]] = {n: [] for n in window.nodes}
        if lc.peer is None:
            return out
        by_addr = {lc.cluster.addresses[n].bin_addr: n for n in window.nodes}
        for p in lc.peer.received[window.peer_index:]:
            if p.source in by_addr:
                out[by_addr[p.source]].append(p)
        return out

    def over() -> bool:
        nonlocal stable_since
        missing.clear()
        now: dict[str, tuple[dict[str, int], int]] = {}
        for n in window.nodes:
            if n in silent:
                continue
            try:
                now[n] = _stats(lc, n)
            except (MIError, NodeDied):
                silent.append(n)
        if now != last:
            last.clear()
            last.update(now)
            stable_since = time.monotonic()
        packets = peer_packets()
        for n, (stats, tm) in now.items():
            if transactions and tm > window.transactions[n]:
                missing.append(f"{n}: {tm - window.transactions[n]} transaction(s) still in tm")
            if lc.peer is not None and len(packets[n]) != _sent(stats) - _sent(window.stats[n]):
                missing.append(f"{n}: the peer holds {len(packets[n])} of the "
                               f"{_sent(stats) - _sent(window.stats[n])} packets it counted sent")
        for n in gone_on:
            if n in now:
                try:
                    left = [d.callid for d in lc.cluster.mi(n, MI_S).dlg_list(context=False)
                            if d.callid in calls or d.callid.rsplit("///", 1)[-1] in calls]
                except (MIError, NodeDied):
                    silent.append(n)
                    continue
                if left:
                    missing.append(f"{n}: {len(left)} dialog(s) of the check not destroyed yet")
        if not missing and time.monotonic() - stable_since < SETTLE_S:
            missing.append(f"statistics settling ({SETTLE_S:g} s unchanged)")
        return not missing

    start = time.monotonic()
    try:
        wait_until(over, timeout=timeout, interval=0.1, what="the checked behaviour to be over")
    except WaitTimeout:
        raise Incomplete(f"not over after {timeout:g} s: {'; '.join(missing) or 'no answer'}") from None
    stats = {n: last[n][0] for n in last}
    moved = {n: {k: v - window.stats[n].get(k, 0) for k, v in stats[n].items()
                 if v != window.stats[n].get(k, 0)} for n in stats}
    return Closed(stats, moved, peer_packets(), sorted(silent), round(time.monotonic() - start, 2))
