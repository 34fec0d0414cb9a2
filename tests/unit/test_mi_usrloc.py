"""``ul_dump`` parsed (offline), on the text real 1.11.11 and 2.1.5 backups sent.

The dumps in ``data/mi/`` are replies of real nodes (the registration run behind the
README's usrloc section: three AORs with three bindings each, a refresh, crafted
packets), as mi_datagram sent them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_mi import FakeMI

from harness.instruments.mi import MIClient
from harness.instruments.mi_replies import MIError, parse_reply
from harness.instruments.mi_usrloc import UlContact, parse_ul_dump

DATA = Path(__file__).parent / "data" / "mi"


def dump(name: str) -> str:
    return (DATA / f"ul_dump-{name}.txt").read_text()


def test_a_real_1_11_dump_typed_field_by_field() -> None:
    (domain,) = parse_ul_dump(parse_reply(dump("1.11.11-1-registered")))
    assert (domain.name, domain.table_size, domain.records) == ("location", 512, 3)
    assert [r.aor for r in domain.aors] == ["carol", "bob", "alice"]
    alice = domain.get("alice")
    assert alice is not None and domain.get("dave") is None
    assert [c.contact for c in alice.contacts] == [  # the node's list order: q 0.5 before none
        "sip:alice-2@127.0.0.70:5090", "sip:alice@127.0.0.70:5090",
        "sip:alice-3@127.0.0.70:5090;transport=udp"]
    second, first, third = alice.contacts
    assert second == UlContact(
        contact="sip:alice-2@127.0.0.70:5090", q="0.5", expires=7, expires_text="7",
        callid="usrloc-1@pybin", cseq=2, user_agent="pybin-usrloc/alice", received="", path="",
        state="CS_NEW", flags=0, cflags=("NAT",), socket="udp:127.0.0.61:5060",
        methods=4294967295, attr="", sip_instance="<urn:uuid:00000000-0000-0000-0000-000000000001>")
    assert (first.q, first.q_value, first.cflags, first.methods, first.expires) == ("", -1, (), 47, 299)
    assert (third.path, third.attr, third.methods) == ("<sip:127.0.0.99:5060;lr>", "attr-alice", 257)
    assert second.q_value == 500


def test_words_for_expires_and_a_binding_without_socket() -> None:
    (domain,) = parse_ul_dump(parse_reply(dump("1.11.11-5-crafted")))
    perm = domain.get("perm")
    assert perm is not None
    (binding,) = perm.contacts
    assert (binding.expires, binding.expires_text) == (None, "permanent")
    order = domain.get("order")
    assert order is not None
    assert [(c.contact, c.q_value) for c in order.contacts] == [
        ("sip:order-100@10.0.0.1", 700), ("sip:order-1000@10.0.0.1", 1000),
        ("sip:order-500@10.0.0.1", 500)]
    foreign = domain.get("foreign")
    assert foreign is not None and foreign.contacts[0].socket == ""  # 1.11.10+ keeps it socketless
    narrow = domain.get("narrow")  # a 4-byte time_t read as 8: seconds left, however absurd
    assert narrow is not None and narrow.contacts[0].expires == 17179869775


def test_2_1_prints_the_same_lines() -> None:
    (domain,) = parse_ul_dump(parse_reply(dump("2.1.5-2-refreshed")))
    assert domain.records == len(domain.aors) == 3
    for record in domain.aors:
        # the refresh to q 0.9 stayed after 0.5: update_contact_pos orders ascending
        assert [c.q for c in record.contacts] == ["0.5", "0.9"]
        assert {c.socket for c in record.contacts} == {"udp:127.0.0.61:5060"}


def test_an_empty_table_and_a_brief_dump() -> None:
    assert [(d.name, d.records, d.aors) for d in parse_ul_dump(parse_reply(dump("1.11.11-0-start")))] == [
        ("location", 0, ())]
    # `ul_dump brief`: mi_add_aor_node stops after the AOR line
    brief = "200 OK\nDomain:: location table=512 records=2\n\tAOR:: bob\n\tAOR:: alice\n\n"
    (domain,) = parse_ul_dump(parse_reply(brief))
    assert [(r.aor, r.contacts) for r in domain.aors] == [("bob", ()), ("alice", ())]


def test_a_dump_of_50_aors_or_more_has_no_record_count() -> None:
    """mi_usrloc_dump flushes the tree every 50 AORs: mi_datagram writes the Domain line
    then, before records= is added to it (seen on a real 1.11.11 with 1,000 users)."""
    text = "200 OK\nDomain:: location table=512\n" + "".join(f"\tAOR:: u{n}\n" for n in range(60)) + "\n"
    (domain,) = parse_ul_dump(parse_reply(text))
    assert (domain.records, len(domain.aors), domain.aors[-1].aor) == (None, 60, "u59")


@pytest.mark.parametrize(("text", "error"), [
    ("200 OK\nDomain:: location records=3\n", "table= / records= not numbers"),
    ("200 OK\nDomain:: location table=512 records=x\n", "table= / records= not numbers"),
    ("200 OK\nDomain:: location table=512 records=1\n\tAOR:: a\n\t\tContact:: sip:a@b\n"
     "\t\t\tExpires:: 3\n\t\t\tCseq:: 1\n\t\t\tFlags:: 0\n\t\t\tMethods:: 1\n", "without its Q attribute"),
    ("200 OK\nDomain:: location table=512 records=1\n\tAOR:: a\n\t\tContact:: sip:a@b Q=\n"
     "\t\t\tExpires:: soon\n\t\t\tCseq:: 1\n\t\t\tFlags:: 0\n\t\t\tMethods:: 1\n", "Expires 'soon'"),
    ("200 OK\nDomain:: location table=512 records=1\n\tAOR:: a\n\t\tContact:: sip:a@b Q=\n"
     "\t\t\tExpires:: 3\n\t\t\tFlags:: 0\n\t\t\tMethods:: 1\n", "contact without Cseq"),
    ("200 OK\nDomain:: location table=512 records=1\n\tAOR:: a\n\t\tContact:: sip:a@b Q=\n"
     "\t\t\tExpires:: 3\n\t\t\tCseq:: x\n\t\t\tFlags:: 0\n\t\t\tMethods:: 1\n", "Cseq is not a number"),
])
def test_a_dump_that_is_not_one_is_a_one_line_error(text: str, error: str) -> None:
    with pytest.raises(MIError, match=error) as info:
        parse_ul_dump(parse_reply(text))
    assert "\n" not in str(info.value)


def test_client_asks_ul_dump_and_brief() -> None:
    full, brief = dump("1.11.11-1-registered"), "200 OK\nDomain:: location table=512 records=0\n\n"
    fake = FakeMI(lambda req: {b":ul_dump:\n\n": full, b":ul_dump:\nbrief\n\n": brief}.get(req))
    try:
        client = MIClient(fake.addr, timeout=2)
        assert [len(r.contacts) for r in client.ul_dump()[0].aors] == [3, 3, 3]
        assert client.ul_dump(brief=True)[0].records == 0
    finally:
        fake.close()
    assert fake.requests == [b":ul_dump:\n\n", b":ul_dump:\nbrief\n\n"]
