"""Parity (usrloc): a real backup's location table equals pybin's registrar fed the same packets.

The backup gets what the primary replicates for every REGISTER scenario, then packets
pybin crafts for each rule of a usrloc receiver (a duplicate insert, an update of what
it lacks, stale CSeqs, deletes of what is not there, a socket it does not have, a
table it does not have, a contact that does not parse, q order after an update,
permanent, expired and short-lived bindings, a record delete with bindings). pybin's
``Registrar(release=<the backup's>)`` applies the same packets at the times they
arrived. Once the backup's timer has run, its ``ul_dump`` (every AOR, every binding in
list order, every field) and its ``usrloc:`` statistics equal the replica's.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import vip_socket
from _usrloc import SEQUENCES, TABLE, replica, settled, start

from harness.experiments.location import ul_commands
from harness.experiments.registrations import Users, user_names
from pybin import usrloc
from pybin.registrar import Applied, Crashed, Ignored

pytestmark = [pytest.mark.live, pytest.mark.optional_release]

#: users per REGISTER scenario
USERS = 2


def _crafted(sock: bytes, now: int) -> list[tuple[str, usrloc.UlMessage]]:
    """(what it exercises, packet): the rules of a usrloc receiver, one packet at a time."""
    T = TABLE.encode()

    def contact(command: int, aor: bytes, uri: bytes, **over: object) -> usrloc.UlMessage:
        fields: dict[str, object] = dict(
            domain=T, aor=aor, contact=uri, call_id=b"craft-" + aor, user_agent=b"pybin-craft",
            expires=now + 600, q=-1, sock=sock, cseq=10, methods=0xFFFFFFFF, last_modified=now)
        fields.update(over)
        return usrloc.make(command, **fields)

    def delete(aor: bytes, uri: bytes, cseq: int, call_id: bytes | None = None) -> usrloc.UlMessage:
        return usrloc.make(5, domain=T, aor=aor, contact=uri, call_id=call_id or b"craft-" + aor, cseq=cseq)

    return [
        ("permanent binding", contact(3, b"perm", b"sip:perm@192.0.2.1", expires=0)),
        ("insert", contact(3, b"dup", b"sip:dup@192.0.2.1")),
        ("the same insert again: a second binding", contact(3, b"dup", b"sip:dup@192.0.2.1", cseq=11)),
        ("update of an unknown AOR", contact(4, b"upd", b"sip:upd@192.0.2.1")),
        ("update of an unknown contact", contact(4, b"upd", b"sip:upd-2@192.0.2.1", q=300)),
        ("stale update (older CSeq)", contact(4, b"upd", b"sip:upd@192.0.2.1", cseq=5, user_agent=b"stale")),
        ("update from another Call-ID, new q", contact(4, b"upd", b"sip:upd@192.0.2.1", cseq=1,
                                                      call_id=b"other", q=800)),
        ("delete of an unknown AOR", delete(b"nobody", b"sip:x@192.0.2.1", 1)),
        ("delete of an unknown contact", delete(b"dup", b"sip:nope@192.0.2.1", 99)),
        ("delete with a stale CSeq", delete(b"dup", b"sip:dup@192.0.2.1", 5)),
        ("delete of the first binding", delete(b"dup", b"sip:dup@192.0.2.1", 10)),
        ("a socket the backup lacks", contact(3, b"foreign", b"sip:foreign@192.0.2.1",
                                              sock=b"udp:192.0.2.250:5060")),
        ("a table the backup lacks", contact(3, b"alien", b"sip:alien@192.0.2.1", domain=b"other")),
        ("a contact that does not parse", contact(3, b"bad", b"not a uri", received=b"sip:192.0.2.1")),
        ("record insert of an existing AOR", usrloc.make(1, domain=T, aor=b"perm")),
        ("record delete of an unknown AOR", usrloc.make(2, domain=T, aor=b"ghost")),
        *[(f"insert q {q}", contact(3, b"order", b"sip:order-%d@192.0.2.1" % q, q=q)) for q in (1000, 500, 100)],
        ("update q 100 -> 700: moves before the first q not lower",
         contact(4, b"order", b"sip:order-100@192.0.2.1", q=700, cseq=11)),
        ("a binding expired already", contact(3, b"late", b"sip:late@192.0.2.1", expires=now - 10)),
        ("a binding for 3 s", contact(3, b"late", b"sip:late-2@192.0.2.1", expires=now + 3)),
        ("insert, then a record delete with bindings", contact(3, b"gone", b"sip:gone@192.0.2.1")),
        ("record delete", usrloc.make(2, domain=T, aor=b"gone")),
    ]


def test_backup_table_equals_the_registrar_replica(
        opensips_cluster: Callable[..., Any], usrloc_pair: Any, tmp_path: Any) -> None:
    lc = start(opensips_cluster, usrloc_pair, peer=True)
    cluster, peer = lc.cluster, lc.peer
    reg = replica(lc, usrloc_pair.backup.version)

    # 1. SIP through the primary: every REGISTER scenario, its own users each
    for scenario in SEQUENCES:
        with Users(cluster, user_names(USERS, prefix=scenario.replace("_", "")),
                   workdir=tmp_path / scenario) as users:
            summary = users.register(scenario).wait(30)
        assert (summary.successful, summary.failed) == (USERS, 0), (scenario, summary.errors)
    want = sum(len(seq) for seq in SEQUENCES.values()) * USERS
    got = peer.wait_for(lambda got: sum(p.packet.module == b"ul" for p in got) >= want, 15,
                        f"{want} ul packets from the primary")
    from_primary = [p for p in got if p.packet.module == b"ul"]
    assert len(from_primary) == want
    outcomes = [reg.apply_packet(p.packet, now=int(p.time)) for p in from_primary]
    assert all(isinstance(o, (Applied, Ignored)) for o in outcomes), outcomes
    settled(lc, "backup", reg, "the backup's table after the REGISTERs")

    # 2. pybin's packets straight to the backup, each applied to the replica as sent
    backup = cluster.addresses["backup"].bin_addr
    seen: dict[str, int] = {}
    for what, message in _crafted(vip_socket(cluster).encode(), int(time.time())):
        outcome = reg.apply(message, now=int(time.time()))
        assert not isinstance(outcome, Crashed), (what, outcome)  # the rules say which; none here
        seen[type(outcome).__name__] = seen.get(type(outcome).__name__, 0) + 1
        peer.send(message, backup)
    # every kind of outcome was exercised, so the comparison below covers each rule
    assert set(seen) == {"Applied", "Ignored", "Rejected"}, seen

    # 3. once both timers removed the 3 s binding (and so its emptied AOR), table and
    # statistics are the replica's
    settled(lc, "backup", reg, "the backup's table after pybin's packets, 'late' expired",
            timeout=30, until=lambda domain: domain.get("late") is None)
    # what the primary sent: per user, register 2, refresh 3, multi_contact 5,
    # unregister 7, expiry 3 packets
    assert ul_commands(p.packet for p in peer.received) == {
        "record_insert": 10, "record_delete": 4, "contact_insert": 20, "contact_update": 2,
        "contact_delete": 4}
    cluster.check()
