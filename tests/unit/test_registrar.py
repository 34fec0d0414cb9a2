"""The registrar replica applies ul packets like a usrloc backup (1.11.11 and per release).

Every expected table here was also seen on real 1.11.11 and 2.1.5 backups fed the same
packets (MI ul_dump compared field by field, in list order); see README, usrloc.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybin import usrloc
from pybin.bindings import MatchingMode, sip_uri_parses
from pybin.registrar import (
    Action,
    Applied,
    Crashed,
    Expired,
    Ignored,
    RecordKey,
    Registrar,
    Rejected,
)
from pybin.usrloc import ContactFlag, RawInt
from pybin.wire import PacketBuilder, parse_header

NOW = 1_800_000_000
SOCK = b"udp:10.0.0.100:5060"
ALICE = RecordKey(b"location", b"alice")


def registrar(**kw) -> Registrar:
    return Registrar([b"location"], [SOCK.decode()], **kw)


def contact(command: int, uri: bytes = b"sip:alice@10.0.0.1", aor: bytes = b"alice", **kw) -> usrloc.UlMessage:
    fields = dict(domain=b"location", aor=aor, contact=uri, call_id=b"call-1", user_agent=b"ua",
                  expires=NOW + 600, sock=SOCK, cseq=10, methods=47, last_modified=NOW)
    fields.update(kw)
    return usrloc.make(command, **fields)


def delete(uri: bytes = b"sip:alice@10.0.0.1", cseq: int = 10, aor: bytes = b"alice", call_id: bytes = b"call-1"):
    return usrloc.make(5, domain=b"location", aor=aor, contact=uri, call_id=call_id, cseq=cseq)


def uris(reg: Registrar, aor: bytes = b"alice") -> list[bytes]:
    return [b.contact for b in reg.get(b"location", aor) or ()]


def test_insert_builds_the_aor_and_a_binding_with_every_field() -> None:
    reg = registrar()
    msg = contact(3, path=b"<sip:10.0.0.9;lr>", attr=b"a", received=b"sip:1.2.3.4:5060", instance=b"<urn:x>",
                  q=500, flags=0, cflags=1)
    assert reg.apply(msg, now=NOW) == Applied(usrloc.UlCommand.CONTACT_INSERT, ALICE,
                                              (Action.RECORD_CREATED, Action.CONTACT_INSERTED))
    (b,) = reg.get(b"location", b"alice")
    assert (b.contact, b.call_id, b.user_agent, b.path, b.attr) == (
        b"sip:alice@10.0.0.1", b"call-1", b"ua", b"<sip:10.0.0.9;lr>", b"a")
    assert (b.received, b.instance, b.expires, b.q, b.sock) == (b"sip:1.2.3.4:5060", b"<urn:x>", NOW + 600, 500, SOCK)
    assert (b.cseq, b.flags, b.cflags, b.methods, b.last_modified) == (10, 0, 1, 47, NOW)
    assert reg.statistics() == {"registered_users": 1, "location-users": 1, "location-contacts": 1,
                                "location-expires": 0}


def test_records_insert_once_and_delete_with_every_binding() -> None:
    reg = registrar()
    record = usrloc.make(1, domain=b"location", aor=b"alice")
    assert reg.apply(record, now=NOW) == Applied(record.command, ALICE, (Action.RECORD_CREATED,))
    assert reg.apply(record, now=NOW) == Ignored(record.command, ALICE, "the AOR exists")
    assert reg.get(b"location", b"alice") == ()  # an AOR without bindings, as ul_dump lists it
    reg.apply(contact(3), now=NOW)
    reg.apply(contact(3, b"sip:alice-2@10.0.0.1"), now=NOW)
    gone = usrloc.make(2, domain=b"location", aor=b"alice")
    assert reg.apply(gone, now=NOW).actions == (Action.CONTACT_DELETED,) * 2 + (Action.RECORD_DELETED,)
    assert reg.apply(gone, now=NOW) == Ignored(gone.command, ALICE, "no such AOR")
    assert reg.statistics()["location-users"] == reg.statistics()["location-contacts"] == 0


def test_a_second_insert_of_a_contact_adds_a_second_binding() -> None:
    reg = registrar()
    reg.apply(contact(3), now=NOW)
    assert reg.apply(contact(3, cseq=11), now=NOW).actions == (Action.CONTACT_INSERTED,)
    assert uris(reg) == [b"sip:alice@10.0.0.1"] * 2


def test_an_update_that_finds_nothing_inserts() -> None:
    reg = registrar()
    assert reg.apply(contact(4), now=NOW).actions == (Action.RECORD_CREATED, Action.CONTACT_INSERTED)
    assert reg.apply(contact(4, b"sip:alice-2@10.0.0.1"), now=NOW).actions == (Action.CONTACT_INSERTED,)
    assert uris(reg) == [b"sip:alice@10.0.0.1", b"sip:alice-2@10.0.0.1"]


def test_an_update_takes_every_field_but_the_contact_and_its_instance() -> None:
    reg = registrar()
    reg.apply(contact(3, instance=b"<urn:first>"), now=NOW)
    update = contact(4, call_id=b"call-2", user_agent=b"ua2", path=b"<sip:p;lr>", attr=b"x", received=b"sip:r",
                     instance=b"<urn:second>", expires=NOW + 900, q=100, cseq=3, flags=1, cflags=2, methods=1,
                     last_modified=NOW + 5)
    assert reg.apply(update, now=NOW + 5).actions == (Action.CONTACT_UPDATED,)
    (b,) = reg.get(b"location", b"alice")
    assert (b.call_id, b.user_agent, b.path, b.attr, b.received) == (b"call-2", b"ua2", b"<sip:p;lr>", b"x", b"sip:r")
    assert (b.instance, b.expires, b.q, b.cseq, b.flags, b.cflags, b.methods, b.last_modified) == (
        b"<urn:first>", NOW + 900, 100, 3, 1, 2, 1, NOW + 5)


# get_ucontact(record, contact, callid, packet cseq + 1) against a binding of CSeq 10
# modified at NOW: (packet cseq, now) → the lookup's verdict
LOOKUPS = {
    "older": (5, NOW),  # 6 < 10: -1
    "same, in cseq_delay": (9, NOW + 19),  # 10 == 10, NOW + 20 > now: -2
    "same, after cseq_delay": (9, NOW + 20),  # -1
    "newer": (10, NOW),  # 11 > 10: found
}


@pytest.mark.parametrize(
    "release, case, expected",
    [
        ("1.11.11", "older", "ignored"), ("1.11.11", "same, in cseq_delay", "ignored"),
        ("1.11.11", "same, after cseq_delay", "ignored"), ("1.11.11", "newer", "updated"),
        ("1.11.9", "same, in cseq_delay", "ignored"), ("2.1.5", "older", "ignored"),
        ("1.11.8", "older", "duplicate"), ("1.11.8", "same, in cseq_delay", "crash"),
        ("1.11.8", "same, after cseq_delay", "duplicate"), ("1.11.0", "newer", "updated"),
        ("2.1.4", "older", "duplicate"), ("2.1.0", "same, in cseq_delay", "crash"),
    ],
)
def test_stale_updates_per_release(release: str, case: str, expected: str) -> None:
    reg = registrar(release=release)
    reg.apply(contact(3), now=NOW)
    cseq, now = LOOKUPS[case]
    outcome = reg.apply(contact(4, cseq=cseq, user_agent=b"late"), now=now)
    kind = {Ignored: "ignored", Crashed: "crash"}.get(type(outcome))
    if kind is None:
        kind = "updated" if outcome.actions == (Action.CONTACT_UPDATED,) else "duplicate"
    assert kind == expected
    if kind == "crash":
        assert reg.apply(contact(3, b"sip:other@x.y"), now=now) == Crashed(
            usrloc.UlCommand.CONTACT_INSERT, ALICE, f"the node is down: {reg.down}")
    if kind == "duplicate":
        assert [b.user_agent for b in reg.get(b"location", b"alice")] == [b"ua", b"late"]


def test_callid_matching_mode_checks_the_cseq_of_the_same_call_only() -> None:
    reg = registrar(matching_mode=MatchingMode.CONTACT_CALLID)
    reg.apply(contact(3), now=NOW)
    assert reg.apply(contact(4, call_id=b"call-2", cseq=1), now=NOW).actions == (Action.CONTACT_INSERTED,)
    assert isinstance(reg.apply(contact(4, cseq=1), now=NOW), Ignored)
    only = registrar()
    only.apply(contact(3), now=NOW)
    assert only.apply(contact(4, call_id=b"call-2", cseq=1), now=NOW).actions == (Action.CONTACT_UPDATED,)


@pytest.mark.parametrize(
    "message, outcome",
    [
        (delete(aor=b"bob"), Ignored),  # "failed to fetch local urecord - ignoring request"
        (delete(b"sip:nobody@x.y"), Rejected),
        (delete(cseq=5), Rejected),  # older: -1
        (delete(cseq=9), Rejected),  # same within cseq_delay: -2 ("rc != 2" lets it through)
        (delete(cseq=10), Applied),
        (delete(cseq=5, call_id=b"other"), Applied),  # another Call-ID: no CSeq test (CONTACT_ONLY)
    ],
)
def test_contact_delete(message: usrloc.ContactDeleted, outcome: type) -> None:
    reg = registrar()
    reg.apply(contact(3), now=NOW)
    result = reg.apply(message, now=NOW)
    assert type(result) is outcome
    assert uris(reg) == ([] if outcome is Applied else [b"sip:alice@10.0.0.1"])
    assert reg.get(b"location", b"alice") is not None  # an emptied AOR stays until the timer


@pytest.mark.parametrize("release, stored", [("1.11.9", False), ("1.11.10", True), ("1.11.11", True),
                                             ("2.1.0", False), ("2.1.5", False)])
def test_a_socket_the_backup_lacks(release: str, stored: bool) -> None:
    reg = registrar(release=release)
    outcome = reg.apply(contact(3, sock=b"udp:10.9.9.9:5060"), now=NOW)
    if stored:
        assert isinstance(outcome, Applied) and reg.get(b"location", b"alice")[0].sock is None
    else:
        assert outcome == Rejected(outcome.command, ALICE, "non-local socket b'udp:10.9.9.9:5060'")
        assert reg.get(b"location", b"alice") is None  # refused before the AOR is made


@pytest.mark.parametrize("sock, reason", [(b"", "bad received socket"), (b"\0udp:1.2.3.4:5060", "bad received socket"),
                                          (b"udp:[::1", "bad socket")])
def test_bad_sockets_are_refused_everywhere(sock: bytes, reason: str) -> None:
    for release in ("1.11.0", "1.11.11", "2.1.5"):
        assert reason in registrar(release=release).apply(contact(3, sock=sock), now=NOW).reason


def test_a_domain_the_backup_did_not_register() -> None:
    outcome = registrar().apply(contact(3, domain=b"other"), now=NOW)
    assert outcome == Rejected(outcome.command, RecordKey(b"other", b"alice"), "domain b'other' is not local")


@pytest.mark.parametrize("release, stored", [("1.11.5", True), ("1.11.6", False), ("2.1.1", True), ("2.1.2", False)])
def test_a_contact_that_does_not_parse(release: str, stored: bool) -> None:
    reg = registrar(release=release)
    outcome = reg.apply(contact(3, b"not a uri", received=b"sip:10.0.0.1:5060"), now=NOW)
    if stored:
        assert uris(reg) == [b"not a uri"]
    else:
        assert outcome.actions == (Action.RECORD_CREATED,) and reg.get(b"location", b"alice") == ()
    # without a next hop that parses, no release stores it
    assert isinstance(reg.apply(contact(3, b"not a uri", aor=b"bob"), now=NOW), Rejected)


@pytest.mark.parametrize("release, call_id", [("1.11.2", b"call-1"), ("1.11.3", b"call-2"), ("2.1.0", b"call-2")])
def test_an_update_takes_the_call_id_from_1_11_3(release: str, call_id: bytes) -> None:
    reg = registrar(release=release)
    reg.apply(contact(3), now=NOW)
    reg.apply(contact(4, call_id=b"call-2", cseq=1), now=NOW)
    assert reg.get(b"location", b"alice")[0].call_id == call_id


def test_list_order_by_q_and_the_update_that_reverses_it() -> None:
    """Seen on both real backups (crafted packets E14): inserts keep q descending, an update
    that leaves its place moves before the first binding whose q is not lower."""
    reg = registrar()
    for q in (1000, 500, 100):
        reg.apply(contact(3, b"sip:q%d@x.y" % q, q=q), now=NOW)
    reg.apply(contact(3, b"sip:none@x.y"), now=NOW)  # q unspecified (-1): last
    assert uris(reg) == [b"sip:q1000@x.y", b"sip:q500@x.y", b"sip:q100@x.y", b"sip:none@x.y"]
    reg.apply(contact(4, b"sip:q100@x.y", q=700, cseq=11), now=NOW)
    assert uris(reg) == [b"sip:q100@x.y", b"sip:q1000@x.y", b"sip:q500@x.y", b"sip:none@x.y"]
    newest_first = registrar(desc_time_order=True)
    for q in (1000, 500, 100):
        newest_first.apply(contact(3, b"sip:q%d@x.y" % q, q=q), now=NOW)
    newest_first.apply(contact(4, b"sip:q500@x.y", cseq=11), now=NOW)
    assert uris(newest_first) == [b"sip:q500@x.y", b"sip:q100@x.y", b"sip:q1000@x.y"]


def test_expiry_by_now_permanent_contacts_and_the_timer() -> None:
    reg = registrar()
    reg.apply(contact(3, b"sip:perm@x.y", expires=0), now=NOW)
    reg.apply(contact(3, b"sip:short@x.y", expires=NOW + 5), now=NOW)
    reg.apply(contact(3, b"sip:gone@x.y", aor=b"bob", expires=NOW - 1), now=NOW)
    assert reg.next_expiry() == NOW - 1
    assert {k.aor: [b.contact for b in v] for k, v in reg.snapshot(now=NOW).items()} == {
        b"alice": [b"sip:perm@x.y", b"sip:short@x.y"]}  # q equal: in the order they came
    assert [b.contact for b in reg.snapshot(now=NOW + 5)[ALICE]] == [b"sip:perm@x.y"]  # expires <= now: gone
    assert reg.expire(now=NOW + 4) == [Expired(RecordKey(b"location", b"bob"), b"sip:gone@x.y"),
                                       Expired(RecordKey(b"location", b"bob"), None)]
    assert reg.expire(now=NOW + 5) == [Expired(ALICE, b"sip:short@x.y")]
    assert reg.expire(now=NOW + 10**9) == []  # permanent
    assert reg.statistics() == {"registered_users": 1, "location-users": 1, "location-contacts": 1,
                                "location-expires": 2}


def test_raw_sizes_the_backup_would_misread_are_refused() -> None:
    reg = registrar()
    narrow = reg.apply(contact(3, expires=RawInt(NOW, 4), last_modified=RawInt(NOW, 4)), now=NOW)
    assert narrow.reason == "expires is 4 bytes, this backup's time_t 8"
    assert "q is 8 bytes" in reg.apply(contact(3, q=RawInt(500, 8)), now=NOW).reason
    assert isinstance(registrar(time_t_size=4).apply(contact(3, expires=RawInt(NOW, 4),
                                                             last_modified=RawInt(NOW, 4)), now=NOW), Applied)


def test_skip_replicated_db_ops_marks_bindings_memory_only() -> None:
    reg = registrar(skip_replicated_db_ops=True)
    reg.apply(contact(3, flags=0), now=NOW)
    assert reg.get(b"location", b"alice")[0].flags == ContactFlag.MEM


def _packet(message: usrloc.UlMessage) -> bytes:
    return message.encode()


def test_apply_packet_refuses_what_is_not_a_ul_command() -> None:
    reg = registrar()
    assert reg.apply_packet(parse_header(PacketBuilder(b"ul", 9).finish()), now=NOW).reason == \
        "invalid usrloc binary packet type: 9"
    assert "undecodable packet: domain" in reg.apply_packet(parse_header(PacketBuilder(b"ul", 1).finish()), now=NOW).reason
    assert isinstance(reg.apply_packet(parse_header(contact(3).encode()), now=NOW), Applied)


def _empty_expires(domain: bytes) -> bytes:
    builder = PacketBuilder(b"ul", 3)
    for (name, kind), value in zip(usrloc.CONTACT_FIELDS, contact(3, domain=domain)):
        if name == "expires":
            builder.push_str(b"")
        elif kind == "raw":
            builder.push_str(usrloc.raw_bytes(value))
        elif kind == "int":
            builder.push_int(value)
        else:
            builder.push_str(value)
    return builder.finish()


def test_an_empty_raw_field_kills_the_node_once_its_domain_is_found() -> None:
    """Seen on both real backups (E20): SIGSEGV in the BIN receiver."""
    reg = registrar()
    assert isinstance(reg.apply_packet(parse_header(_empty_expires(b"other")), now=NOW), Rejected)
    crash = reg.apply_packet(parse_header(_empty_expires(b"location")), now=NOW)
    assert isinstance(crash, Crashed) and "empty expires" in crash.reason
    assert isinstance(reg.apply_packet(parse_header(contact(3).encode()), now=NOW), Crashed)


def test_uri_parses_approximation() -> None:
    good = [b"sip:alice@10.0.0.1", b"sip:10.0.0.1:5060;lr", b"SIPS:a:pw@[::1]:5061", b"tel:+123", b"sip:h?x=y"]
    bad = [b"", b"sip:", b"sip:@", b"not a uri", b"http://x", b"sip:h:99999", b"sip:a@:5060", b"sip:h:po"]
    assert [sip_uri_parses(u) for u in good] == [True] * len(good)
    assert [sip_uri_parses(u) for u in bad] == [False] * len(bad)


def test_the_sipp_scenario_seen_on_real_backups() -> None:
    """The packets a 1.11.11 and a 2.1.5 primary sent for one AOR of the live run (three
    contacts, a refresh with a new q, an unregister, "Contact: *"), and the backup's table."""
    reg = registrar()
    c1, c2, c3 = b"sip:alice@10.0.0.70:5090", b"sip:alice-2@10.0.0.70:5090", b"sip:alice-3@10.0.0.70:5090"
    steps = [
        usrloc.make(1, domain=b"location", aor=b"alice"),
        contact(3, c1, cseq=1, expires=NOW + 300),
        contact(3, c2, cseq=2, expires=NOW + 8, q=500, cflags=1),
        contact(3, c3, cseq=3, expires=NOW + 300, path=b"<sip:10.0.0.99:5060;lr>"),
    ]
    for step in steps:
        assert isinstance(reg.apply(step, now=NOW), Applied)
    assert uris(reg) == [c2, c1, c3]
    assert reg.apply(contact(4, c1, cseq=10, q=900, expires=NOW + 602, last_modified=NOW + 2), now=NOW + 2).actions == \
        (Action.CONTACT_UPDATED,)
    assert reg.apply(delete(c3, cseq=3), now=NOW + 2).actions == (Action.CONTACT_DELETED,)
    assert uris(reg) == [c2, c1]
    assert [b.contact for b in reg.snapshot(now=NOW + 8)[ALICE]] == [c1]
    assert reg.expire(now=NOW + 13) == [Expired(ALICE, c2)]
    record_delete = usrloc.make(2, domain=b"location", aor=b"alice")
    outcomes = [reg.apply(m, now=NOW + 22) for m in (record_delete, delete(c1, cseq=10), record_delete)]
    assert [type(o) for o in outcomes] == [Applied, Ignored, Ignored]
    assert reg.snapshot(now=NOW + 22) == {}
    assert reg.statistics() == {"registered_users": 0, "location-users": 0, "location-contacts": 0,
                                "location-expires": 1}


_STEP = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5]),
    st.sampled_from([b"alice", b"bob"]),
    st.sampled_from([b"sip:a@x.y", b"sip:b@x.y", b"bad uri"]),
    st.sampled_from([b"call-1", b"call-2"]),
    st.integers(0, 12),  # cseq
    st.sampled_from([0, -5, 5, 600]),  # expires relative to now (0: permanent)
    st.sampled_from([-1, 100, 500, 1000]),  # q
    st.sampled_from([SOCK, b"udp:10.9.9.9:5060"]),
    st.integers(0, 30),  # seconds since the previous step
)


@settings(max_examples=300)
@given(steps=st.lists(_STEP, max_size=25), release=st.sampled_from(["1.11.0", "1.11.8", "1.11.11", "2.1.1", "2.1.5"]),
       desc=st.booleans())
def test_any_sequence_keeps_counters_equal_to_the_table(steps, release, desc) -> None:
    reg = registrar(release=release, desc_time_order=desc)
    now = NOW
    for command, aor, uri, call_id, cseq, expires, q, sock, gap in steps:
        now += gap
        if command in (1, 2):
            message = usrloc.make(command, domain=b"location", aor=aor)
        elif command == 5:
            message = delete(uri, cseq, aor, call_id)
        else:
            message = contact(command, uri, aor, call_id=call_id, cseq=cseq, q=q, sock=sock,
                              expires=0 if expires == 0 else now + expires, last_modified=now)
        reg.expire(now=now)
        outcome = reg.apply(message, now=now)
        assert isinstance(outcome, (Applied, Ignored, Rejected, Crashed))
        if isinstance(outcome, Crashed):
            break
    reg.expire(now=now)
    stats = reg.statistics()
    table = {aor: reg.get(b"location", aor) for aor in (b"alice", b"bob")}
    assert stats["location-users"] == stats["registered_users"] == sum(v is not None for v in table.values())
    assert stats["location-contacts"] == sum(len(v or ()) for v in table.values())
    assert all(b.valid(now) for bindings in table.values() for b in bindings or ())  # the timer ran
    assert reg.snapshot(now=now) == {RecordKey(b"location", aor): v for aor, v in table.items() if v}
