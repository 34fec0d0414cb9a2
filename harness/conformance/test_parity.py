"""Real → real parity: after a batch of calls the backup holds what the primary holds.

Some calls stay up (held reinvite and record_route calls), some finished (basic
calls, and reinvite calls released after their re-INVITE and BYE). Once every
replicated packet was counted by the backup, its dlg_list must equal the primary's
field by field (the live dialogs; ended ones linger in state 5 on each node's own
schedule) — except h_id (a 1.10.5 backup renumbers) and the profile order (it
prepends each link) — and equal pybin.replica fed the packets the peer received
from the same primary.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import all_have, is_confirmed_update, is_deleted, vip_socket, wait_until

from harness.base.wait import WaitTimeout
from harness.base.wait import wait_until as harness_wait
from harness.experiments.compare import diff_entries, diff_replica_entry
from pybin.dialog import decode
from pybin.pcap import CaptureError, read_datagrams
from pybin.replica import Replica

pytestmark = pytest.mark.live

SENT_RECV = (("create_sent", "create_recv"), ("update_sent", "update_recv"),
             ("delete_sent", "delete_recv"))


def test_backup_and_replica_equal_primary_after_a_batch(
        opensips_cluster: Callable[..., Any], sip_calls: Callable[..., Any]) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    reinvite = sip_calls(cluster, "reinvite", calls=4, rate=50, hold=True)
    record_route = sip_calls(cluster, "record_route", calls=2, rate=50, hold=True)
    basic = sip_calls(cluster, "basic", calls=3, rate=50)
    held = reinvite.uac.wait_held(timeout=30)
    record_route.uac.wait_held(timeout=30)
    finished = basic.wait(30)
    assert (finished.successful, finished.failed) == (3, 0), finished.errors
    reinvite.uac.release(held[:2])
    reinvite.uac.wait_events("END", 2, 30)

    def call_ids(pair: Any) -> dict[str, bytes]:
        return {c.call_id.split("///")[-1]: c.call_id.encode() for c in pair.uac.result().calls}

    ri = call_ids(reinvite)
    up = [ri[h] for h in held[2:]] + list(call_ids(record_route).values())
    ended = [ri[h] for h in held[:2]] + [c.call_id.encode() for c in finished.calls]
    peer.wait_for(all_have(up, is_confirmed_update), 15, "updated(4) of every call still up")
    peer.wait_for(all_have(ended, is_deleted), 15, "deleted of every finished call")

    pmi, bmi = cluster.mi("primary"), cluster.mi("backup")

    def caught_up() -> bool:
        p, b = pmi.get_statistics(), bmi.get_statistics()
        return all(p[s] == b[r] for s, r in SENT_RECV)

    wait_until(caught_up, 15, "the backup to count every packet the primary sent")
    # ended dialogs linger in state 5 for a while on 1.10 (until their transactions
    # are freed), on each node on its own schedule: compare the live ones, and check
    # that whatever lingers is an ended call
    plist, blist = pmi.dlg_list(), bmi.dlg_list()
    primary = [d for d in plist if d.state != 5]
    backup = [d for d in blist if d.state != 5]
    assert {d.callid.encode() for d in plist if d.state == 5} <= set(ended)
    assert {d.callid.encode() for d in blist if d.state == 5} <= set(ended)
    assert {d.callid.encode() for d in primary} == set(up)
    assert sorted(d.key for d in backup) == sorted(d.key for d in primary)
    by_key = {d.key: d for d in backup}
    for want in primary:
        got = by_key[want.key]
        diffs = diff_entries(got, want, profiles="reversed")
        assert not diffs, (want.callid, diffs)
        assert got.h_id != want.h_id

    # pybin's replica fed the peer's packets holds the same table
    replica = Replica([vip_socket(cluster)])
    for p in peer.received:
        outcome = replica.apply(p.dialog(), now=int(p.time))
        # Ignored: a created that arrived after the ACK's updated had built the dialog
        assert type(outcome).__name__ in ("Applied", "Ignored"), outcome
    assert sorted((d.call_id.decode(), d.from_tag.decode(), d.to_tag.decode()) for d in replica) == \
        sorted(d.key for d in backup)
    for dlg in replica:
        diffs = diff_replica_entry(dlg, by_key[(dlg.call_id.decode(), dlg.from_tag.decode(),
                                                dlg.to_tag.decode())])
        assert not diffs, (dlg.call_id, diffs)
    stats = bmi.get_statistics()
    r = replica.stats
    assert (r.create_recv, r.update_recv, r.delete_recv, r.active_dialogs) == (
        stats["create_recv"], stats["update_recv"], stats["delete_recv"], stats["active_dialogs"])
    assert stats["active_dialogs"] == len(up) == 4

    # processed_dialogs also counts a created ignored after its updated, and the
    # peer and the backup may see created/updated in different orders (two SIP
    # workers send them): fed in the backup's own order, from the capture, the
    # replica's counters equal the backup's exactly
    primary_bin = cluster.addresses["primary"].bin_addr
    backup_bin = cluster.addresses["backup"].bin_addr

    def to_backup() -> list[bytes]:
        try:
            items = [d.data for d in read_datagrams(lc.capture.path)
                     if d.src == primary_bin and d.dst == backup_bin]
        except CaptureError:  # a record still being written
            return []
        return items if len(items) == len(peer.received) else []

    in_backup_order = Replica([vip_socket(cluster)])
    for data in wait_until(to_backup, 15, "every primary → backup packet in the capture"):
        in_backup_order.apply(decode(data), now=int(time.time()))
    r = in_backup_order.stats
    expected = (r.create_recv, r.update_recv, r.delete_recv, r.processed_dialogs, r.active_dialogs)

    def backup_counters() -> tuple[int, ...]:
        s = bmi.get_statistics()
        return (s["create_recv"], s["update_recv"], s["delete_recv"], s["processed_dialogs"],
                s["active_dialogs"])

    # 1.10 counts *_recv when a packet arrives and processed_dialogs only once it is
    # applied, so the snapshot above may hold the last packet counted but not yet
    # processed (seen under load: processed 10 vs 11). Give the backup a bounded moment
    # to finish, then compare exactly.
    try:
        harness_wait(lambda: backup_counters() == expected, timeout=5,
                     what="the backup to finish processing what it counted")
    except WaitTimeout:
        pass
    assert backup_counters() == expected

    # let the held calls finish: SIPp then exits at once instead of being stopped
    for pair in (reinvite, record_route):
        pair.uac.release()
        summary = pair.wait(30)
        assert summary.failed == 0, summary.errors
