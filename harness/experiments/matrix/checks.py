"""Behaviour checks: what a primary of release X and a backup of release Y do, as data.

A check runs one experiment on a `CheckContext` and returns an *observation*: a flat
``{key: JSON value}`` of what it saw (packets sent per SIP event, fields, the backup's
state, statistics, survival). It asserts nothing: `harness.experiments.matrix.compare` judges an
observation against the baseline release's, key by key, and names the upstream commit
when a known difference explains it.

Keys are prefixed by who showed the behaviour (``primary.``, ``backup.``, ``nodes.``),
so a known difference can say which role's release causes it. Values are chosen to be
stable from run to run of one release: sets are sorted lists, races that a release
allows are folded into the behaviour they stand for (a created packet that 1.10.3+
skips because the ACK was handled first counts as "after 200 OK", the only place it
could have been), counts are of calls, not of packets that depend on timing.

Checks register themselves with `check`; `CHECKS` is the registry in run order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base.resources import shipped
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.experiments.compare import diff_entries
from harness.experiments.matrix.context import CheckContext
from harness.instruments.capture import ladder_lines
from harness.instruments.mi_replies import MIError
from harness.instruments.peer import BinPeer
from harness.live import LiveCluster
from pybin.dialog import DialogCreated, DialogDeleted, DialogMessage, DialogUpdated

Observation = dict[str, Any]
SCENARIO_DIR = shipped("scenarios")
#: calls per SIP scenario: enough to see a per-call pattern, few enough to stay fast
CALLS = 3
#: how long an expected packet or state may take to show (seconds); generous, waits end early
SETTLE = 10.0


@dataclass(frozen=True)
class Check:
    """One named experiment; ``covers`` says in one sentence what it shows."""

    name: str
    covers: str
    run: Callable[[CheckContext], Observation]


CHECKS: dict[str, Check] = {}


def check(name: str, covers: str) -> Callable[[Callable[[CheckContext], Observation]],
                                              Callable[[CheckContext], Observation]]:
    """Register ``fn`` as check ``name`` (names are unique: a clash is a bug)."""
    def register(fn: Callable[[CheckContext], Observation]) -> Callable[[CheckContext], Observation]:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, covers, fn)
        return fn
    return register


# -- observation helpers ------------------------------------------------------------------

def cid(call_id: str | bytes) -> str:
    """A call's id as SIPp names it: long_headers prefixes the Call-ID with 1.2 KB and
    ``///``, SIPp's hold/release markers carry only what follows."""
    text = call_id.decode("utf-8", "replace") if isinstance(call_id, bytes) else call_id
    return text.rsplit("///", 1)[-1]


def packet_name(msg: DialogMessage) -> str:
    """``created(3)``, ``updated(4)`` or ``deleted``: command and the state it carries."""
    if isinstance(msg, DialogCreated):
        return f"created({int(msg.state)})"
    if isinstance(msg, DialogUpdated):
        return f"updated({int(msg.state)})"
    return "deleted"


def by_call(peer: BinPeer, source: tuple[str, int] | None = None) -> dict[str, list[DialogMessage]]:
    """The peer's decoded dialog packets per Call-ID, in arrival order (from ``source`` only)."""
    out: dict[str, list[DialogMessage]] = {}
    for p in list(peer.received):
        if source is not None and p.source != source:
            continue
        msg = p.dialog()
        out.setdefault(cid(msg.call_id), []).append(msg)
    return out


def sequences(grouped: dict[str, list[DialogMessage]], call_ids: list[str]) -> list[str]:
    """Distinct per-call packet sequences without created (its place is `created_timing`)."""
    seqs = {" ".join(packet_name(m) for m in grouped.get(cid, []) if not isinstance(m, DialogCreated))
            or "(none)" for cid in call_ids}
    return sorted(seqs)


def created_timing(pcap: Path, primary_ips: set[str], call_ids: list[str]) -> list[str]:
    """Per call, whether the primary sent created before or after relaying the 200 OK.

    Read from one capture on the cluster's bridge: both leave the primary through the
    same interface, so their order there is the order the primary sent them (SIP from
    the VIP, BIN from the node's own address: ``primary_ips`` holds both). A call
    with no created counts as "after 200 OK": only a release that replicates created
    after the 200 (and skips it once the ACK was handled) can leave it out.
    """
    first_ok: dict[str, int] = {}
    first_created: dict[str, int] = {}
    for i, line in enumerate(ladder_lines(pcap)):
        if line.src[0] not in primary_ips or line.call_id is None or cid(line.call_id) not in call_ids:
            continue
        call = cid(line.call_id)
        if line.kind == "SIP" and line.summary.startswith("SIP/2.0 200") and "INVITE]" in line.summary:
            first_ok.setdefault(call, i)
        elif line.kind == "BIN" and "created" in line.summary:
            first_created.setdefault(call, i)
    out = set()
    for call in call_ids:
        if call not in first_created or call not in first_ok:
            out.add("after 200 OK" if call in first_ok else "no 200 OK seen")
        else:
            out.add("before 200 OK" if first_created[call] < first_ok[call] else "after 200 OK")
    return sorted(out)


def statistics(cluster: Cluster, node: str, names: tuple[str, ...]) -> dict[str, Any] | str:
    """Chosen dialog statistics of ``node``; a string saying why when it has none."""
    try:
        stats = cluster.mi(node).get_statistics()
    except MIError as err:
        return f"unavailable: {str(err).splitlines()[0][:80]}"
    if not stats:
        return "unavailable: get_statistics returned no dialog statistics"
    return {n: stats.get(n) for n in names}


def alive(cluster: Cluster) -> dict[str, bool]:
    """Which nodes still run (each asked over MI, so a dead one is known dead)."""
    out = {}
    for name, node in cluster.nodes.items():
        try:
            cluster.mi(name).ps()
            out[name] = node.is_running()
        except (NodeDied, MIError):
            out[name] = False
    return out


def wait_quiet(peer: BinPeer, source: tuple[str, int], call_ids: list[str],
               done: Callable[[list[DialogMessage]], bool], timeout: float = SETTLE) -> bool:
    """Wait until every call's packets from ``source`` satisfy ``done``; False at the deadline."""
    def ready() -> bool:
        grouped = by_call(peer, source)
        return all(done(grouped.get(call, [])) for call in call_ids)
    try:
        wait_until(ready, timeout=timeout, what="replication packets", interval=0.05)
        return True
    except WaitTimeout:
        return False


def fence(ctx: CheckContext, lc: LiveCluster) -> str:
    """One confirmed call after the others; once its deleted arrived, the primary has
    sent everything earlier calls made it send (one sender, in order). Its Call-ID."""
    cluster = lc.cluster
    summary = ctx.calls(cluster, "basic", calls=1).wait(30)
    (call,) = summary.calls
    primary = cluster.addresses["primary"].bin_addr
    wait_quiet(lc.peer, primary, [cid(call.call_id)],
               lambda msgs: any(isinstance(m, DialogDeleted) for m in msgs))
    return cid(call.call_id)


def backup_applied(cluster: Cluster, call_ids: list[str], want_states: set[int],
                   timeout: float = SETTLE) -> list[Any]:
    """The backup's dlg_list once each call is in one of ``want_states`` (or the deadline)."""
    def entries() -> list[Any] | None:
        mine = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in call_ids]
        if len(mine) == len(call_ids) and all(d.state in want_states for d in mine):
            return mine
        return None
    try:
        return wait_until(entries, timeout=timeout, what="the backup's dialogs", interval=0.1)
    except WaitTimeout:
        return [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in call_ids]


# -- SIP scenarios --------------------------------------------------------------------------

PRIMARY_STATS = ("update_sent", "delete_sent", "processed_dialogs", "failed_dialogs")
BACKUP_STATS = ("update_recv", "delete_recv", "active_dialogs")


def sip_scenario(ctx: CheckContext, scenario: str | Path, *, confirmed: bool, hold: bool) -> Observation:
    """``CALLS`` calls of ``scenario`` through the pair, then a fence call.

    Observes, per call: the packets the primary replicated (created's place apart),
    where created sat relative to the 200 OK; while held, the backup's copy of each
    dialog against the primary's (states, h_id, differing fields); at the end, both
    nodes' statistics and their survival.
    """
    lc = ctx.cluster(capture=True)
    cluster = lc.cluster
    primary_bin = cluster.addresses["primary"].bin_addr
    obs: Observation = {}
    pair = ctx.calls(cluster, scenario, calls=CALLS, rate=50, hold=hold)
    if hold:
        held = pair.uac.wait_held(timeout=30)
        obs.update(_held_state(lc, held))
        pair.uac.release()
    summary = pair.wait(60)
    call_ids = [cid(c.call_id) for c in summary.calls]
    obs["calls.successful"] = summary.successful
    if confirmed:
        wait_quiet(lc.peer, primary_bin, call_ids,
                   lambda msgs: any(isinstance(m, DialogDeleted) for m in msgs))
    fence_id = fence(ctx, lc)
    grouped = by_call(lc.peer, primary_bin)
    obs["primary.packets"] = sequences(grouped, call_ids)
    if confirmed:
        assert lc.capture is not None
        lc.capture.stop()
        obs["primary.created"] = created_timing(lc.capture.path, {primary_bin[0], cluster.vip},
                                                 call_ids)
    else:
        obs["primary.created"] = sorted({
            "sent" if any(isinstance(m, DialogCreated) for m in grouped.get(call, [])) else "not sent"
            for call in call_ids})
    obs["primary.stats"] = statistics(cluster, "primary", PRIMARY_STATS)
    # the backup has applied the fence's deleted once the fence's dialog is gone or ended
    try:
        wait_until(lambda: all(d.state >= 5 for d in cluster.mi("backup").dlg_list() if cid(d.callid) == fence_id),
                   timeout=SETTLE, what="the fence call on the backup", interval=0.1)
    except WaitTimeout:
        pass
    after = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in call_ids]
    obs["backup.dialogs_after"] = sorted({f"state {d.state}" for d in after}) or ["none"]
    obs["backup.stats"] = statistics(cluster, "backup", BACKUP_STATS)
    obs["nodes.alive"] = alive(cluster)
    return obs


def _held_state(lc: LiveCluster, held: list[str]) -> Observation:
    """The backup's dialogs while every call is up, against the primary's."""
    cluster = lc.cluster
    primary_bin = cluster.addresses["primary"].bin_addr
    wait_quiet(lc.peer, primary_bin, held,
               lambda msgs: any(isinstance(m, DialogUpdated) and int(m.state) == 4 for m in msgs))
    entries = backup_applied(cluster, held, {4})
    theirs = {cid(d.callid): d for d in cluster.mi("primary").dlg_list() if cid(d.callid) in held}
    obs: Observation = {"backup.while_up": sorted({f"state {d.state}" for d in entries}) or ["none"],
                        "backup.dialogs_while_up": len(entries)}
    same = [d.h_id == theirs[cid(d.callid)].h_id for d in entries if cid(d.callid) in theirs]
    obs["backup.h_id"] = ("none to compare" if not same else
                          "primary's" if all(same) else "its own")
    fields: set[str] = set()
    for d in entries:
        if cid(d.callid) in theirs:
            fields.update(diff.split(":", 1)[0] for diff in
                          diff_entries(d, theirs[cid(d.callid)], ignore=("h_id",), profiles="any"))
    obs["backup.fields_unlike_primary"] = sorted(fields)
    return obs


@check("sip.basic", "a basic call, held then ended by the caller")
def basic(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "basic", confirmed=True, hold=True)


@check("sip.reinvite", "a call with a re-INVITE from the caller")
def reinvite(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "reinvite", confirmed=True, hold=True)


@check("sip.callee_bye", "a call the callee ends")
def callee_bye(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "callee_bye", confirmed=True, hold=False)


@check("sip.cancel", "a call CANCELled before the answer")
def cancel(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "cancel", confirmed=False, hold=False)


@check("sip.rejected", "a call the callee rejects with 486 Busy Here")
def rejected(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, SCENARIO_DIR / "rejected", confirmed=False, hold=False)


@check("sip.long_headers", "a call with long From/To/Contact values")
def long_headers(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "long_headers", confirmed=True, hold=True)


@check("sip.record_route", "a call whose callee adds Record-Route entries")
def record_route(ctx: CheckContext) -> Observation:
    return sip_scenario(ctx, "record_route", confirmed=True, hold=True)


