"""What a backup of release Y holds: parity with its primary and with pybin's replica,
and what it does with packets pybin forges (injection). Both run on the shared cluster.
"""

from __future__ import annotations

import time
from typing import Any

from harness.experiments.compare import diff_entries, diff_message_entry
from harness.experiments.matrix.checks_flags import SENTINEL_LINE, _sentinel_fence
from harness.experiments.calls import ACK_DELAY_MS
from harness.experiments.matrix.checks_sip import HELD_S
from harness.experiments.matrix.complete import close, open_window, transactions_back
from harness.experiments.matrix.evidence import (
    alive,
    cid,
    log_categories,
    moved,
    statistics,
)
from harness.experiments.matrix.registry import Observation, check
from harness.experiments.matrix.session import PairSession
from pybin.dialog import Command, DialogDeleted, DialogMessage, DlgFlag, DlgState, make
from pybin.replica import Replica

PARITY_CALLS = 3
#: ReplicaDialog attribute → DialogEntry attribute (and how to read it)
_REPLICA_FIELDS = ("h_id", "state", "user_flags", "timestart", "timeout", "from_uri", "to_uri",
                   "caller_tag", "to_tag", "vars", "profiles")


def _replica_view(d: Any) -> dict[str, Any]:
    return {"h_id": d.h_id, "state": int(d.state), "user_flags": d.user_flags, "timestart": d.start_ts,
            "timeout": d.expires_at or 0, "from_uri": d.from_uri.decode(), "to_uri": d.to_uri.decode(),
            "caller_tag": d.from_tag.decode(), "to_tag": d.to_tag.decode(),
            "vars": {k.decode(): v.decode() for k, v in d.vars},
            "profiles": tuple(sorted((k.decode(), v.decode()) for k, v in d.profiles))}


def _entry_view(e: Any) -> dict[str, Any]:
    return {"h_id": e.h_id, "state": e.state, "user_flags": e.user_flags, "timestart": e.timestart,
            "timeout": e.timeout, "from_uri": e.from_uri, "to_uri": e.to_uri, "caller_tag": e.from_tag,
            "to_tag": e.to_tag, "vars": e.vars or {}, "profiles": tuple(sorted(e.profiles or ()))}


def replica_differences(replica: dict[str, Any], entry: dict[str, Any], slack: int = 2) -> list[str]:
    """Names of the fields where pybin's replica and a node's dlg_list entry disagree
    (timeouts within ``slack`` seconds are equal: MI prints two clocks)."""
    out = []
    for name in _REPLICA_FIELDS:
        a, b = replica.get(name), entry.get(name)
        if name == "timeout" and isinstance(a, int) and isinstance(b, int):
            if abs(a - b) > slack:
                out.append(name)
        elif a != b:
            out.append(name)
    return out


@check("parity", "a few held calls: the backup's dlg_list against the primary's field by field, "
       "and pybin's Replica fed the same packets against the backup")
def parity(s: PairSession) -> Observation:
    lc = s.shared()
    cluster = lc.cluster
    window = open_window(lc)
    pair = s.calls(lc, "basic", calls=PARITY_CALLS, rate=50, hold=True, ack_delay_ms=ACK_DELAY_MS)
    held = pair.uac.wait_held(timeout=HELD_S)
    quiet = close(window, held, gone_on=(), transactions=False)
    entries = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in held]
    theirs = {cid(d.callid): d for d in cluster.mi("primary").dlg_list() if cid(d.callid) in held}
    obs: Observation = {"backup.dialogs": sorted({f"state {d.state}" for d in entries}) or ["none"]}
    same = [d.h_id == theirs[cid(d.callid)].h_id for d in entries if cid(d.callid) in theirs]
    obs["backup.h_id"] = ("none to compare" if not same else "primary's" if all(same)
                          else "its own" if not any(same) else "mixed")
    fields: set[str] = set()
    for d in entries:
        if cid(d.callid) in theirs:
            fields.update(x.split(":", 1)[0] for x in
                          diff_entries(d, theirs[cid(d.callid)], ignore=("h_id",), profiles="any"))
    obs["backup.fields_unlike_primary"] = sorted(fields)
    sock = f"udp:{cluster.sip_addr[0]}:{cluster.sip_addr[1]}"
    replica = Replica([sock], hash_size=cluster.settings.dialog.hash_size,
                      release=s.pair.backup.version)
    for p in quiet.packets.get("primary", []):
        replica.apply(p.dialog(), now=int(time.time()))
    rfields: set[str] = set()
    for d in entries:
        mine = [r for r in replica if cid(r.call_id) == cid(d.callid)]
        if len(mine) != 1:
            rfields.add("missing in pybin")
            continue
        rfields.update(replica_differences(_replica_view(mine[0]), _entry_view(d)))
    obs["pybin.fields_unlike_backup"] = sorted(rfields)
    transactions_back(window)
    pair.uac.release()
    summary = pair.wait(60)
    obs["calls.successful"] = summary.successful
    close(window, [cid(c.call_id) for c in summary.calls])
    obs["nodes.alive"] = alive(cluster)
    return obs


RECV_STATS = ("create_recv", "update_recv", "delete_recv", "active_dialogs", "processed_dialogs")


@check("inject", "pybin sends created, updated (new timeout, cseq, state), deleted, and an "
       "update and a delete for unknown dialogs to the backup: what it takes and counts")
def inject(s: PairSession) -> Observation:
    """Each packet is fenced by the sentinel: the backup's one BIN receiver handles
    datagrams from one sender in order, so once it logged the sentinel it has handled
    the packet before it."""
    lc = s.shared()
    cluster = lc.cluster
    assert lc.peer is not None
    peer, mi = lc.peer, cluster.mi("backup")
    target = cluster.addresses["backup"].bin_addr
    sock = f"udp:{cluster.sip_addr[0]}:{cluster.sip_addr[1]}".encode()
    now = int(time.time())
    tag = f"{now}-{time.monotonic_ns() % 1_000_000}"

    def fields(n: int, **over: Any) -> dict[str, Any]:
        f: dict[str, Any] = dict(
            call_id=f"inject-{n}-{tag}@harness".encode(), from_tag=f"ft{n}".encode(), to_tag=f"tt{n}".encode(),
            from_uri=f"sip:alice{n}@example.com".encode(), to_uri=b"sip:bob@example.com",
            h_id=1000 + n, start_ts=now, state=DlgState.CONFIRMED_NA, caller_sock=sock, callee_sock=sock,
            caller_cseq=b"0", callee_cseq=b"1", caller_route_set=b"<sip:up1.example.com;lr>",
            callee_route_set=b"<sip:down1.example.com;lr>", caller_contact=f"sip:alice{n}@192.0.2.1".encode(),
            callee_contact=b"sip:bob@192.0.2.2", vars=((b"acct", b"x"),), profiles=((b"inbound", b""),),
            user_flags=1 << 5, flags=int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT), timeout=now + 3600)
        f.update(over)
        return f

    obs: Observation = {}

    def step(label: str, msg: DialogMessage) -> None:
        before = statistics(cluster, "backup", RECV_STATS)
        mark = len(cluster.nodes["backup"].logs())
        peer.send(msg, target)
        fenced = _sentinel_fence(lc, "backup")
        obs[f"backup.{label}.logs"] = log_categories(cluster.nodes["backup"].logs()[mark:], until=SENTINEL_LINE)
        obs[f"backup.{label}.stats_moved"] = moved(before, statistics(cluster, "backup", RECV_STATS))
        if not fenced:
            obs[f"backup.{label}"] = "no sentinel: receiver stuck or node gone"
            return
        entry = mi.dialog(msg.call_id.decode())
        if isinstance(msg, DialogDeleted):
            # an ended dialog lingers in state 5 until its last reference goes: one outcome
            obs[f"backup.{label}"] = ("ended" if entry is None or entry.state == 5
                                      else f"state {entry.state}")
        elif entry is None:
            obs[f"backup.{label}"] = "no dialog"
        else:
            diffs = diff_message_entry(msg, entry, check_h_id=False, profiles="any")
            obs[f"backup.{label}"] = {"state": entry.state,
                                      "fields_unlike_packet": sorted({x.split(":", 1)[0] for x in diffs}),
                                      "h_id": "packet's" if entry.h_id == msg.h_id else "its own"}

    one = make(Command.CREATED, **fields(1))
    step("created", one)
    made = mi.dialog(one.call_id.decode())
    created_timeout = made.timeout if made is not None else one.timeout
    upd = make(Command.UPDATED, **fields(1, state=DlgState.CONFIRMED, callee_cseq=b"2", caller_cseq=b"7",
                                         timeout=now + 1800))
    step("updated", upd)
    after = mi.dialog(one.call_id.decode())
    if after is not None:
        obs["backup.updated.timeout"] = ("packet's" if abs(after.timeout - upd.timeout) <= 2 else
                                         "created's" if abs(after.timeout - created_timeout) <= 2 else
                                         "other")
    two = make(Command.UPDATED, **fields(2, state=DlgState.CONFIRMED))
    step("update_unknown", two)
    step("deleted", make(Command.DELETED, call_id=one.call_id, from_tag=one.from_tag, to_tag=one.to_tag))
    step("delete_unknown", make(Command.DELETED, call_id=f"inject-nobody-{tag}@harness".encode(),
                                from_tag=b"x", to_tag=b"y"))
    # leave the shared cluster as it was: the dialog built from the unknown update goes too
    peer.send(make(Command.DELETED, call_id=two.call_id, from_tag=two.from_tag, to_tag=two.to_tag), target)
    _sentinel_fence(lc, "backup")
    obs["nodes.alive"] = alive(cluster)
    return obs
