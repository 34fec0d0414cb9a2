"""harness.experiments.location (offline): ul packets counted, a ul_dump against the replica."""

from __future__ import annotations

from harness.experiments.location import binding_diffs, table_diffs, ul_commands, valid_contacts
from harness.instruments.mi_replies import parse_reply
from harness.instruments.mi_usrloc import parse_ul_dump
from pybin import usrloc
from pybin.dialog import make as dialog_make
from pybin.registrar import Registrar
from pybin.wire import parse_header

NOW = 1_800_000_000
SOCK = "udp:10.0.0.100:5060"


def _binding(aor: bytes, contact: bytes, **over: object) -> usrloc.UlMessage:
    fields: dict[str, object] = dict(domain=b"location", aor=aor, contact=contact, call_id=b"c-" + aor,
                                     user_agent=b"ua", expires=NOW + 300, q=500, sock=SOCK.encode(),
                                     cseq=1, methods=47, last_modified=NOW)
    fields.update(over)
    return usrloc.make(3, **fields)


def _dump(*aors: tuple[str, list[tuple[str, str, str]]]) -> str:
    """A ul_dump reply text as 1.11 writes it: (aor, [(contact, Q, Expires)])."""
    lines = ["200 OK", f"Domain:: location table=512 records={len(aors)}"]
    for aor, contacts in aors:
        lines.append(f"\tAOR:: {aor}")
        for uri, q, expires in contacts:
            lines += [f"\t\tContact:: {uri} Q={q}", f"\t\t\tExpires:: {expires}", f"\t\t\tCallid:: c-{aor}",
                      "\t\t\tCseq:: 1", "\t\t\tUser-agent:: ua", "\t\t\tState:: CS_NEW", "\t\t\tFlags:: 0",
                      "\t\t\tCflags:: ", f"\t\t\tSocket:: {SOCK}", "\t\t\tMethods:: 47"]
    return "\n".join(lines) + "\n\n"


def _replica(*messages: usrloc.UlMessage) -> Registrar:
    reg = Registrar(["location"], [SOCK])
    for m in messages:
        reg.apply(m, now=NOW)
    return reg


def test_ul_commands_counts_every_command_and_only_ul() -> None:
    packets = [parse_header(m.encode()) for m in (
        usrloc.make(1, domain=b"location", aor=b"a"), _binding(b"a", b"sip:a@h"), _binding(b"a", b"sip:b@h"),
        dialog_make(1, call_id=b"x"))]
    assert ul_commands(packets) == {"record_insert": 1, "record_delete": 0, "contact_insert": 2,
                                    "contact_update": 0, "contact_delete": 0}


def test_the_same_table_has_no_difference() -> None:
    reg = _replica(_binding(b"alice", b"sip:alice@h"), _binding(b"alice", b"sip:alice-2@h", q=1000))
    (domain,) = parse_ul_dump(parse_reply(_dump(("alice", [("sip:alice-2@h", "1", "300"),
                                                             ("sip:alice@h", "0.5", "299")]))))
    assert table_diffs(domain, reg.snapshot(now=NOW), at=NOW) == []
    # asked at NOW + 0.9 s, answered 0.8 s later: MI's time(0) was NOW + 1 or NOW + 2
    (late,) = parse_ul_dump(parse_reply(_dump(("alice", [("sip:alice-2@h", "1", "298"),
                                                           ("sip:alice@h", "0.5", "299")]))))
    assert table_diffs(late, reg.snapshot(now=NOW), at=NOW + 0.9, took=0.8) == []
    assert table_diffs(late, reg.snapshot(now=NOW), at=NOW + 0.9) == [
        "alice sip:alice-2@h: expires: 298 s left ≠ 299.1 (at 1800000000.9)"]


def test_differences_are_named() -> None:
    reg = _replica(_binding(b"alice", b"sip:alice@h"), _binding(b"bob", b"sip:bob@h"),
                   _binding(b"carol", b"sip:carol@h"), _binding(b"carol", b"sip:carol-2@h", q=1000))
    (domain,) = parse_ul_dump(parse_reply(_dump(
        ("alice", [("sip:alice@h", "0.7", "300")]),           # q differs
        ("dave", [("sip:dave@h", "0.5", "300")]),             # only on the node
        ("carol", [("sip:carol@h", "0.5", "300"), ("sip:carol-2@h", "1", "300")]),  # order
        ("erin", [("sip:erin@h", "0.5", "expired")]),         # no valid binding: not compared
    )))
    assert sorted(valid_contacts(domain)) == ["alice", "carol", "dave"]
    assert table_diffs(domain, reg.snapshot(now=NOW), at=NOW) == [
        "AORs: only on the node ['dave'], only in the replica ['bob']",
        "alice sip:alice@h: q: '0.7' ≠ '0.5'",
        "carol: bindings ['sip:carol@h', 'sip:carol-2@h'] ≠ ['sip:carol-2@h', 'sip:carol@h']",
    ]


def test_binding_fields_one_by_one() -> None:
    reg = _replica(_binding(b"a", b"sip:a@h", expires=0, path=b"<sip:p;lr>", cflags=1))
    (binding,) = reg.get(b"location", b"a") or ()
    (domain,) = parse_ul_dump(parse_reply(_dump(("a", [("sip:a@h", "0.5", "300")]))))
    (entry,) = domain.aors[0].contacts
    assert binding_diffs(entry, binding, at=NOW, cflag_names={1: "NAT"}) == [
        "path: '' ≠ '<sip:p;lr>'", "cflags: () ≠ ('NAT',)", "expires: '300' ≠ 'permanent'"]
