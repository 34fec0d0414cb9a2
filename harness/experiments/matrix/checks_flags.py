"""Dialog flags and timers: bye on timeout, OPTIONS pings, and a dialog's expiry, on a
primary of release X and a backup of release Y. Each runs on a cluster of its own
(its dialog settings differ from the shared cluster's; a pinged dialog can deadlock a
1.10.0-1.10.2 backup's receiver).

What the outputs depend on is fixed: SIPp answers the pings itself (``-aa``), so the
calls run as designed; the pinging check observes for a stated number of the primary's
own ping rounds; the expiry check takes the race between the two nodes' timers out
by stopping both BIN receivers while each node expires its own copy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import NodeDied
from harness.experiments.calls import ACK_DELAY_MS
from harness.experiments.matrix.checks_sip import HELD_S
from harness.experiments.matrix.complete import (
    END_S,
    Incomplete,
    close,
    open_window,
    transactions_back,
)
from harness.experiments.matrix.evidence import (
    alive,
    bin_pids,
    capture_lines,
    cid,
    log_categories,
    sequences,
    sip_requests_by_sender,
    wire_flags,
)
from harness.experiments.matrix.registry import Observation, check
from harness.experiments.matrix.session import PairSession
from harness.instruments.mi_replies import MIError
from harness.live import LiveCluster
from pybin.dialog import DialogMessage

#: seconds between the primary's OPTIONS pings in the pinging check
PING_INTERVAL = 2
#: rounds of the primary's own pings (each party, after the backup held its copy)
#: during which a backup that pings would have pinged too
PING_ROUNDS = 2
#: the expiry check's dialog lifetime (seconds)
EXPIRY_S = 3
#: tm's fr_timer on the expiry check's nodes: the backup's own BYEs, sent from a VIP it
#: does not hold, are never answered, and with tm's default 30 s the check would wait
#: that long for their transactions to end
EXPIRY_FR_TIMER = 2
#: tm's wt_timer when the settings leave the releases' default (5 s in 1.10, 1.11, 2.1):
#: an INVITE transaction ends that long after its 200 OK is relayed
WT_TIMER_DEFAULT = 5
#: what marks a node's BIN receiver having handled everything before it
SENTINEL_LINE = "Invalid dialog binary packet command: 424242"


def _clients(pair: Any) -> dict[str, str]:
    return {"caller": pair.caller_host.ip, "callee": pair.callee_host.ip}


def _node_ips(lc: LiveCluster) -> dict[str, str]:
    return {name: lc.cluster.addresses[name].ip for name in lc.cluster.nodes}


def _backup_copies(lc: LiveCluster, held: list[str]) -> tuple[list[str], str]:
    """The backup's copies of the held calls (``state S user_flags F``) and whether MI answered."""
    try:
        entries = [d for d in lc.cluster.mi("backup").dlg_list() if cid(d.callid) in held]
    except (MIError, NodeDied, OSError) as err:
        return ["unknown"], f"no answer ({type(err).__name__})"
    return sorted({f"state {d.state} user_flags {d.user_flags}" for d in entries}) or ["none"], "answers"


def invite_out(lc: LiveCluster, calls: list[str], after: float) -> None:
    """Wait until ``after`` seconds have passed since the primary relayed the last of the
    calls' 200 OKs (the capture's clock: this host's)."""
    assert lc.capture is not None
    times = [line.time for line in capture_lines(lc.capture.path)
             if line.kind == "SIP" and line.call_id and cid(line.call_id) in calls
             and line.summary.startswith("SIP/2.0 200") and "INVITE]" in line.summary]
    if len(times) < len(calls):
        raise Incomplete(f"the capture holds {len(times)} 200 OKs for {len(calls)} calls")
    until = max(times) + after
    wait_until(lambda: time.time() >= until, timeout=after + 5, interval=0.1,
               what="the calls' INVITE transactions to end")


def _flags_check(s: PairSession, flags: str, ping_interval: int | None) -> Observation:
    settings: dict[str, Any] = {"create_flags": flags}
    if ping_interval is not None:
        settings["ping_interval"] = ping_interval
    lc = s.fresh(settings={"dialog": settings}, capture=True)
    cluster = lc.cluster
    window = open_window(lc)
    auto = ["-aa"] if ping_interval is not None else []  # SIPp answers the pings itself
    pair = s.calls(lc, "basic", calls=2, rate=50, hold=True, ack_delay_ms=ACK_DELAY_MS,
                   uas_options={"extra_args": auto}, extra_args=auto)
    held = pair.uac.wait_held(timeout=HELD_S)
    quiet = close(window, held, gone_on=(), transactions=False)
    obs: Observation = {}
    primary_msgs: list[DialogMessage] = [p.dialog() for p in quiet.packets.get("primary", [])]
    obs["primary.wire_flags"] = wire_flags(primary_msgs)
    obs["backup.dialogs"], obs["backup.mi"] = _backup_copies(lc, held)
    if ping_interval is not None:
        assert lc.capture is not None
        nodes, clients = _node_ips(lc), _clients(pair)
        base = sip_requests_by_sender(lc.capture.path, nodes, clients, "OPTIONS")["primary"]

        def rounds() -> bool:
            seen = sip_requests_by_sender(lc.capture.path, nodes, clients, "OPTIONS")["primary"]
            return all(seen.get(c, 0) - base.get(c, 0) >= PING_ROUNDS for c in clients)
        try:
            wait_until(rounds, timeout=(PING_ROUNDS + 2) * ping_interval + 10, interval=0.2,
                       what=f"{PING_ROUNDS} rounds of the primary's pings")
        except WaitTimeout:
            raise Incomplete(f"the primary did not ping each party {PING_ROUNDS} times") from None
        seen = sip_requests_by_sender(lc.capture.path, nodes, clients, "OPTIONS")
        obs["primary.options_to"] = sorted(seen["primary"])
        obs["backup.options_to"] = sorted(seen["backup"])
    if ping_interval is None:
        transactions_back(window)
    else:
        # the pings keep tm busy; the calls' INVITE transactions end wt_timer after their
        # 200 OK (WT_TIMER_DEFAULT): released after that, the calls outlive them
        invite_out(lc, held, (cluster.settings.tm.wt_timer or WT_TIMER_DEFAULT) + 1.0)
    pair.uac.release()
    summary = pair.wait(60)
    obs["calls.successful"] = summary.successful
    call_ids = [cid(c.call_id) for c in summary.calls]
    done = close(window, call_ids)
    grouped: dict[str, list[DialogMessage]] = {}
    for p in done.packets.get("primary", []):
        msg = p.dialog()
        grouped.setdefault(cid(msg.call_id), []).append(msg)
    obs["primary.packets"] = sequences(grouped, call_ids)
    obs["backup.stats"] = "no answer" if "backup" in done.silent else {
        k: done.moved["backup"].get(k, 0) for k in ("create_recv", "update_recv", "delete_recv")}
    obs["backup.active_after"] = "no answer" if "backup" in done.silent else \
        done.stats["backup"].get("active_dialogs")
    obs["nodes.alive"] = alive(cluster)
    return obs


@check("flags.bye_on_timeout", "two held calls whose dialogs are created with B (bye on "
       "timeout): the flags on the wire and on the backup")
def bye_on_timeout(s: PairSession) -> Observation:
    return _flags_check(s, "B", None)


@check("flags.pinging", "two held calls whose dialogs are created with Pp (OPTIONS-ping both "
       "parties every 2 s): flags on the wire, the backup's copy, who pings whom")
def pinging(s: PairSession) -> Observation:
    return _flags_check(s, "BPp", PING_INTERVAL)


def _sentinel_fence(lc: LiveCluster, node: str, timeout: float = 10.0) -> bool:
    """Send the sentinel to ``node``'s BIN socket; True once its one receiver logged it
    (every earlier datagram from this sender handled), False if it died or timed out."""
    cluster = lc.cluster
    from harness.cluster.warmup import sentinel_packet
    seen = cluster.nodes[node].logs().count(SENTINEL_LINE)
    cluster.send_bin(sentinel_packet(), cluster.addresses[node].bin_addr)
    try:
        wait_until(lambda: cluster.nodes[node].logs().count(SENTINEL_LINE) > seen
                   or not cluster.nodes[node].is_running(),
                   timeout=timeout, what=f"the sentinel on {node}", interval=0.05)
    except WaitTimeout:
        return False
    return cluster.nodes[node].is_running()


@check("expiry", "a held bye-on-timeout call outlives its 3 s lifetime: what each node does "
       "with its own copy (packets, BYEs, statistics) and with the other's deleted",
       needs=("host_pids",))
def expiry(s: PairSession) -> Observation:
    """Both nodes' timers fire in the same second, and whichever of the primary's expiry
    and its deleted reaches the backup first decides whether the backup expires its copy
    itself: a race. The check removes it: once the backup holds the confirmed copy, both
    nodes' BIN receivers are stopped (SIGSTOP), each node expires its own copy alone,
    then the receivers resume and handle the other's deleted (a sentinel fences it)."""
    lc = s.fresh(settings={"dialog": {"timeout": EXPIRY_S, "create_flags": "B"},
                           "tm": {"fr_timer": EXPIRY_FR_TIMER}}, capture=True)
    cluster = lc.cluster
    window = open_window(lc)
    pair = s.calls(lc, "basic", calls=1, rate=50, hold=True, ack_delay_ms=ACK_DELAY_MS)
    held = pair.uac.wait_held(timeout=HELD_S)
    close(window, held, gone_on=(), transactions=False)
    obs: Observation = {}
    copies = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in held]
    obs["backup.copy_before"] = sorted({f"state {d.state}" for d in copies}) or ["none"]
    stopped = {n: bin_pids(cluster, n) for n in ("primary", "backup")}
    marks = {n: len(cluster.nodes[n].logs()) for n in ("primary", "backup")}
    for pids in stopped.values():
        for pid in pids:
            if pid <= 0:  # kill(0) would stop this process group: never
                raise Incomplete(f"MI listed a BIN receiver without a pid ({pid})")
            os.kill(pid, signal.SIGSTOP)

    def gone(node: str) -> bool:
        return all(d.state >= 5 for d in cluster.mi(node).dlg_list(context=False) if cid(d.callid) in held)
    try:
        for node in ("primary", "backup"):
            try:
                wait_until(lambda n=node: gone(n), timeout=EXPIRY_S + END_S, what=f"expiry on {node}",
                           interval=0.2)
                obs[f"{node}.own_copy"] = "expired"
            except WaitTimeout:
                obs[f"{node}.own_copy"] = "kept"
            except (MIError, NodeDied):
                obs[f"{node}.own_copy"] = "node gone"
    finally:
        # what each logged before its receiver handles the other's deleted
        own = {n: len(cluster.nodes[n].logs()) for n in ("primary", "backup")}
        for pids in stopped.values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    for node in ("primary", "backup"):
        obs[f"{node}.expiry_logs"] = log_categories(cluster.nodes[node].logs()[marks[node]:own[node]])
        _sentinel_fence(lc, node)
    pair.stop()  # the caller never sends its BYE: the nodes ended the call
    done = close(window, held)
    for node in ("primary", "backup"):
        grouped: dict[str, list[DialogMessage]] = {}
        for p in done.packets.get(node, []):
            msg = p.dialog()
            grouped.setdefault(cid(msg.call_id), []).append(msg)
        obs[f"{node}.packets"] = sequences(grouped, held)
    assert lc.capture is not None
    byes = sip_requests_by_sender(lc.capture.path, _node_ips(lc), _clients(pair), "BYE")
    for node in ("primary", "backup"):
        obs[f"{node}.bye_to"] = sorted(byes[node])
        obs[f"{node}.on_other_deleted"] = log_categories(cluster.nodes[node].logs()[own[node]:],
                                                         until=SENTINEL_LINE)
        obs[f"{node}.stats"] = "no answer" if node in done.silent else {
            k: done.moved[node].get(k, 0) for k in ("expired_dialogs", "delete_sent", "delete_recv")}
        if node not in done.silent:
            obs[f"{node}.stats"]["active_dialogs"] = done.stats[node].get("active_dialogs")
    obs["nodes.alive"] = alive(cluster)
    return obs
