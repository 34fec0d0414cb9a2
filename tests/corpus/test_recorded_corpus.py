"""Offline checks against the recorded corpus: real OpenSIPS 1.10.5 bytes from every scenario.

``harness record`` ran each harness scenario through a live primary/backup pair and
left, per scenario, ``capture.pcap`` (SIP + BIN), ``expected.jsonl`` (``pybin decode
--json`` of every BIN packet) and ``meta.json``. These tests need no OpenSIPS, so CI
machines still check pybin against real bytes: decoding is exact, re-encoding is
byte-exact, every dialog packet matches the SIP dialog it came from, and pybin's
reference replica, fed the same packets, ends where the real backup ended.

A scenario added to ``harness.instruments.sipp.SCENARIOS`` without a recording fails here:
record it with ``harness record --scenario NAME``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from _independent import dialog_bytes

from harness.instruments.sip import SipMessage, sip_datagram
from harness.instruments.sipp import SCENARIOS
from pybin.dialog import (
    DialogCreated,
    DialogDeleted,
    DialogUpdated,
    DlgState,
    decode_packet,
)
from pybin.jsonio import packet_from_json, packet_to_json
from pybin.pcap import CapturedDatagram, read_datagrams, read_udp
from pybin.replica import Applied, Replica
from pybin.wire import parse_header

RECORDED = Path(__file__).parent / "recorded"
FILES = ("capture.pcap", "expected.jsonl", "meta.json")
#: scenarios whose calls reach 200 OK (and so are replicated)
CONFIRMED = [s for s in SCENARIOS if s != "cancel"]


@dataclass(frozen=True)
class Recording:
    name: str
    meta: dict[str, Any]
    expected: list[dict[str, Any]]
    expected_lines: list[str]
    bin: list[CapturedDatagram]
    sip: list[tuple[CapturedDatagram, SipMessage]]

    @property
    def vip(self) -> str:
        return self.meta["addresses"]["vip"]

    def host(self, who: str) -> str:
        return self.meta["addresses"][who].rsplit(":", 1)[0]

    def dialogs(self, command: int | None = None) -> list[Any]:
        msgs = [decode_packet(parse_header(d.data)) for d in self.bin]
        return [m for m in msgs if command is None or int(m.command) == command]

    def sip_requests(self, method: str) -> list[tuple[CapturedDatagram, SipMessage]]:
        return [(d, m) for d, m in self.sip if not m.is_response and m.method == method]


@cache
def load(name: str) -> Recording:
    folder = RECORDED / name
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        pytest.fail(f"scenario {name!r} has no recording ({', '.join(missing)} missing in {folder}): "
                    f"run `harness record --scenario {name}` and commit the files")
    lines = (folder / "expected.jsonl").read_text().splitlines()
    sip = []
    for item in read_udp(folder / "capture.pcap"):
        if (msg := sip_datagram(item.data, item.timestamp)) is not None:
            sip.append((item, msg))
    return Recording(name, json.loads((folder / "meta.json").read_text()),
                     [json.loads(line) for line in lines], lines,
                     list(read_datagrams(folder / "capture.pcap")), sip)


def _uri(header: str | None) -> str:
    """The URI of a From/To header value (inside <> when bracketed)."""
    assert header
    m = re.search(r"<([^>]*)>", header)
    return m.group(1) if m else header.split(";")[0].strip()


COMMANDS = {1: "created", 2: "updated", 3: "deleted"}
#: dlg->flags the template's create_dialog("B") leaves on the wire, from 1.10.5's
#: dlg_hash.h: DLG_FLAG_BYEONTIMEOUT (1<<3) | DLG_FLAG_ISINIT (1<<4)
WIRE_FLAGS = (1 << 3) | (1 << 4)


def raw_command(data: bytes) -> tuple[str, int]:
    """Module name and command read with struct alone (docs/PROTOCOL.md "Packet")."""
    (name_len,) = struct.unpack_from("<i", data, 8)
    (command,) = struct.unpack_from("<i", data, 12 + name_len)
    return data[12:12 + name_len].decode(), command


def raw_call_id(data: bytes) -> str:
    """The first dialog field (Call-ID), read with struct alone."""
    (name_len,) = struct.unpack_from("<i", data, 8)
    at = 12 + name_len + 4
    (length,) = struct.unpack_from("<i", data, at)
    return data[at + 4:at + 4 + length].decode()


def raw_state(data: bytes) -> int:
    """Field 8 (state) of a created/updated: after five strings, h_id and start_ts."""
    (name_len,) = struct.unpack_from("<i", data, 8)
    at = 12 + name_len + 4
    for _ in range(5):
        (length,) = struct.unpack_from("<i", data, at)
        at += 4 + length
    (state,) = struct.unpack_from("<i", data, at + 8)
    return int(state)


def sip_confirmed_calls(rec: Recording) -> list[str]:
    """Calls whose initial INVITE got a 200 OK out of the proxy (the VIP), from SIP alone."""
    return sorted({m.call_id for d, m in rec.sip if m.code == 200 and m.cseq == (1, "INVITE")
                   and f"{d.src[0]}:{d.src[1]}" == rec.vip})


def sip_expected_commands(rec: Recording, call_id: str) -> list[str]:
    """What 1.10.5 replicates for a confirmed call, from its SIP messages at the proxy
    (docs/PROTOCOL.md "When a 1.10.5 primary sends"): created for the 200 OK, updated for
    the ACK and for each re-INVITE's 200 OK, deleted for the BYE."""
    to_proxy = [m for d, m in rec.sip if m.call_id == call_id and not m.is_response
                and f"{d.dst[0]}:{d.dst[1]}" == rec.vip]
    reinvites = {m.cseq[0] for m in to_proxy if m.method == "INVITE" and m.cseq[0] > 1}
    return ["created", "updated", *["updated"] * len(reinvites), "deleted"]


def check_commands(rec: Recording) -> None:
    """Commands per call read from the raw bytes = meta's = what the SIP implies.

    meta.json's commands_per_call was written by `harness record` from pybin's decode,
    so comparing it with expected.jsonl (also pybin's) compared pybin with pybin.
    """
    raw: dict[str, list[str]] = {}
    for d in rec.bin:
        module, command = raw_command(d.data)
        assert module == "dialog", module
        raw.setdefault(raw_call_id(d.data), []).append(COMMANDS[command])
    assert raw == rec.meta["commands_per_call"]
    if raw:  # every call of a scenario replicates the same sequence
        assert all(seq == rec.meta["commands_sequence"] for seq in raw.values()), raw
    states: dict[str, list[int]] = {}
    for d in rec.bin:
        if raw_command(d.data)[1] != 3:
            states.setdefault(raw_call_id(d.data), []).append(raw_state(d.data))
    assert states == {k: v for k, v in rec.meta["states_per_call"].items() if v}
    confirmed = sip_confirmed_calls(rec)
    assert confirmed == sorted(rec.meta["confirmed_call_ids"])
    assert sorted(raw) == confirmed  # nothing for a call that never reached 200 OK
    for call_id in confirmed:
        assert sorted(raw[call_id]) == sorted(sip_expected_commands(rec, call_id)), call_id
        assert raw[call_id][-1] == "deleted", call_id


def check_replicated(rec: Recording) -> None:
    """A confirmed scenario's recording holds every call, confirmed and replicated.

    Without this, the per-call loops below pass on a recording with no calls or no BIN
    packets at all.
    """
    confirmed = sip_confirmed_calls(rec)
    assert len(confirmed) == rec.meta["calls"] >= 1, (confirmed, rec.meta["calls"])
    assert confirmed == sorted(rec.meta["confirmed_call_ids"])
    replicated = {raw_call_id(d.data) for d in rec.bin}
    assert replicated == set(confirmed), (sorted(replicated), confirmed)


# -- the corpus covers every scenario ---------------------------------------------------

def test_every_scenario_has_a_recording() -> None:
    # usrloc/ holds the registration corpus (tests/corpus/test_recorded_usrloc.py)
    recorded = {p.name for p in RECORDED.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"usrloc"}
    assert recorded == set(SCENARIOS), (
        f"recorded {sorted(recorded)} but harness.instruments.sipp.SCENARIOS is {sorted(SCENARIOS)}: "
        "run `harness record` for the missing ones / delete the stale ones")


@pytest.mark.parametrize("name", SCENARIOS)
def test_meta_describes_the_recording(name: str) -> None:
    rec = load(name)
    meta = rec.meta
    assert meta["scenario"] == name
    assert meta["opensips_version"] == "1.10.5"
    assert meta["backend"] in ("docker", "local")
    assert meta["calls_completed"] == meta["calls"] >= 1
    assert meta["packets"] == {"bin": len(rec.bin), "sip": len(rec.sip)}
    check_commands(rec)
    # every BIN packet went from the primary to the backup, nowhere else
    primary, backup = meta["addresses"]["primary"], meta["addresses"]["backup"]
    assert {(f"{d.src[0]}:{d.src[1]}", f"{d.dst[0]}:{d.dst[1]}") for d in rec.bin} <= {(primary, backup)}
    # the real backup took every packet and ended with no dialog
    delta = meta["backup_stats_delta"]
    assert (delta["create_recv"], delta["update_recv"], delta["delete_recv"]) == tuple(
        sum(1 for o in rec.expected if o["command"] == c) for c in (1, 2, 3))
    assert meta["backup_dialogs_after"] == 0
    assert delta["active_dialogs"] == 0


# -- pybin reads the bytes exactly as recorded --------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_decoding_the_capture_gives_expected_jsonl(name: str) -> None:
    rec = load(name)
    assert [json.dumps(packet_to_json(d.data)) for d in rec.bin] == rec.expected_lines
    assert all(obj["checksum_ok"] for obj in rec.expected)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_packet_reencodes_byte_exact(name: str) -> None:
    rec = load(name)
    for item, obj in zip(rec.bin, rec.expected, strict=True):
        assert packet_from_json({k: v for k, v in obj.items() if k != "hex"}) == item.data
        assert decode_packet(parse_header(item.data)).encode() == item.data


# -- each packet matches the SIP dialog it came from -----------------------------------------

@pytest.mark.parametrize("name", CONFIRMED)
def test_confirmed_scenarios_replicated_every_call(name: str) -> None:
    check_replicated(load(name))


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_packet_is_rebuilt_by_an_independent_encoder(name: str) -> None:
    """pybin's decoded fields, laid out again by harness/conformance/_independent.py (struct + zlib,
    no pybin code), give the recorded bytes: pybin decoded them into the right fields,
    not merely into something its own encoder turns back into the same bytes."""
    for item in load(name).bin:
        msg = decode_packet(parse_header(item.data))
        assert dialog_bytes(int(msg.command), msg) == item.data


@pytest.mark.parametrize("name", CONFIRMED)
def test_dialog_fields_match_the_sip_dialog(name: str) -> None:
    check_fields(load(name))


def check_fields(rec: Recording) -> None:
    """Every replicated field against the SIP messages and the template, call by call."""
    check_replicated(rec)
    settings = rec.meta["dialog_settings"]
    sock = f"udp:{rec.vip}"
    for call_id in rec.meta["confirmed_call_ids"]:
        invite = next(m for _, m in rec.sip_requests("INVITE") if m.call_id == call_id and m.cseq[0] == 1)
        ok = next(m for d, m in rec.sip if m.call_id == call_id and m.code == 200
                  and m.cseq == (1, "INVITE") and f"{d.src[0]}:{d.src[1]}" == rec.vip)
        packets = [m for m in rec.dialogs() if m.call_id == call_id.encode()]
        kinds = [type(m) for m in packets]
        assert kinds[0] is DialogCreated and kinds[-1] is DialogDeleted
        assert set(kinds[1:-1]) == {DialogUpdated}
        created, confirmed = packets[0], packets[1]
        assert created.state == DlgState.CONFIRMED_NA and confirmed.state == DlgState.CONFIRMED
        for msg in packets:
            assert (msg.from_tag, msg.to_tag) == (invite.from_tag.encode(), ok.to_tag.encode())  # type: ignore[union-attr]
        reinvite_cseqs = sorted({m.cseq[0] for _, m in rec.sip_requests("INVITE")
                                 if m.call_id == call_id and m.cseq[0] > 1})
        # the callee leg's cseq: the INVITE's, then each re-INVITE's as it is replicated
        assert [m.callee_cseq for m in packets[:-1]] == [b"1", b"1", *(str(c).encode() for c in reinvite_cseqs)]
        for msg in packets[:-1]:
            assert msg.caller_cseq == b"0"  # the caller leg's: 1.10 starts it at 0; no request from the callee
            assert (msg.callee_from_uri, msg.callee_to_uri) == (b"", b"")  # no From/To mangling
            assert msg.flags == WIRE_FLAGS
            assert (msg.caller_last_gen_cseq, msg.callee_last_gen_cseq) == (0, 0)  # nothing generated locally
            assert msg.from_uri.decode() == _uri(invite.header("From"))
            assert msg.to_uri.decode() == _uri(invite.header("To"))
            assert msg.caller_sock.decode() == msg.callee_sock.decode() == sock
            assert msg.caller_contact.decode() == _uri(invite.header("Contact"))
            assert msg.callee_contact.decode() == _uri(ok.header("Contact"))
            assert msg.vars == ((b"acct", settings["acct"].encode()),)
            assert dict(msg.profiles) == {settings["profile_with_value"].encode(): b"caller",
                                          settings["profile_no_value"].encode(): b""}
            assert msg.user_flags == 1 << settings["flag"]
            assert msg.timeout - msg.start_ts == settings["timeout"]
            assert abs(msg.start_ts - ok.t) <= 1
            assert msg.h_id == created.h_id and msg.start_ts == created.start_ts


def test_cancel_replicates_nothing() -> None:
    rec = load("cancel")
    assert rec.bin == [] and rec.expected == []
    assert rec.meta["confirmed_call_ids"] == []
    assert len(rec.sip_requests("CANCEL")) >= 2 * rec.meta["calls"]  # caller → proxy → callee
    assert sum(1 for _, m in rec.sip if m.code == 487) >= 2 * rec.meta["calls"]
    assert not any(m.code == 200 and m.cseq[1] == "INVITE" for _, m in rec.sip)
    assert all(v == 0 for k, v in rec.meta["primary_stats_delta"].items() if k.endswith("_sent"))


def test_basic_caller_hangs_up() -> None:
    rec = load("basic")
    assert rec.meta["commands_sequence"] == ["created", "updated", "deleted"]
    byes = rec.sip_requests("BYE")
    assert byes and all(d.src[0] in (rec.host("caller"), rec.vip.split(":")[0]) for d, _ in byes)
    assert any(d.src[0] == rec.host("caller") for d, _ in byes)


def test_callee_bye_is_sent_by_the_callee_and_deletes() -> None:
    rec = load("callee_bye")
    assert rec.meta["commands_sequence"] == ["created", "updated", "deleted"]
    from_callee = [m for d, m in rec.sip_requests("BYE") if d.src[0] == rec.host("callee")]
    assert sorted(m.call_id for m in from_callee) == sorted(rec.meta["confirmed_call_ids"])
    for bye in from_callee:
        deleted = next(m for m in rec.dialogs(3) if m.call_id == bye.call_id.encode())
        # the BYE travels callee → caller: its From tag is the dialog's to_tag
        assert bye.from_tag == deleted.to_tag.decode()


def test_reinvite_updates_the_cseq() -> None:
    rec = load("reinvite")
    assert rec.meta["commands_sequence"] == ["created", "updated", "updated", "deleted"]
    assert any(m.cseq == (2, "INVITE") for _, m in rec.sip_requests("INVITE"))
    for call_id in rec.meta["confirmed_call_ids"]:
        updates = [m for m in rec.dialogs(2) if m.call_id == call_id.encode()]
        # the ACK confirms at cseq 1; the re-INVITE (CSeq 2) moves it (field 12 in 1.10)
        assert [(u.state, u.callee_cseq) for u in updates] == [
            (DlgState.CONFIRMED, b"1"), (DlgState.CONFIRMED, b"2")]


def test_long_headers_call_id_survives_intact() -> None:
    rec = load("long_headers")
    check_replicated(rec)  # else the loop below passes on a recording without calls
    for call_id in rec.meta["confirmed_call_ids"]:
        assert len(call_id) > 1000 and call_id.startswith("cid0000.cid0001.")
        invite = next(m for _, m in rec.sip_requests("INVITE") if m.call_id == call_id)
        assert invite.call_id == call_id
        packets = [m for m in rec.dialogs() if m.call_id == call_id.encode()]
        assert len(packets) == 3
        assert packets[0].from_uri.decode() == _uri(invite.header("From"))


def test_record_route_callee_route_set_has_the_two_extra_hops() -> None:
    rec = load("record_route")
    check_replicated(rec)  # else the loop below passes on a recording without calls
    callee = rec.meta["addresses"]["callee"]
    hops = f"<sip:hop1@{callee};lr>,<sip:hop2@{callee};lr>"
    for call_id in rec.meta["confirmed_call_ids"]:
        ok = next(m for d, m in rec.sip if m.call_id == call_id and m.code == 200
                  and m.cseq == (1, "INVITE") and d.src[0] == rec.host("callee"))
        rr = ok.headers("Record-Route")
        assert rr[:2] == [f"<sip:hop2@{callee};lr>", f"<sip:hop1@{callee};lr>"]
        for msg in rec.dialogs():
            if msg.call_id == call_id.encode() and not isinstance(msg, DialogDeleted):
                assert msg.callee_route_set.decode() == hops
                assert msg.caller_route_set == b""


# -- pybin's replica ends where the real backup ended --------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_replica_fed_the_capture_ends_like_the_backup(name: str) -> None:
    rec = load(name)
    replica = Replica([f"udp:{rec.vip}"])
    for item in rec.bin:
        outcome = replica.apply_packet(parse_header(item.data), now=int(item.timestamp))
        assert isinstance(outcome, Applied), outcome
    assert len(replica) == 0  # every call completed: every dialog ended
    stats = replica.stats.as_dict()
    delta = rec.meta["backup_stats_delta"]
    for key in ("create_recv", "update_recv", "delete_recv", "processed_dialogs", "active_dialogs"):
        assert stats[key] == delta[key], key


@pytest.mark.parametrize("name", CONFIRMED)
def test_replica_holds_each_confirmed_dialog_until_its_delete(name: str) -> None:
    rec = load(name)
    replica = Replica([f"udp:{rec.vip}"])
    seen = set()
    for item in rec.bin:
        packet = parse_header(item.data)
        msg = decode_packet(packet)
        if isinstance(msg, DialogDeleted):
            held = replica.get(msg.call_id, msg.from_tag, msg.to_tag)
            assert held is not None and held.state == DlgState.CONFIRMED
            seen.add(msg.call_id.decode())
        replica.apply_packet(packet, now=int(item.timestamp))
        if isinstance(msg, DialogDeleted):
            assert replica.get(msg.call_id, msg.from_tag, msg.to_tag) is None
    assert seen == set(rec.meta["confirmed_call_ids"])


# -- fault injection: each check above fails on the recording it exists to reject -------
# (issue 10, point 7: the checks used to compare pybin with pybin, skip flags / cseqs /
# callee URIs / last_gen_cseq, and pass on a recording without calls or BIN packets)


def _with_packet(rec: Recording, index: int, **fields: Any) -> Recording:
    """``rec`` with BIN packet ``index`` re-encoded with ``fields`` changed."""
    item = rec.bin[index]
    msg = decode_packet(parse_header(item.data))
    data = msg._replace(**fields).encode()  # type: ignore[union-attr]
    return dataclasses.replace(rec, bin=[*rec.bin[:index], dataclasses.replace(item, data=data),
                                         *rec.bin[index + 1:]])


@pytest.mark.parametrize("name", ["long_headers", "record_route"])
def test_fault_a_recording_without_bin_packets_fails(name: str) -> None:
    rec = load(name)
    empty = dataclasses.replace(rec, bin=[], expected=[], expected_lines=[])
    with pytest.raises(AssertionError, match="set()"):
        check_replicated(empty)
    with pytest.raises(AssertionError):
        check_fields(empty)


def test_fault_a_recording_without_calls_fails() -> None:
    rec = load("long_headers")
    meta = {**rec.meta, "confirmed_call_ids": [], "commands_per_call": {}}
    nothing = dataclasses.replace(rec, bin=[], sip=[], expected=[], meta=meta)
    with pytest.raises(AssertionError, match=r"\(\[\], 2\)"):
        check_replicated(nothing)


def test_fault_meta_from_a_pybin_that_mislabels_commands_fails() -> None:
    """A recorder whose pybin read created as updated and back writes a self-consistent
    expected.jsonl and meta.json; only the raw bytes and the SIP give it away."""
    rec = load("basic")
    swap = {"created": "updated", "updated": "created", "deleted": "deleted"}
    meta = {**rec.meta, "commands_per_call": {k: [swap[c] for c in v]
                                              for k, v in rec.meta["commands_per_call"].items()}}
    with pytest.raises(AssertionError):
        check_commands(dataclasses.replace(rec, meta=meta))


@pytest.mark.parametrize("field, value", [
    ("flags", WIRE_FLAGS | 1), ("caller_cseq", b"1"), ("callee_cseq", b"2"),
    ("callee_from_uri", b"sip:mangled@x"), ("callee_to_uri", b"sip:mangled@x"),
    ("caller_last_gen_cseq", 5), ("callee_last_gen_cseq", 5), ("h_id", 12345),
])
def test_fault_a_field_off_the_sip_dialog_fails(field: str, value: Any) -> None:
    rec = load("reinvite")
    index = next(i for i, d in enumerate(rec.bin) if raw_command(d.data)[1] == 2)
    check_fields(rec)  # the recording itself passes
    with pytest.raises(AssertionError):
        check_fields(_with_packet(rec, index, **{field: value}))
