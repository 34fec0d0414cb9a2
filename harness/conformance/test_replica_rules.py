"""pybin's per-release backup rules against a real backup of the release it reports.

pybin's peer injects dialogs into the backup (created; updated with a changed
timeout; updated whose callee last_gen_cseq is non-zero; deleted) and feeds the same
packets to ``Replica(release=<the backup's own reported release>)``. After every
step the backup's MI dlg_list must hold what the replica holds: h_id kept or
renumbered, the expiry moved or left alone, the dialog ended. A refused create
followed by an update of the same Call-ID must kill the node exactly where the
rules say it does (1.10.0-1.10.2, 1.11.0-1.11.2) and build the dialog elsewhere.

Ordering: the backup runs one BIN receiver (bin_children 1), so after each step a
fresh "fence" dialog is created and, once it is listed, everything sent before it
was applied. No statistics are needed: the fence and dlg_list alone order the steps.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import vip_socket, wait_until

from harness.cluster.warmup import DEFECT_SIGNATURE
from harness.experiments.compare import diff_replica_entry
from pybin.dialog import Command, DlgFlag, DlgState, make
from pybin.replica import Applied, Crashed, Rejected, Replica

pytestmark = pytest.mark.live


def _fields(cluster: Any, tag: str, now: int, **over: object) -> dict[str, object]:
    sock = vip_socket(cluster).encode()
    fields: dict[str, object] = dict(
        call_id=f"rules-{tag}-{now}@harness".encode(), from_tag=f"ft-{tag}".encode(),
        to_tag=f"tt-{tag}".encode(), from_uri=b"sip:alice@example.com", to_uri=b"sip:bob@example.com",
        h_id=4242, start_ts=now, state=DlgState.CONFIRMED_NA, caller_sock=sock, callee_sock=sock,
        caller_cseq=b"0", callee_cseq=b"1", caller_route_set=b"", callee_route_set=b"",
        caller_contact=b"sip:alice@192.0.2.1:5060", callee_contact=b"sip:bob@192.0.2.2:5060",
        vars=((b"acct", b"rules"),), profiles=(), user_flags=0, flags=int(DlgFlag.ISINIT),
        timeout=now + 3600, caller_last_gen_cseq=0, callee_last_gen_cseq=0)
    fields.update(over)
    return fields


class _Injector:
    """Sends each message to the backup and to the replica; ``fence`` waits until
    the backup applied everything sent so far."""

    def __init__(self, lc: Any, replica: Replica) -> None:
        cluster = lc.cluster
        self.cluster, self.replica = cluster, replica
        self.peer = lc.peer
        self.dest = cluster.addresses["backup"].bin_addr
        self.mi = cluster.mi("backup")
        self.fences = 0

    def send(self, msg: Any) -> Any:
        self.peer.send(msg, self.dest)
        return self.replica.apply(msg, now=int(time.time()))

    def fence(self, what: str) -> None:
        self.fences += 1
        now = int(time.time())
        fence = make(Command.CREATED, **_fields(self.cluster, f"fence{self.fences}", now,
                                                vars=()))
        assert isinstance(self.send(fence), Applied)
        wait_until(lambda: self.mi.dialog(fence.call_id.decode()), 10, f"{what} (fence dialog)")


def _assert_same(inj: _Injector, msg: Any, what: str) -> None:
    """The backup's entry for ``msg``'s dialog equals the replica's, h_id by the rules."""
    want = inj.replica.get(msg.call_id, msg.from_tag, msg.to_tag)
    assert want is not None, what
    got = inj.mi.dialog(msg.call_id.decode())
    assert got is not None, f"{what}: not in the backup's dlg_list"
    diffs = diff_replica_entry(want, got)
    if not want.h_id_matches(got.h_id):
        diffs.append(f"h_id: {got.h_id} (sent {want.h_id}; release {inj.replica.release} "
                     f"{'keeps' if want.h_id_kept else 'renumbers'} it)")
    assert not diffs, (what, inj.replica.release, diffs)


def test_backup_applies_packets_as_the_replica_of_its_release(
        opensips_cluster: Callable[..., Any], request: pytest.FixtureRequest) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    release = cluster.nodes["backup"].release().version
    replica = Replica([vip_socket(cluster)], release=release)
    # JUnit properties (record_property warns under junit_family xunit2)
    request.node.user_properties.extend([
        ("backup_release", release),
        ("backup_rules", ",".join(c.rule for c in replica.rules.changes) or "baseline")])
    inj = _Injector(lc, replica)
    now = int(time.time())

    # created: h_id kept or renumbered; the expiry is the packet's timeout
    created = make(Command.CREATED, **_fields(cluster, "a", now))
    assert isinstance(inj.send(created), Applied)
    inj.fence("the created dialog")
    _assert_same(inj, created, "after created")

    # updated with a new timeout (callee last_gen_cseq 0): applied, or ignored on
    # releases that read field 25 instead
    upd = make(Command.UPDATED, **_fields(cluster, "a", now, state=DlgState.CONFIRMED,
                                          callee_cseq=b"2", timeout=now + 1800))
    assert isinstance(inj.send(upd), Applied)
    inj.fence("the first update")
    _assert_same(inj, upd, "after updated (timeout changed)")

    # updated whose callee last_gen_cseq is 700: those releases take it as the timeout
    upd2 = make(Command.UPDATED, **_fields(cluster, "a", now, state=DlgState.CONFIRMED,
                                           callee_cseq=b"3", timeout=now + 1200,
                                           callee_last_gen_cseq=700))
    assert isinstance(inj.send(upd2), Applied)
    inj.fence("the second update")
    _assert_same(inj, upd2, "after updated (callee last_gen_cseq 700)")

    # deleted: ended everywhere (state 5 lingers, or gone)
    deleted = make(Command.DELETED, call_id=created.call_id, from_tag=created.from_tag,
                   to_tag=created.to_tag)
    assert isinstance(inj.send(deleted), Applied)
    inj.fence("the delete")
    assert replica.get(created.call_id, created.from_tag, created.to_tag) is None
    ended = inj.mi.dialog(created.call_id.decode())
    assert ended is None or (ended.state, ended.timeout) == (5, 0), ended
    # every fence is listed as the replica holds it
    live = {d.callid: d for d in inj.mi.dlg_list() if d.state != 5}
    assert sorted(live) == sorted(d.call_id.decode() for d in replica)
    for want in replica:
        assert not diff_replica_entry(want, live[want.call_id.decode()])
        assert want.h_id_matches(live[want.call_id.decode()].h_id)
    cluster.check()


@pytest.mark.node_deaths_expected  # judged below: the death must be where the rules put it
def test_refused_create_then_update_kills_the_backup_only_where_the_rules_say(
        opensips_cluster: Callable[..., Any], request: pytest.FixtureRequest) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    node = cluster.nodes["backup"]
    release = node.release().version
    replica = Replica([vip_socket(cluster)], release=release)
    request.node.user_properties.append(("backup_release", release))
    inj = _Injector(lc, replica)
    now = int(time.time())
    refused = make(Command.CREATED, **_fields(cluster, "r", now, caller_sock=b"udp:192.0.2.77:5060"))
    assert isinstance(inj.send(refused), Rejected)
    # a fence in another Call-ID is safe everywhere; do not list everything (dlg_list
    # would walk the leg-less dialog on the releases that keep it)
    inj.fence("the refused create")
    if not replica.rules.failed_create_stays_linked:  # a lookup would crash the others
        assert inj.mi.dialog(refused.call_id.decode()) is None
    again = make(Command.UPDATED, **_fields(cluster, "r", now, state=DlgState.CONFIRMED))
    outcome = inj.send(again)
    if isinstance(outcome, Crashed):
        wait_until(lambda: not node.is_running(), 10, f"the {release} backup to die ({outcome.reason})")
        report = node.death_report()
        assert report is not None
        request.node.user_properties.append(("backup_death", report.splitlines()[0]))
        # the BIN receiver's SIGSEGV (match_dialog on NULL legs), not the recvfrom defect
        assert "exited by a signal 11" in node.logs(), report
        assert DEFECT_SIGNATURE not in node.current_logs(), report
    else:
        assert isinstance(outcome, Applied) and outcome.created
        inj.fence("the update that builds the dialog")
        _assert_same(inj, again, "the dialog built by the update")
        assert node.is_running()
        cluster.check()
