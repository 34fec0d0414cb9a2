"""pybin → OpenSIPS: dialogs built by pybin and sent to a real 1.10.5 backup.

pybin.dialog.make builds created / updated / deleted; the pybin peer sends them from
its own socket (a replication source like any node). The backup must show each
dialog in dlg_list with the fields sent (its own h_id; profiles prepended), move
create_recv / update_recv / delete_recv by exactly the packets sent, and refuse a
dialog whose socket it does not listen on, as dlg_replicated_create does.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import vip_socket, wait_until

from harness.experiments.compare import diff_message_entry
from pybin.dialog import Command, DlgFlag, DlgState, make

pytestmark = pytest.mark.live

RECV = ("create_recv", "update_recv", "delete_recv")


def _dialog(cluster: Any, n: int, now: int, **over: object) -> dict[str, object]:
    sock = vip_socket(cluster).encode()
    fields: dict[str, object] = dict(
        call_id=f"pybin-{n}-{now}@harness".encode(), from_tag=f"ft{n}".encode(), to_tag=f"tt{n}".encode(),
        from_uri=f"sip:alice{n}@example.com".encode(), to_uri=b"sip:bob@example.com",
        h_id=1000 + n, start_ts=now, state=DlgState.CONFIRMED_NA,
        caller_sock=sock, callee_sock=sock, caller_cseq=b"0", callee_cseq=b"1",
        caller_route_set=b"<sip:up1.example.com;lr>",
        callee_route_set=b"<sip:down1.example.com;lr>,<sip:down2.example.com;lr>",
        caller_contact=f"sip:alice{n}@192.0.2.1:5060".encode(),
        callee_contact=b"sip:bob@192.0.2.2:5060;transport=udp",
        vars=((b"acct", b"x|y#z\\w"), (b"note", b"pybin")),
        profiles=((b"caller", f"alice{n}".encode()), (b"inbound", b"")),
        user_flags=1 << 5, flags=int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT), timeout=now + 3600)
    fields.update(over)
    return fields


def _entry(mi: Any, call_id: bytes, state: int) -> Any:
    d = mi.dialog(call_id.decode())
    return d if d is not None and d.state == state else None


def _settled(mi: Any, msg: Any, state: int, what: str, timeout: float = 10) -> Any:
    """The backup's entry for ``msg`` once 1.10 finished applying it, asserted equal.

    dlg_replicated_create and _update read the profiles only after unlocking the hash
    entry (dlg_replication.c, 1.10.5), so under load an MI poll can list the dialog
    without them: wait for a matching entry, and on the deadline report the
    differences of the last one seen.
    """
    last: list[Any] = [None]

    def done() -> Any:
        entry = last[0] = _entry(mi, msg.call_id, state)
        if entry is None or diff_message_entry(msg, entry, check_h_id=False, profiles="reversed"):
            return None
        return entry

    try:
        return wait_until(done, timeout, what)
    except BaseException:
        if last[0] is None:
            raise
        diffs = diff_message_entry(msg, last[0], check_h_id=False, profiles="reversed")
        assert not diffs, diffs
        raise


def test_pybin_dialogs_appear_on_a_real_backup(opensips_cluster: Callable[..., Any]) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    backup = cluster.addresses["backup"].bin_addr
    mi = cluster.mi("backup")
    before = mi.get_statistics()
    assert mi.dlg_list() == []
    now = int(time.time())

    def moved() -> tuple[int, ...]:
        stats = mi.get_statistics()
        return tuple(stats[k] - before[k] for k in RECV)

    # 1. created: the dialog appears as sent
    one = make(Command.CREATED, **_dialog(cluster, 1, now))
    peer.send(one, backup)
    entry = _settled(mi, one, 3, "the created dialog on the backup")
    assert entry.h_id != one.h_id  # renumbered from the backup's own counter
    assert moved() == (1, 0, 0)

    # 2. updated: state, cseq, vars, flags, timeout move; a new var is prepended
    upd = make(Command.UPDATED, **_dialog(cluster, 1, now, state=DlgState.CONFIRMED, callee_cseq=b"2",
                                          vars=((b"acct", b"x|y#z\\w"), (b"note", b"updated")),
                                          user_flags=(1 << 5) | 1, timeout=now + 1800))
    peer.send(upd, backup)
    entry = _settled(mi, upd, 4, "the update on the backup")
    assert moved() == (1, 1, 0)

    # 3. updated for an unknown dialog builds it ("dialog not found, building new")
    two = make(Command.UPDATED, **_dialog(cluster, 2, now, state=DlgState.CONFIRMED))
    peer.send(two, backup)
    entry = _settled(mi, two, 4, "the dialog built from updated")
    assert moved() == (1, 2, 0)
    assert mi.get_statistics()["active_dialogs"] == before["active_dialogs"] + 2

    # 4. deleted ends the first dialog (state 5, timer and profile links gone)
    peer.send(make(Command.DELETED, call_id=one.call_id, from_tag=one.from_tag, to_tag=one.to_tag), backup)
    wait_until(lambda: moved() == (1, 2, 1), 10, "delete_recv to move")
    ended = mi.dialog(one.call_id.decode())
    assert ended is None or (ended.state, ended.timeout, ended.profiles) == (5, 0, ())
    assert {d.callid for d in mi.dlg_list() if d.state != 5} == {two.call_id.decode()}
    assert mi.get_statistics()["active_dialogs"] == before["active_dialogs"] + 1
    cluster.check()


def test_dialog_on_a_socket_the_backup_does_not_listen_on_is_refused(
        opensips_cluster: Callable[..., Any]) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer = lc.peer
    node = cluster.nodes["backup"]
    backup = cluster.addresses["backup"].bin_addr
    mi = cluster.mi("backup")
    before = mi.get_statistics()
    now = int(time.time())
    foreign = f"udp:{cluster.addresses['backup'].ip}:5999"  # its own IP, a port it does not serve
    bad_caller = make(Command.CREATED, **_dialog(cluster, 7, now, caller_sock=foreign.encode()))
    bad_callee = make(Command.UPDATED, **_dialog(cluster, 8, now, callee_sock=b"udp:192.0.2.77:5060",
                                                 state=DlgState.CONFIRMED))
    peer.send(bad_caller, backup)
    peer.send(bad_callee, backup)
    # a good one after them: once it shows, the two before were processed (one receiver)
    good = make(Command.CREATED, **_dialog(cluster, 9, now))
    peer.send(good, backup)
    wait_until(lambda: _entry(mi, good.call_id, 3), 10, "the good dialog after the refused ones")
    assert [d.callid for d in mi.dlg_list()] == [good.call_id.decode()]
    after = mi.get_statistics()
    moved = {k: after[k] - before[k] for k in (*RECV, "processed_dialogs", "active_dialogs")}
    # *_recv and processed_dialogs count refused dialogs too; only the good one is active
    assert moved == {"create_recv": 2, "update_recv": 1, "delete_recv": 0,
                     "processed_dialogs": 3, "active_dialogs": 1}
    # MI shows the good dialog before docker's log driver has delivered the refused
    # ones' lines (seen once in a -n auto Docker run): wait for the log, then compare
    refused = "ERROR:dialog:dlg_replicated_create: Dialog in DB doesn't match any listening sockets"
    logs = wait_until(lambda: (text := node.logs()).count(refused) >= 2 and text, 10,
                      "the refused dialogs' log lines")
    assert f"WARNING:dialog:fetch_socket_info: non-local socket <{foreign}>...ignoring" in logs
    assert "WARNING:dialog:fetch_socket_info: non-local socket <udp:192.0.2.77:5060>...ignoring" in logs
    assert logs.count(refused) == 2
    cluster.check()
