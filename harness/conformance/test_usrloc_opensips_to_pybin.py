"""OpenSIPS → pybin (usrloc): what a real 1.11/2.1 primary replicates is the REGISTER SIP made.

Users register through the VIP with each REGISTER scenario; the pybin peer every node
replicates to receives the ``ul`` packets. Per AOR the commands come in the order
usrloc sends them, and every field of every packet equals what the REGISTER said
(Contact URI and its q, expires, methods and +sip.instance; Call-ID, CSeq,
User-Agent; the socket it came in on; the time it was saved); a delete names the
binding it removes. The primary's own ``ul_dump`` equals pybin's registrar fed those
packets: nothing it holds went unreplicated.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from _dialogs import vip_socket
from _usrloc import SEQUENCES, TABLE, contacts_of, dump, registers, replica, start, ul_of

from harness.experiments.location import table_diffs
from harness.experiments.registrations import Users, user_names
from pybin.usrloc import ContactDeleted, ContactInserted, ContactUpdated, UlCommand

pytestmark = [pytest.mark.live, pytest.mark.optional_release]

USERS = 2


def _check_aor(cluster: Any, user: str, msgs: list[Any], sip: dict[tuple[str, int], Any]) -> None:
    """Every packet of one AOR against the REGISTERs SIPp sent for it."""
    stored: dict[bytes, tuple[bytes, int]] = {}  # contact -> (Call-ID, CSeq) that set it
    for msg in msgs:
        assert (msg.domain, msg.aor) == (TABLE.encode(), user.encode()), msg
        if isinstance(msg, (ContactInserted, ContactUpdated)):
            request, ok_at = sip[(msg.call_id.decode(), msg.cseq)]
            (header,) = [h for h in contacts_of(request) if h.uri == msg.contact.decode()]
            saved = msg.last_modified.value
            assert int(request.t) - 1 <= saved <= ok_at + 1, (msg.contact, saved, request.t, ok_at)
            assert header.expires is not None
            assert (msg.expires.value, msg.expires.size, msg.q.value, msg.q.size, msg.last_modified.size) == (
                saved + header.expires, 8, header.q, 4, 8), msg
            assert (msg.user_agent, msg.methods, msg.instance) == (
                request.header("User-Agent").encode(), header.methods, header.instance.encode()), msg
            assert (msg.sock, msg.path, msg.received, msg.attr, msg.flags, msg.cflags) == (
                vip_socket(cluster).encode(), b"", b"", b"", 0, 0), msg
            stored[msg.contact] = (msg.call_id, msg.cseq)
        elif isinstance(msg, ContactDeleted):
            # names the binding as stored: the Call-ID and CSeq that set it, not the
            # REGISTER that removed it
            assert stored.pop(msg.contact) == (msg.call_id, msg.cseq), msg


@pytest.mark.parametrize("scenario", list(SEQUENCES))
def test_registrations_replicate_the_register_field_by_field(
        opensips_cluster: Callable[..., Any], usrloc_pair: Any, tmp_path: Any, scenario: str) -> None:
    lc = start(opensips_cluster, usrloc_pair, peer=True)
    cluster, peer = lc.cluster, lc.peer
    names = user_names(USERS, prefix=scenario.replace("_", ""))
    with Users(cluster, names, workdir=tmp_path / "sipp") as users:
        # expiry's 2 s binding would expire mid-check: here it lives a minute
        summary = users.register(scenario, keys={"expires": "60"} if scenario == "expiry" else None).wait(30)
    assert (summary.successful, summary.failed) == (USERS, 0), summary.errors
    want = len(SEQUENCES[scenario]) * USERS
    peer.wait_for(lambda got: sum(p.packet.module == b"ul" for p in got) >= want, 15,
                  f"{want} ul packets")
    sip = registers(summary)
    per_aor = ul_of(peer.received, names)
    for user in names:
        assert [UlCommand(m.command).word for m in per_aor[user]] == SEQUENCES[scenario], user
        _check_aor(cluster, user, per_aor[user], sip)
    # nothing else: every ul packet is one of these AORs', from the primary
    ul = [p for p in peer.received if p.packet.module == b"ul"]
    assert len(ul) == want and {p.source for p in ul} == {cluster.addresses["primary"].bin_addr}

    # the primary holds what it replicated: its table = pybin's registrar fed the packets
    reg = replica(lc, usrloc_pair.primary.version)
    for p in ul:
        reg.apply_packet(p.packet, now=int(p.time))
    domain, at, took = dump(cluster.mi("primary"))
    assert not table_diffs(domain, reg.snapshot(now=int(at)), at=at, took=took)
    expected_aors = 0 if scenario == "unregister" else USERS
    assert len(domain.aors) == expected_aors


def test_a_call_replicates_no_ul_packet(
        opensips_cluster: Callable[..., Any], usrloc_pair: Any, sip_calls: Callable[..., Any]) -> None:
    """A call through a pair with registrations on replicates its dialog and no ``ul``
    packet: usrloc sends only when a binding changes."""
    lc = start(opensips_cluster, usrloc_pair, peer=True)
    summary = sip_calls(lc.cluster, "basic", calls=1).wait(30)
    assert summary.successful == 1
    lc.peer.wait_for(lambda got: any(p.packet.module == b"dialog" and p.packet.command == 3 for p in got),
                     15, "the call's deleted")
    assert {p.packet.module for p in lc.peer.received} == {b"dialog"}
