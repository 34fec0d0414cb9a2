"""Offline checks against the usrloc corpus: real 1.11.11 and 2.1.5 registration traffic.

``harness record --registrations`` ran every REGISTER scenario through a live pair of
each release and left ``tests/corpus/recorded/usrloc/<release>/`` (``capture.pcap``,
``expected.jsonl``, ``meta.json``). Without any OpenSIPS, these tests hold pybin to
those bytes: every ``ul`` packet decodes to what an independent struct reader (written
from ``ureplication.c``'s pushes, not from pybin's tables) finds, re-encodes
byte-exact (from the message and from its JSON line), the commands per AOR are what
the scenarios replicate, each contact packet matches the REGISTER it came from, and
pybin's registrar fed the capture holds the AORs the real backup held.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.instruments.sip import SipMessage, sip_datagram
from harness.instruments.sipp import REGISTRATIONS
from pybin import usrloc
from pybin.jsonio import packet_from_json, packet_to_json
from pybin.pcap import CapturedDatagram, read_datagrams, read_udp
from pybin.registrar import Applied, Ignored, Registrar
from pybin.wire import MARKER, parse_header

USRLOC = Path(__file__).parent / "recorded" / "usrloc"
#: the releases whose registrations the corpus must hold (the newest of each branch)
RELEASES = ("1.11.11", "2.1.5")
FILES = ("capture.pcap", "expected.jsonl", "meta.json")
#: replicate_ucontact_insert / _update push, in this order (1.11.11 ureplication.c):
#: str domain, aor, contact, callid, user_agent, path, attr, received, instance; the
#: bytes of time_t expires and qvalue_t q as strings; str sock; int cseq, flags, cflags,
#: methods; time_t last_modified as a string. _delete: domain, aor, contact, callid, cseq.
CONTACT = "sssssssssrrsiiiir"
DELETE = "ssssi"
RECORD = "ss"


@dataclass(frozen=True)
class Recording:
    release: str
    meta: dict[str, Any]
    lines: list[str]
    bin: list[CapturedDatagram]
    sip: list[SipMessage]


@cache
def load(release: str) -> Recording:
    folder = USRLOC / release
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        pytest.fail(f"no usrloc recording of {release} ({', '.join(missing)} missing in {folder}): run "
                    f"`harness record --registrations` with a {release} binary or image and commit it")
    sip = [m for d in read_udp(folder / "capture.pcap") if (m := sip_datagram(d.data, d.timestamp))]
    return Recording(release, json.loads((folder / "meta.json").read_text()),
                     (folder / "expected.jsonl").read_text().splitlines(),
                     [d for d in read_datagrams(folder / "capture.pcap") if d.data.startswith(MARKER)], sip)


def raw_fields(data: bytes) -> tuple[str, int, list[Any]]:
    """Module, command and fields read with struct alone (little-endian, x86-64 sender)."""
    (name_len,) = struct.unpack_from("<i", data, 8)
    module = data[12:12 + name_len].decode()
    at = 12 + name_len
    (command,) = struct.unpack_from("<i", data, at)
    at += 4
    layout = {1: RECORD, 2: RECORD, 3: CONTACT, 4: CONTACT, 5: DELETE}[command]
    out: list[Any] = []
    for kind in layout:
        if kind == "i":  # bin_push_int's 4 bytes; pybin reads them unsigned (methods: ALL_METHODS)
            out.append(struct.unpack_from("<I", data, at)[0])
            at += 4
            continue
        (length,) = struct.unpack_from("<i", data, at)
        raw = data[at + 4:at + 4 + length]
        at += 4 + length
        out.append(raw if kind == "s" else int.from_bytes(raw, "little", signed=True))
    assert at == len(data), "bytes after the last field"
    return module, command, out


@pytest.mark.parametrize("release", RELEASES)
def test_the_recording_is_of_its_release_and_complete(release: str) -> None:
    rec = load(release)
    assert rec.meta["opensips_version"] == release
    assert set(rec.meta["scenarios"]) == set(REGISTRATIONS)
    users = rec.meta["users_per_scenario"]
    assert users >= 1
    want = users * sum(len(s.replicates) for s in REGISTRATIONS.values())
    assert len(rec.bin) == len(rec.lines) == rec.meta["packets"]["bin"] == want
    # the primary's packets to the backup only (no peer was configured)
    assert rec.meta["bin_flows"] == [f"{rec.meta['addresses']['primary']} -> {rec.meta['addresses']['backup']}"]
    assert {f"{d.src[0]}:{d.src[1]} -> {d.dst[0]}:{d.dst[1]}" for d in rec.bin} == set(rec.meta["bin_flows"])


@pytest.mark.parametrize("release", RELEASES)
def test_every_ul_packet_decodes_as_struct_reads_it_and_reencodes_byte_exact(release: str) -> None:
    rec = load(release)
    for d, line in zip(rec.bin, rec.lines):
        module, command, raw = raw_fields(d.data)
        assert module == "ul"
        msg = usrloc.decode(d.data)
        assert int(msg.command) == command
        assert [f.value if isinstance(f, usrloc.RawInt) else f for f in msg] == raw
        assert all(f.size == {"expires": 8, "q": 4, "last_modified": 8}[name]
                   for name, f in zip(msg._fields, msg) if isinstance(f, usrloc.RawInt))
        assert msg.encode() == d.data
        assert json.dumps(packet_to_json(d.data)) == line
        assert packet_from_json(json.loads(line)) == d.data


@pytest.mark.parametrize("release", RELEASES)
def test_commands_per_aor_are_what_each_scenario_replicates(release: str) -> None:
    rec = load(release)
    raw: dict[str, list[str]] = {}
    for d in rec.bin:
        _, command, fields = raw_fields(d.data)
        raw.setdefault(fields[1].decode(), []).append(usrloc.UlCommand(command).word)
    assert raw == rec.meta["commands_per_aor"]
    for name, scenario in rec.meta["scenarios"].items():
        assert scenario["replicates"] == list(REGISTRATIONS[name].replicates)
        for user in scenario["users"]:
            assert raw[user] == scenario["replicates"], (name, user)


@pytest.mark.parametrize("release", RELEASES)
def test_each_contact_packet_is_the_register_it_came_from(release: str) -> None:
    """Call-ID and CSeq name a REGISTER the proxy got; its Contact lists the URI, its
    User-Agent is the packet's; the time it was saved lies between the REGISTER and
    its 200 OK; the socket is the VIP's."""
    rec = load(release)
    vip = rec.meta["addresses"]["vip"]
    requests = {(m.call_id, m.cseq[0]): m for m in rec.sip if not m.is_response and m.method == "REGISTER"}
    oks = {(m.call_id, m.cseq[0]): m.t for m in rec.sip if m.code == 200 and m.cseq[1] == "REGISTER"}
    checked = 0
    for d in rec.bin:
        msg = usrloc.decode(d.data)
        if not isinstance(msg, (usrloc.ContactInserted, usrloc.ContactUpdated)):
            continue
        key = (msg.call_id.decode(), msg.cseq)
        request = requests[key]
        uris = [re.match(r"<([^>]*)>", v.strip())[1] for v in request.headers("Contact")]  # type: ignore[index]
        assert msg.contact.decode() in uris
        assert msg.user_agent.decode() == request.header("User-Agent")
        assert int(request.t) - 1 <= msg.last_modified.value <= oks[key] + 1
        assert msg.sock.decode() == f"udp:{vip}"
        checked += 1
    users = rec.meta["users_per_scenario"]
    assert checked == users * sum(s.replicates.count("contact_insert") + s.replicates.count("contact_update")
                                  for s in REGISTRATIONS.values())


@pytest.mark.parametrize("release", RELEASES)
def test_the_registrar_replica_holds_the_aors_the_backup_held(release: str) -> None:
    rec = load(release)
    reg = Registrar(["location"], [f"udp:{rec.meta['addresses']['vip']}"], release=release)
    outcomes = [reg.apply_packet(parse_header(d.data), now=int(d.timestamp)) for d in rec.bin]
    assert all(isinstance(o, (Applied, Ignored)) for o in outcomes)
    backup = rec.meta["usrloc_stats"]["backup"]
    # AORs do not depend on when the backup's timer removed expiry's 2 s bindings
    assert reg.statistics()["location-users"] == backup["location-users"] == \
        rec.meta["usrloc_stats"]["primary"]["location-users"]
