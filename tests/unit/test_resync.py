"""A resync for 1.x, offline: a real 1.10.5 ``dlg_list_ctx`` reply → the created packets a
primary would have sent → a 1.10.5 Replica holding the same dialogs; the field-by-field
comparison; what MI cannot give."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from harness.experiments.resync import COMPARED, compare, live_dialog, resync, timeout_drift, why_not
from harness.instruments.mi_replies import DialogEntry, parse_dialogs, parse_reply
from pybin.dialog import DIALOG_FIELDS, Command, DlgFlag, DlgState, decode
from pybin.replica import Applied, Replica
from pybin.resync import MI_CANNOT_GIVE, LiveDialog, LiveLeg, created_for, flags_for
from test_mi import ONE

VIP = "udp:10.157.0.100:5060"


def entry() -> DialogEntry:
    return parse_dialogs(parse_reply(ONE))[0]


def test_a_real_dlg_list_ctx_entry_becomes_the_created_a_primary_would_send() -> None:
    packet = created_for(live_dialog(entry()), flags=flags_for("B"))
    assert packet.command == Command.CREATED
    assert (packet.call_id, packet.from_tag, packet.to_tag) == (b"cap-2@harness", b"8198Tag002", b"8197Uas2")
    assert (packet.from_uri, packet.to_uri) == (b"sip:alice@10.157.0.201:5060", b"sip:bob@10.157.0.202:5060")
    assert (packet.h_id, packet.start_ts, packet.state, packet.timeout) == (1861475475, 1795693504, 4, 1795700704)
    # MI labels the caller leg's cseq "callee_cseq" (0) and the callee leg's "caller_cseq" (1):
    # each travels as its own leg's, as replicate_dialog_created pushes them
    assert (packet.caller_cseq, packet.callee_cseq) == (b"0", b"1")
    assert (packet.caller_sock, packet.callee_sock) == (VIP.encode(), VIP.encode())
    assert (packet.caller_contact, packet.callee_contact) == (b"sip:alice@10.157.0.201:5060",
                                                              b"sip:bob@10.157.0.202:5060")
    assert packet.vars == ((b"acct", b"a|b#c\\d"),)
    assert packet.profiles == ((b"caller", b"alice"), (b"inbound", b""))
    assert (packet.user_flags, packet.flags) == (8, DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT)
    # what MI cannot give travels as the resync's stated choice
    assert (packet.callee_from_uri, packet.callee_to_uri) == (b"", b"")
    assert (packet.caller_last_gen_cseq, packet.callee_last_gen_cseq) == (0, 0)
    assert decode(packet.encode()) == packet


def test_a_1_10_5_backup_builds_exactly_that_dialog() -> None:
    replica = Replica([VIP], release="1.10.5")
    packet = created_for(live_dialog(entry()))
    assert isinstance(replica.apply(packet, now=1795693600), Applied)
    held = replica.get(b"cap-2@harness", b"8198Tag002", b"8197Uas2")
    assert held is not None and held.state == DlgState.CONFIRMED
    assert (held.caller_cseq, held.callee_cseq, held.expires_at) == (b"0", b"1", 1795700704)
    assert dict(held.vars) == {b"acct": b"a|b#c\\d"}
    assert sorted(held.profiles) == [(b"caller", b"alice"), (b"inbound", b"")]
    # sent twice (a resync repeated), the second is ignored: a resync is safe to repeat
    assert type(replica.apply(packet, now=1795693601)).__name__ == "Ignored" and len(replica) == 1


def test_create_dialog_flags_and_a_bad_letter() -> None:
    assert flags_for("") == DlgFlag.ISINIT
    assert flags_for("BPp") == DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT | DlgFlag.PING_CALLER | DlgFlag.PING_CALLEE
    with pytest.raises(ValueError, match="create_dialog flag 'x'"):
        flags_for("Bx")


def test_what_mi_cannot_give_names_created_fields() -> None:
    names = {name for name, _ in DIALOG_FIELDS}
    assert set(MI_CANNOT_GIVE) <= names
    assert set(MI_CANNOT_GIVE) >= {"flags", "callee_from_uri", "callee_to_uri", "caller_last_gen_cseq",
                                   "callee_last_gen_cseq"}


class FakeMI:
    def __init__(self, entries: list[DialogEntry]) -> None:
        self.entries = entries
        self.asked: list[dict[str, Any]] = []

    def dlg_list(self, **options: Any) -> list[DialogEntry]:
        self.asked.append(options)
        return self.entries


def test_resync_sends_confirmed_dialogs_with_a_timer_and_says_why_it_skips_others() -> None:
    good = entry()
    early = replace(good, callid="early@h", state=2)
    no_timer = replace(good, callid="notimer@h", timeout=0)
    legless = replace(good, callid="legless@h", callees=())
    sent: list[tuple[bytes, tuple[str, int]]] = []
    mi = FakeMI([good, early, no_timer, legless])
    report = resync(mi, lambda data, addr: sent.append((data, addr)), ("10.0.0.12", 5062),  # type: ignore[arg-type]
                    flags=flags_for("B"))
    assert mi.asked == [{"context": True, "page_size": 40}]
    assert (report.listed, report.sent) == (4, 1)
    assert [decode(d).call_id for d, _ in sent] == [b"cap-2@harness"] and sent[0][1] == ("10.0.0.12", 5062)
    assert set(report.skipped) == {"early@h", "notimer@h", "legless@h"}
    assert "not confirmed" in report.skipped["early@h"] and "timeout 0" in report.skipped["notimer@h"]
    assert report.to_json()["skipped"] == 3 and why_not(good) is None


def test_compare_field_by_field_with_two_seconds_of_mi_rounding_on_the_timeout() -> None:
    primary = entry()
    assert compare([primary], [primary]) == (1, [])
    assert compare([primary], [replace(primary, timeout=primary.timeout + 2)]) == (1, [])
    assert compare([primary], [replace(primary, timeout=primary.timeout - 2)]) == (1, [])
    _, diffs = compare([primary], [replace(primary, timeout=primary.timeout + 3, state=3)])
    assert diffs == ["cap-2@harness: state 4 on the primary, 3 on the backup",
                     "cap-2@harness: timeout 1795700704 on the primary, 1795700707 on the backup"]
    assert compare([primary], []) == (1, ["cap-2@harness: not on the backup"])
    # vars in another order, profiles in another order: the same dialog
    reordered = replace(primary, profiles=tuple(reversed(primary.profiles or ())))
    assert compare([primary], [reordered]) == (1, [])
    assert compare([replace(primary, state=2)], []) == (0, []), "not confirmed: not resent, not compared"
    assert "callee_cseq" in COMPARED and "caller_bind_addr" in COMPARED
    assert timeout_drift([primary], [replace(primary, timeout=primary.timeout - 2)]) == 2
    assert timeout_drift([primary], []) is None


def test_a_live_dialog_can_be_built_by_hand() -> None:
    leg = LiveLeg(b"t", b"sip:a@h", b"5", b"<sip:p;lr>", VIP.encode())
    d = LiveDialog(b"c@h", b"sip:a@h", b"sip:b@h", 1, 4, 0, 100, 200, leg, replace(leg, tag=b"u"))
    packet = created_for(d)
    assert (packet.caller_route_set, packet.callee_route_set, packet.to_tag) == (b"<sip:p;lr>", b"<sip:p;lr>", b"u")


def test_the_command_reads_a_primary_over_mi_and_sends_its_dialogs(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import socket

    from harness import cli
    from test_mi import PAGED, FakeMI as FakeServer

    pages = {b":dlg_list_ctx:\n0\n1\n\n": PAGED, b":dlg_list_ctx:\n1\n1\n\n": PAGED.replace(
        "cap-1@harness", "cap-9@harness").replace("1580:1296918523", "3877:1861475475")}
    server = FakeServer(lambda req: pages.get(req))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    try:
        host, port = server.addr
        code = cli.main(["resync", "--mi", f"{host}:{port}", "--to", "127.0.0.1:%d" % sink.getsockname()[1],
                         "--create-flags", "B", "--page", "1", "--json"])
        received = [decode(sink.recv(65536)) for _ in range(2)]
    finally:
        server.close()
        sink.close()
    assert code == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert (report["listed"], report["sent"], report["skipped"], report["flags"]) == (2, 2, 0, 24)
    assert "flags" in report["not_from_mi"] and "resync: 2 dialogs listed, 2 sent as created" in err
    assert [p.call_id for p in received] == [b"cap-1@harness", b"cap-9@harness"]
    assert all(p.flags == DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT for p in received)


@pytest.mark.parametrize("argv, message", [
    (["--mi", "nohost", "--to", "127.0.0.1:5062"], "--mi nohost: write it HOST:PORT"),
    (["--mi", "127.0.0.1:8080", "--to", "127.0.0.1:99999"], "--to 127.0.0.1:99999: write it HOST:PORT"),
    (["--mi", "127.0.0.1:8080", "--to", "127.0.0.1:5062", "--create-flags", "Z"], "--create-flags: create_dialog flag 'Z'"),
])
def test_the_command_refuses_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                        message: str) -> None:
    from harness import cli

    assert cli.main(["resync", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
