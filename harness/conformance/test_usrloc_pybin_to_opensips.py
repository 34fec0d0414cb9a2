"""pybin → OpenSIPS (usrloc): registrations built by pybin, taken by a real 1.11/2.1 backup.

pybin.usrloc.make builds record and contact packets; the pybin peer sends them from its
own socket, a replication source like any node. After each packet the backup's
``ul_dump`` shows the binding with every field sent (the ones MI prints), in the list
order usrloc keeps, and its ``usrloc:`` statistics move by exactly what changed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import vip_socket, wait_until
from _usrloc import TABLE, dump, start

from harness.instruments.mi_usrloc import UlContact
from pybin import usrloc
from pybin.usrloc import ContactFlag, Method

pytestmark = [pytest.mark.live, pytest.mark.optional_release]

T = TABLE.encode()


def _binding(cluster: Any, now: int, **over: object) -> dict[str, object]:
    fields: dict[str, object] = dict(
        domain=T, aor=b"alice", contact=b"sip:alice@192.0.2.7:5060;transport=udp",
        call_id=b"pybin-reg-1@harness", user_agent=b"pybin/usrloc", path=b"<sip:192.0.2.99;lr>",
        attr=b"tenant=7", received=b"sip:192.0.2.8:5062", instance=b"<urn:uuid:0000-pybin>",
        expires=now + 600, q=500, sock=vip_socket(cluster).encode(), cseq=10,
        flags=int(ContactFlag.MEM), cflags=0, methods=int(Method.INVITE | Method.MESSAGE),
        last_modified=now)
    fields.update(over)
    return fields


def _record(mi: Any, aor: str) -> tuple[UlContact, ...] | None:
    domain, _, _ = dump(mi)
    record = domain.get(aor)
    return None if record is None else record.contacts


def test_pybin_registrations_appear_on_a_real_backup(
        opensips_cluster: Callable[..., Any], usrloc_pair: Any) -> None:
    lc = start(opensips_cluster, usrloc_pair, peer=True)
    cluster, peer = lc.cluster, lc.peer
    backup = cluster.addresses["backup"].bin_addr
    mi = cluster.mi("backup")
    assert mi.get_statistics("usrloc:") == {"registered_users": 0, f"{TABLE}-users": 0,
                                           f"{TABLE}-contacts": 0, f"{TABLE}-expires": 0}
    now = int(time.time())

    def stats() -> tuple[int, int]:
        s = mi.get_statistics("usrloc:")
        return s[f"{TABLE}-users"], s[f"{TABLE}-contacts"]

    # 1. record insert, then a binding with every field: shown as sent
    peer.send(usrloc.make(1, domain=T, aor=b"alice"), backup)
    wait_until(lambda: _record(mi, "alice") == (), 10, "alice's empty record")
    first = usrloc.make(3, **_binding(cluster, now))
    peer.send(first, backup)
    (entry,) = wait_until(lambda: _record(mi, "alice"), 10, "alice's binding")
    assert entry == UlContact(
        contact="sip:alice@192.0.2.7:5060;transport=udp", q="0.5", expires=entry.expires,
        expires_text=str(entry.expires), callid="pybin-reg-1@harness", cseq=10,
        user_agent="pybin/usrloc", received="sip:192.0.2.8:5062", path="<sip:192.0.2.99;lr>",
        state="CS_NEW", flags=1, cflags=(), socket=vip_socket(cluster),
        methods=int(Method.INVITE | Method.MESSAGE), attr="tenant=7", sip_instance="<urn:uuid:0000-pybin>")
    assert entry.expires is not None and 600 - (time.time() - now) - 2 <= entry.expires <= 600
    assert stats() == (1, 1)

    # 2. a second binding with a higher q goes first (mem_insert_ucontact: q descending)
    peer.send(usrloc.make(3, **_binding(cluster, now, contact=b"sip:alice@192.0.2.9", q=1000,
                                        call_id=b"pybin-reg-2@harness", instance=b"")), backup)
    wait_until(lambda: [c.contact for c in _record(mi, "alice") or ()] ==
               ["sip:alice@192.0.2.9", "sip:alice@192.0.2.7:5060;transport=udp"], 10, "q order")
    assert stats() == (1, 2)

    # 3. an update of the first (CSeq + 1) takes every field but the contact
    peer.send(usrloc.make(4, **_binding(cluster, now, cseq=11, q=700, user_agent=b"pybin/2",
                                        expires=now + 1200, path=b"", attr=b"", methods=int(Method.INVITE))),
              backup)
    updated = wait_until(lambda: next((c for c in _record(mi, "alice") or () if c.cseq == 11), None),
                         10, "the update")
    assert (updated.contact, updated.q, updated.user_agent, updated.path, updated.attr, updated.methods) == (
        "sip:alice@192.0.2.7:5060;transport=udp", "0.7", "pybin/2", "", "", int(Method.INVITE))
    assert updated.expires is not None and updated.expires > 600
    assert stats() == (1, 2)

    # 4. a contact delete naming the stored binding removes it; its AOR stays
    peer.send(usrloc.make(5, domain=T, aor=b"alice", contact=b"sip:alice@192.0.2.9",
                          call_id=b"pybin-reg-2@harness", cseq=10), backup)
    wait_until(lambda: len(_record(mi, "alice") or ()) == 1, 10, "the delete")
    assert stats() == (1, 1)

    # 5. a record delete removes the AOR with what it still holds
    peer.send(usrloc.make(2, domain=T, aor=b"alice"), backup)
    wait_until(lambda: _record(mi, "alice") is None, 10, "the record delete")
    assert stats() == (0, 0)
    assert mi.get_statistics("usrloc:")["registered_users"] == 0
    cluster.check()


def test_pybin_registration_is_routable_on_the_backup(
        opensips_cluster: Callable[..., Any], usrloc_pair: Any, tmp_path: Any) -> None:
    """A binding only pybin sent is what the backup's lookup() uses once it holds the
    VIP: a call to that user reaches the contact pybin named."""
    from harness.experiments.registrations import Users

    lc = start(opensips_cluster, usrloc_pair, peer=True)
    cluster, peer = lc.cluster, lc.peer
    with Users(cluster, ["carol"], workdir=tmp_path / "sipp") as users:
        now = int(time.time())
        for message in (usrloc.make(1, domain=T, aor=b"carol"),
                        usrloc.make(3, **_binding(cluster, now, aor=b"carol", path=b"", received=b"",
                                                  instance=b"", contact=users.contact("carol").encode(),
                                                  flags=0, methods=0xFFFFFFFF))):
            peer.send(message, cluster.addresses["backup"].bin_addr)
        wait_until(lambda: _record(cluster.mi("backup"), "carol"), 10, "carol on the backup")
        assert _record(cluster.mi("primary"), "carol") is None  # only the backup knows her
        cluster.nodes["primary"].kill()
        cluster.failover()
        callee = users.answer()
        summary = users.call().wait(30)
        callee.halt()
    assert (summary.successful, summary.failed) == (1, 0), summary.errors
    assert callee.result().calls[0].messages[0].first_line.startswith("INVITE sip:carol@")
