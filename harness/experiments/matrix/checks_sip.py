"""The SIP scenarios: what a primary of release X replicates per call, and what a backup
of release Y makes of it.

Each runs ``CALLS`` calls of one scenario through the pair's shared cluster and
observes once the behaviour is over (`harness.experiments.matrix.complete`): per call,
the packet sequence the primary replicated (created included, counted per distinct
sequence), where its created sat against the relayed 200 OK, how both nodes'
statistics moved, the backup's dialogs while the calls were up and after.

What a release's output depends on is fixed, and stated here:

- the caller ACKs the 200 OK ``ACK_DELAY_MS`` after it: 1.10.3+ replicates created after
  relaying the 200 OK only while the dialog is unacknowledged, and an ACK handled first
  (a sub-millisecond race, 4 of 420 calls seen) would leave created out;
- the callee of those calls rings ``RING_BEFORE_ANSWER_MS`` between its 180 and its
  200 OK (`PairSession.calls`): 1.10.3+ replicates created from the RESPONSE_OUT
  callback of every relayed reply while the dialog is unacknowledged, reading its state
  without the dialog's lock, so a 180 relayed by one SIP worker while another confirms
  the dialog on the 200 sends created twice (5 of 1,092 cells of an unringing
  ``--repeat 3`` run);
- held calls (``basic``, ``reinvite``, ``long_headers``, ``record_route``) are released
  only once the primary's tm holds none of their transactions: 1.10.1-1.10.2 replicate
  a second deleted when a dialog's INVITE transaction ends after the dialog did, so a
  call shorter than the transaction's wait timer would add one;
- ``callee_bye``'s callee hangs up 100 ms after the ACK, well inside that timer, so on
  those releases the second deleted comes for every call.
"""

from __future__ import annotations

from pathlib import Path

from harness.base.resources import shipped
from harness.experiments.calls import ACK_DELAY_MS
from harness.experiments.compare import diff_entries
from harness.experiments.matrix.complete import (
    Incomplete,
    close,
    open_window,
    transactions_back,
)
from harness.experiments.matrix.evidence import (
    Counted,
    alive,
    cid,
    counted,
    created_timing,
    sequences,
)
from harness.experiments.matrix.registry import Observation, check
from harness.experiments.matrix.session import PairSession
from harness.live import LiveCluster
from pybin.dialog import DialogMessage

#: calls per SIP scenario: enough to see a per-call pattern, few enough to stay fast
CALLS = 3
#: how long held calls may take to be replicated and applied (seconds)
HELD_S = 30.0
PRIMARY_STATS = ("create_sent", "update_sent", "delete_sent", "processed_dialogs", "failed_dialogs")
BACKUP_STATS = ("create_recv", "update_recv", "delete_recv", "active_dialogs")


def _states(entries: list) -> Counted:
    """The dialogs' states, counted (``[["state 4", 3]]``; ``[]`` for none)."""
    return counted(f"state {d.state}" for d in entries)


def held_state(lc: LiveCluster, held: list[str]) -> Observation:
    """Once the held calls' replication is quiet: the backup's copies against the primary's."""
    cluster = lc.cluster
    close(open_window(lc), held, gone_on=(), transactions=False)
    mine = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in held]
    theirs = {cid(d.callid): d for d in cluster.mi("primary").dlg_list() if cid(d.callid) in held}
    obs: Observation = {"backup.while_up": _states(mine)}
    same = [d.h_id == theirs[cid(d.callid)].h_id for d in mine if cid(d.callid) in theirs]
    obs["backup.h_id"] = ("none to compare" if not same else "primary's" if all(same)
                          else "its own" if not any(same) else "mixed")
    fields: set[str] = set()
    for d in mine:
        if cid(d.callid) in theirs:
            fields.update(diff.split(":", 1)[0] for diff in
                          diff_entries(d, theirs[cid(d.callid)], ignore=("h_id",), profiles="any"))
    obs["backup.fields_unlike_primary"] = sorted(fields)
    return obs


def sip_scenario(s: PairSession, scenario: str | Path, *, confirmed: bool, hold: bool,
                 lc: LiveCluster | None = None, ring_ms: int | None = None) -> Observation:
    """``CALLS`` calls of ``scenario`` through ``lc`` (the pair's shared cluster by
    default); ``ring_ms``: the callee rings that long before it answers. See the module."""
    lc = lc or s.shared()
    cluster = lc.cluster
    window = open_window(lc)
    pair = s.calls(lc, scenario, calls=CALLS, rate=50, hold=hold,
                   ack_delay_ms=ACK_DELAY_MS if confirmed else None,
                   uas_options=None if ring_ms is None else {"ring_ms": ring_ms})
    obs: Observation = {}
    if hold:
        held = pair.uac.wait_held(timeout=HELD_S)
        obs.update(held_state(lc, held))
        transactions_back(window)  # the calls now outlive their INVITE transactions
        pair.uac.release()
    summary = pair.wait(60)
    call_ids = [cid(c.call_id) for c in summary.calls]
    if len(call_ids) != CALLS:
        raise Incomplete(f"{len(call_ids)} of {CALLS} calls in SIPp's trace")
    done = close(window, call_ids)
    grouped: dict[str, list[DialogMessage]] = {}
    for p in done.packets.get("primary", []):
        msg = p.dialog()
        grouped.setdefault(cid(msg.call_id), []).append(msg)
    obs["calls.successful"] = summary.successful
    obs["primary.packets"] = sequences(grouped, call_ids)
    assert lc.capture is not None
    primary_ips = {cluster.addresses["primary"].ip, cluster.vip}
    obs["primary.created"] = created_timing(lc.capture.path, primary_ips, call_ids)
    for node, names in (("primary", PRIMARY_STATS), ("backup", BACKUP_STATS)):
        if node in done.silent:
            obs[f"{node}.stats"] = "no answer"
        else:
            obs[f"{node}.stats"] = {k: done.moved[node].get(k, 0) for k in names}
    if "backup" not in done.silent:
        after = [d for d in cluster.mi("backup").dlg_list() if cid(d.callid) in call_ids]
        obs["backup.dialogs_after"] = _states(after)
    obs["nodes.alive"] = alive(cluster)
    return obs


@check("sip.basic", "a basic call, held then ended by the caller")
def basic(s: PairSession) -> Observation:
    return sip_scenario(s, "basic", confirmed=True, hold=True)


@check("sip.reinvite", "a call with a re-INVITE from the caller")
def reinvite(s: PairSession) -> Observation:
    return sip_scenario(s, "reinvite", confirmed=True, hold=True)


@check("sip.callee_bye", "a call the callee ends 100 ms after the ACK")
def callee_bye(s: PairSession) -> Observation:
    return sip_scenario(s, "callee_bye", confirmed=True, hold=False)


@check("sip.cancel", "a call CANCELled before the answer")
def cancel(s: PairSession) -> Observation:
    return sip_scenario(s, "cancel", confirmed=False, hold=False)


@check("sip.rejected", "a call the callee rejects with 486 Busy Here")
def rejected(s: PairSession) -> Observation:
    return sip_scenario(s, shipped("scenarios") / "rejected", confirmed=False, hold=False)


@check("sip.long_headers", "a call with long From/To/Contact values")
def long_headers(s: PairSession) -> Observation:
    return sip_scenario(s, "long_headers", confirmed=True, hold=True)


@check("sip.record_route", "a call whose callee adds Record-Route entries")
def record_route(s: PairSession) -> Observation:
    return sip_scenario(s, "record_route", confirmed=True, hold=True)


#: how long ``sip.ringing``'s callee rings: past tm's one-second tick, far short of any
#: release's fr_inv_timeout (120 s)
RING_MS = 1500


@check("sip.ringing", f"a call the callee answers {RING_MS} ms after its 180, on nodes whose "
       "script leaves the INVITE's fr_inv_timeout to the release")
def ringing(s: PairSession) -> Observation:
    """The matrix's other checks set ``$T_fr_inv_timeout`` (`MATRIX_SETTINGS`); here the
    nodes run without it, as most scripts do, and the callee rings past a tick: 1.11.0's
    reply_received arms the FR_INV timer with the transaction's unset 0, so the primary
    gives up on the call (408) at the next tick instead of after 120 s."""
    lc = s.fresh(settings={"tm": {"fr_inv_timeout": 0}}, capture=True)
    return sip_scenario(s, "basic", confirmed=True, hold=False, lc=lc, ring_ms=RING_MS)
