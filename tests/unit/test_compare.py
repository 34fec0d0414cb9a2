"""harness.experiments.compare on literal data taken from a real 1.10.5 record-route call.

The values below are what SIPp, the primary's dlg_list, the BIN packet and a backup
showed for one call of the ``record_route`` scenario; each test also changes one
field to prove the comparison notices.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.experiments.compare import (
    SipDialogError,
    command_states,
    diff_entries,
    diff_message_entry,
    diff_message_sip,
    diff_replica_entry,
    sequence_ok,
    sip_dialog,
    split_header_list,
    uri_of,
)
from harness.instruments.mi_replies import DialogEntry, DialogLeg
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import build_calls
from pybin.dialog import Command, DlgState, make
from pybin.replica import Replica, dlg_hash

VIP = "10.220.0.100"
SOCK = f"udp:{VIP}:5060"
CALL_ID = "1-2440@10.220.0.203"
HOPS = "<sip:hop1@10.220.0.204:5080;lr>,<sip:hop2@10.220.0.204:5080;lr>"

INVITE = (
    "INVITE sip:service@10.220.0.204:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.220.0.203:5070;branch=z9hG4bK-2440-1-0\r\n"
    'From: "harness caller" <sip:caller@10.220.0.203:5070>;tag=2440SIPpTag001\r\n'
    "To: <sip:service@10.220.0.204:5080>\r\n"
    f"Call-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:caller@10.220.0.203:5070>\r\nContent-Length: 0\r\n\r\n")
OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 10.220.0.203:5070;branch=z9hG4bK-2440-1-0\r\n"
    "Record-Route: <sip:hop2@10.220.0.204:5080;lr>\r\n"
    "Record-Route: <sip:hop1@10.220.0.204:5080;lr>\r\n"
    f"Record-Route: <sip:{VIP};lr;ftag=2440SIPpTag001;did=9ea.5effefb5>\r\n"
    'From: "harness caller" <sip:caller@10.220.0.203:5070>;tag=2440SIPpTag001\r\n'
    "To: <sip:service@10.220.0.204:5080>;tag=2439SIPpTag011\r\n"
    f"Call-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:callee@10.220.0.204:5080;transport=UDP>\r\nContent-Length: 0\r\n\r\n")
ACK = (
    "ACK sip:callee@10.220.0.204:5080;transport=UDP SIP/2.0\r\n"
    'From: "harness caller" <sip:caller@10.220.0.203:5070>;tag=2440SIPpTag001\r\n'
    "To: <sip:service@10.220.0.204:5080>;tag=2439SIPpTag011\r\n"
    f"Call-ID: {CALL_ID}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
BYE = ACK.replace("ACK sip", "BYE sip").replace("CSeq: 1 ACK", "CSeq: 2 BYE")


def created(**over: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = dict(
        call_id=CALL_ID.encode(), from_tag=b"2440SIPpTag001", to_tag=b"2439SIPpTag011",
        from_uri=b"sip:caller@10.220.0.203:5070", to_uri=b"sip:service@10.220.0.204:5080",
        h_id=1543438309, start_ts=1795694578, state=DlgState.CONFIRMED_NA,
        caller_sock=SOCK.encode(), callee_sock=SOCK.encode(), caller_cseq=b"0", callee_cseq=b"1",
        caller_route_set=b"", callee_route_set=HOPS.encode(),
        caller_contact=b"sip:caller@10.220.0.203:5070",
        callee_contact=b"sip:callee@10.220.0.204:5080;transport=UDP",
        vars=((b"acct", b"a|b#c\\d"),), profiles=((b"caller", b"caller"), (b"inbound", b"")),
        user_flags=8, flags=24, timeout=1795701778)
    fields.update(over)
    return make(Command.CREATED, **fields)


PRIMARY = DialogEntry(
    h_entry=2793, h_id=1543438309, state=3, user_flags=8, timestart=1795694578,
    timeout=1795701778, callid=CALL_ID, from_uri="sip:caller@10.220.0.203:5070",
    to_uri="sip:service@10.220.0.204:5080",
    caller=DialogLeg("2440SIPpTag001", "sip:caller@10.220.0.203:5070", "0", "", SOCK),
    callees=(DialogLeg("2439SIPpTag011", "sip:callee@10.220.0.204:5080;transport=UDP", "1", HOPS, SOCK),),
    vars={"acct": "a|b#c\\d"}, profiles=(("caller", "caller"), ("inbound", "")))
BACKUP = dataclasses.replace(PRIMARY, h_id=2083494583, profiles=(("inbound", ""), ("caller", "caller")))


def call():  # type: ignore[no-untyped-def]
    msgs = [SipMessage(1.0, "sent", INVITE), SipMessage(1.1, "received", OK),
            SipMessage(1.2, "sent", ACK), SipMessage(2.0, "sent", BYE), SipMessage(2.5, "sent", BYE)]
    (c,) = build_calls(msgs)
    return c


def test_helpers() -> None:
    assert uri_of('"a, b" <sip:x@y;p=1>;tag=2') == "sip:x@y;p=1"
    assert uri_of("sip:x@y;tag=2") == "sip:x@y"
    assert split_header_list(['<sip:a;lr>, "x,y" <sip:b>', "<sip:c>"]) == [
        "<sip:a;lr>", '"x,y" <sip:b>', "<sip:c>"]
    assert dlg_hash(CALL_ID.encode()) == 2793  # the primary's h_entry for this Call-ID


def test_sip_dialog_from_caller_view() -> None:
    sip = sip_dialog(call(), VIP)
    assert (sip.call_id, sip.from_tag, sip.to_tag) == (CALL_ID, "2440SIPpTag001", "2439SIPpTag011")
    assert (sip.from_uri, sip.to_uri) == ("sip:caller@10.220.0.203:5070", "sip:service@10.220.0.204:5080")
    assert sip.callee_route_set == HOPS and sip.caller_route_set == ""
    assert sip.callee_contact == "sip:callee@10.220.0.204:5080;transport=UDP"
    assert sip.caller_cseqs == (1, 2) and sip.callee_cseqs == ()
    with pytest.raises(SipDialogError, match="no 200 OK"):
        sip_dialog(build_calls([SipMessage(1.0, "sent", INVITE)])[0], VIP)
    with pytest.raises(SipDialogError, match="no Record-Route of 10.9.9.9"):
        sip_dialog(call(), "10.9.9.9")


def test_message_against_sip() -> None:
    sip = sip_dialog(call(), VIP)
    assert diff_message_sip(created(), sip, socket=SOCK) == []
    assert diff_message_sip(created(callee_cseq=b"2"), sip, socket=SOCK, callee_cseq=2) == []
    bad = created(callee_route_set=b"<sip:hop2@10.220.0.204:5080;lr>", caller_sock=b"udp:1.2.3.4:5060")
    assert diff_message_sip(bad, sip, socket=SOCK) == [
        "caller_sock: 'udp:1.2.3.4:5060' != 'udp:10.220.0.100:5060'",
        f"callee_route_set: '<sip:hop2@10.220.0.204:5080;lr>' != '{HOPS}'"]
    assert diff_message_sip(make(Command.DELETED, call_id=CALL_ID.encode(), from_tag=b"2440SIPpTag001",
                                 to_tag=b"x"), sip, socket=SOCK) == ["to_tag: 'x' != '2439SIPpTag011'"]


def test_message_against_primary_and_backup_entries() -> None:
    msg = created()
    assert diff_message_entry(msg, PRIMARY) == []
    assert diff_message_entry(msg, dataclasses.replace(PRIMARY, timeout=1795701779)) == []  # MI slack
    assert diff_message_entry(msg, BACKUP, check_h_id=False, profiles="reversed") == []
    assert diff_message_entry(msg, BACKUP) == [
        "h_id: 2083494583 != 1543438309",
        "profiles: (('inbound', ''), ('caller', 'caller')) != (('caller', 'caller'), ('inbound', ''))"]
    late = dataclasses.replace(PRIMARY, timeout=1795701780, vars={"acct": "x"})
    assert diff_message_entry(msg, late) == [
        "timeout: 1795701780 is more than 1s from 1795701778",
        "vars: {'acct': 'x'} != {'acct': 'a|b#c\\\\d'}"]


def test_entries_backup_against_primary() -> None:
    assert diff_entries(BACKUP, PRIMARY, profiles="reversed") == []
    assert diff_entries(BACKUP, PRIMARY, profiles="any") == []
    assert diff_entries(BACKUP, PRIMARY) == [
        "profiles: (('inbound', ''), ('caller', 'caller')) != (('caller', 'caller'), ('inbound', ''))"]
    moved = dataclasses.replace(BACKUP, caller=dataclasses.replace(PRIMARY.caller, cseq="3"))
    assert diff_entries(moved, PRIMARY, profiles="reversed") == [
        f"caller: {moved.caller!r} != {PRIMARY.caller!r}"]
    assert diff_entries(BACKUP, PRIMARY, ignore=(), profiles="reversed") == ["h_id: 2083494583 != 1543438309"]
    # each node's MI timeout is a second off the packet's, either way: two apart is the same
    for seconds, diffs in ((-2, []), (2, []), (3, ["timeout: 1795701781 is more than 2s from 1795701778"])):
        other = dataclasses.replace(BACKUP, timeout=PRIMARY.timeout + seconds)
        assert diff_entries(other, PRIMARY, profiles="reversed") == diffs


def test_replica_against_backup_entry() -> None:
    replica = Replica([SOCK])
    replica.apply(created(), now=1795694578)
    (dlg,) = list(replica)
    assert diff_replica_entry(dlg, BACKUP) == []
    assert diff_replica_entry(dlg, BACKUP, check_h_id=True) == ["h_id: 2083494583 != 1543438309"]
    assert diff_replica_entry(dlg, PRIMARY) == [
        "profiles: (('caller', 'caller'), ('inbound', '')) != (('inbound', ''), ('caller', 'caller'))"]


def test_state_sequences() -> None:
    deleted = make(Command.DELETED, call_id=b"c")
    upd = make(Command.UPDATED, state=DlgState.CONFIRMED)
    seq = command_states([created(), upd, deleted])
    assert seq == [(1, 3), (2, 4), (3, None)]
    assert sequence_ok(seq)
    # fault: a primary that never replicates created (issue 10, point 8) — before,
    # both of these were accepted
    assert not sequence_ok(seq[1:])
    assert not sequence_ok([(2, 4), (2, 4), (3, None)], middle=[(2, 4), (2, 4)])
    # 1.10.5's own lost-created race is accepted only when asked for (the caller then
    # bounds how many calls lack created)
    assert sequence_ok(seq[1:], created_required=False)
    assert not sequence_ok([(2, 4), (2, 4), (3, None)], created_required=False)
    assert not sequence_ok([(1, 3), (3, None)])
    assert not sequence_ok([(1, 3), (2, 4), (2, 4), (3, None)])
    assert sequence_ok([(2, 4), (1, 3), (3, None)])  # created overtaken by the ACK's updated
    assert sequence_ok([(2, 4), (1, 3), (2, 4), (3, None)], middle=[(2, 4), (2, 4)])
    assert not sequence_ok([(2, 4), (2, 4), (1, 3), (3, None)], middle=[(2, 4), (2, 4)])
    assert not sequence_ok([(1, 3), (1, 3), (2, 4), (3, None)])
    assert not sequence_ok([(1, 3), (2, 4)])
    assert sequence_ok([(2, 4), (1, 4), (3, None)])  # serialised after the ACK: state 4
    assert not sequence_ok([(1, 2), (2, 4), (3, None)])
