"""OpenSIPS → pybin: what a real 1.10.5 primary replicates is the dialog SIP made.

For calls of every harness scenario, the created / updated / deleted packets the
primary sends to the pybin peer decode, and each field matches the SIP messages SIPp
exchanged (harness.experiments.compare.sip_dialog), what the template puts in every dialog
(vars, profiles, flags, lifetime) and the primary's own dlg_list while the call is
up. A call that never reaches 200 OK (CANCEL) replicates nothing at all.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from _dialogs import (
    all_have,
    by_call,
    is_confirmed_update,
    is_deleted,
    script_diffs,
    vip_socket,
)

from harness.experiments.calls import ACK_DELAY_MS
from harness.experiments.compare import (
    command_states,
    diff_message_entry,
    diff_message_sip,
    sequence_ok,
    sip_dialog,
)
from pybin.dialog import DialogCreated, DialogDeleted, DialogUpdated

pytestmark = pytest.mark.live

CALLS = 3
#: packets between created(3) and deleted per scenario: the ACK's updated(4), and for
#: reinvite one more updated(4) carrying the re-INVITE's CSeq 2 (its ACK sends none)
MIDDLE = {"reinvite": ((2, 4), (2, 4))}


def _without_created(grouped: dict[bytes, list[Any]]) -> None:
    """Every call replicated created: the callers delay their ACK (`ACK_DELAY_MS`), so
    1.10.5's created-or-not race (the ACK handled before tm's RESPONSE_OUT) cannot happen."""
    missing = sorted(cid for cid, msgs in grouped.items() if not any(isinstance(m, DialogCreated) for m in msgs))
    assert not missing, f"{len(missing)} of {len(grouped)} calls replicated no created: {missing}"


def _from_user(uri: str) -> str:
    return uri.split(":", 1)[1].split("@", 1)[0]


def _check_packets(cluster: Any, call: Any, msgs: list[Any], scenario: str) -> None:
    """Every packet of one call against the SIP dialog and the template's values."""
    sip = sip_dialog(call, cluster.vip)
    seq = command_states(msgs)
    assert sequence_ok(seq, MIDDLE.get(scenario, ((2, 4),))), (call.call_id, seq)
    invite_t = call.messages[0].t
    ok_t = next(m.t for m in call.messages if m.code == 200 and m.cseq == (1, "INVITE"))
    full = [m for m in msgs if isinstance(m, (DialogCreated, DialogUpdated))]
    assert len({m.h_id for m in full}) == 1 and len({m.start_ts for m in full}) == 1
    for i, msg in enumerate(full):
        # the re-INVITE's updated is the last one of a reinvite call
        cseq = 2 if scenario == "reinvite" and i == len(full) - 1 else 1
        diffs = diff_message_sip(msg, sip, socket=vip_socket(cluster), callee_cseq=cseq)
        diffs += script_diffs(msg, cluster.settings, _from_user(sip.from_uri))
        assert not diffs, (call.call_id, type(msg).__name__, diffs)
        # stamped when 1.10 saw the dialog start; same host clock as SIPp's log
        assert int(invite_t) - 1 <= msg.start_ts <= ok_t + 1
    assert isinstance(msgs[-1], DialogDeleted)
    assert not diff_message_sip(msgs[-1], sip, socket=vip_socket(cluster))


@pytest.mark.parametrize("scenario", ["basic", "reinvite", "long_headers", "record_route"])
def test_held_calls_replicate_the_sip_dialog_and_dlg_list(
        opensips_cluster: Callable[..., Any], sip_calls: Callable[..., Any], scenario: str) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    pair = sip_calls(cluster, scenario, calls=CALLS, rate=50, hold=True, ack_delay_ms=ACK_DELAY_MS)
    pair.uac.wait_held(timeout=30)
    calls = {c.call_id.encode(): c for c in pair.uac.result().calls}
    assert len(calls) == CALLS
    peer.wait_for(all_have(calls, is_confirmed_update), 15, "updated(4) for every held call")

    # while the calls are up: the latest packet equals the primary's dlg_list entry
    entries = {d.key: d for d in cluster.mi("primary").dlg_list()}
    assert len(entries) == CALLS
    for cid, msgs in by_call(peer.received).items():
        # the ACK's updated; a late created (state 3) may come after it, see sequence_ok
        last = [m for m in msgs if isinstance(m, DialogUpdated)][-1]
        assert int(last.state) == 4 and len(msgs) <= 2
        entry = entries[(cid.decode(), last.from_tag.decode(), last.to_tag.decode())]
        assert not diff_message_entry(last, entry), diff_message_entry(last, entry)

    pair.uac.release()
    summary = pair.wait(30)
    assert (summary.successful, summary.failed) == (CALLS, 0), summary.errors
    peer.wait_for(all_have(calls, is_deleted), 15, "deleted for every call")
    grouped = by_call(peer.received)
    assert set(grouped) == set(calls)  # nothing for any other dialog
    _without_created(grouped)
    for cid, call in calls.items():
        _check_packets(cluster, call, grouped[cid], scenario)
    stats = cluster.mi("primary").get_statistics()
    sent = [m for msgs in grouped.values() for m in msgs]
    assert stats["create_sent"] == sum(isinstance(m, DialogCreated) for m in sent)
    assert stats["update_sent"] == sum(isinstance(m, DialogUpdated) for m in sent)
    assert (stats["delete_sent"], stats["processed_dialogs"]) == (CALLS, CALLS)


def test_callee_bye_replicates_and_ends_the_dialog(
        opensips_cluster: Callable[..., Any], sip_calls: Callable[..., Any]) -> None:
    """Not holdable: the callee hangs up by itself. The ended dialog lingers in the
    primary's dlg_list (state 5) for a few seconds, where its legs are compared."""
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    pair = sip_calls(cluster, "callee_bye", calls=CALLS, rate=50, ack_delay_ms=ACK_DELAY_MS)
    summary = pair.wait(30)
    assert (summary.successful, summary.failed) == (CALLS, 0), summary.errors
    calls = {c.call_id.encode(): c for c in summary.calls}
    peer.wait_for(all_have(calls, is_deleted), 15, "deleted for every call")
    entries = {d.key: d for d in cluster.mi("primary").dlg_list()}
    grouped = by_call(peer.received)
    assert set(grouped) == set(calls)
    _without_created(grouped)
    for cid, call in calls.items():
        msgs = grouped[cid]
        _check_packets(cluster, call, msgs, "callee_bye")
        # the callee's BYE (its CSeq 1) went the other way: no cseq update is sent
        assert call.codes("BYE") == [] and sip_dialog(call, cluster.vip).callee_cseqs == (1,)
        last = msgs[-2]
        entry = entries[(cid.decode(), last.from_tag.decode(), last.to_tag.decode())]
        # ended: state 5, timer gone, profile links destroyed; everything else as replicated
        assert (entry.state, entry.timeout, entry.profiles) == (5, 0, ())
        diffs = [d for d in diff_message_entry(last, entry)
                 if not d.startswith(("state:", "timeout:", "profiles:"))]
        assert not diffs, diffs


def test_cancelled_calls_replicate_nothing(
        opensips_cluster: Callable[..., Any], sip_calls: Callable[..., Any]) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    summary = sip_calls(cluster, "cancel", calls=CALLS, rate=50).wait(30)
    assert (summary.successful, summary.failed) == (CALLS, 0), summary.errors
    for c in summary.calls:
        assert [(r.method, r.code) for r in c.responses if r.code >= 180] == [
            ("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)]
    stats = cluster.mi("primary").get_statistics()
    assert (stats["create_sent"], stats["update_sent"], stats["delete_sent"]) == (0, 0, 0)
    assert (stats["processed_dialogs"], stats["failed_dialogs"]) == (CALLS, CALLS)
    # fence: a confirmed call after them; its deleted is the primary's last packet,
    # so anything the cancelled calls had sent would have arrived before it
    fence = sip_calls(cluster, "basic", calls=1).wait(30)
    (fence_call,) = fence.calls
    fid = fence_call.call_id.encode()
    peer.wait_for(all_have([fid], is_deleted), 15, "the fence call's deleted")
    assert set(by_call(peer.received)) == {fid}
    assert {p.source for p in peer.received} == {cluster.addresses["primary"].bin_addr}
