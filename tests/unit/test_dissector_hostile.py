"""Hostile input for the Wireshark dissector: flagged, never a Lua error.

A capture of the robustness catalogue (harness/conformance/test_robustness.py,
tests/unit/test_endpoint.py), each rule where pybin is stricter than 1.10.5, the same
for usrloc's ul packets (cut fields, bad lengths, raw C integers of the wrong size), and
seeded random mutants of the corpus: 600 of the dialog packets, 400 of the ul packets.
tshark must exit 0 and print no Lua error; where
pybin refuses a datagram the dissector flags it Malformed, where pybin accepts one it
shows the same fields and no Malformed flag. Plus Decode As on a wrong marker, and
captures cut short by a snaplen (shown as far as they go, blamed on the capture).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest
from _tshark import (
    CAPTURES,
    MALFORMED,
    TOP,
    Node,
    assert_same,
    needs_tshark,
    shown,
    tshark,
    view,
)

from pybin import DlgState, PacketBuilder, make, usrloc
from pybin.dialog import DIALOG_FIELDS
from pybin.errors import RemoteProtocolError
from pybin.jsonio import packet_to_json
from pybin.payloads import PAYLOADS
from pybin.pcap import CapturedDatagram, read_datagrams, write_pcap
from pybin.usrloc import CONTACT_FIELDS, RAW, RAW_SIZES, RawInt
from pybin.wire import PacketReader, checksum, parse_header

#: the largest UDP payload IPv4 carries
MAX_UDP4 = 65535 - 20 - 8


def reseal(data: bytes) -> bytes:
    return data[:4] + checksum(data[8:]).to_bytes(4, "little") + data[8:] if len(data) >= 8 else data


def u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


def catalogue() -> list[tuple[str, bytes, str | None]]:
    """(what, datagram, the expert item the dissector must add): the robustness
    catalogue of harness/conformance/test_robustness.py and tests/unit/test_endpoint.py,
    and each rule where pybin is stricter than 1.10.5."""
    now = 1_800_000_000
    foreign = dict(call_id=b"hostile@harness", from_tag=b"hf", to_tag=b"ht", from_uri=b"sip:a@h",
                   to_uri=b"sip:b@h", state=DlgState.CONFIRMED, caller_sock=b"udp:10.0.0.100:5060",
                   callee_sock=b"udp:192.0.2.9:5060", start_ts=now, timeout=now + 60)
    good = make(1, **foreign).encode()
    five = PacketBuilder(b"dialog", 1)
    for value in (b"cut@harness", b"f", b"t", b"sip:a@h", b"sip:b@h"):
        five.push_str(value)
    past_end = five.finish() + u32(7) * 3 + u32(60000) + b"udp:"
    pad = PacketBuilder(b"no-such-module", 1)
    pad.push_str(b"y" * (MAX_UDP4 - 34))
    big = make(1, **{**foreign, "vars": ((b"pad", b"x" * (MAX_UDP4 - 400)),)}).encode()
    head = good[: 8 + 4 + 6 + 4]  # marker, checksum, name length, "dialog", command

    def created_with(**fields: Any) -> bytes:
        return make(1, **{**foreign, **fields}).encode()

    def vars_raw(text: bytes) -> bytes:  # a created whose vars string is `text` as it is
        b = PacketBuilder(b"dialog", 1)
        for name, kind in DIALOG_FIELDS:
            b.push_int(0) if kind == "int" else b.push_str(text if name == "vars" else b"")
        return b.finish()

    return [
        ("bad checksum", good[:4] + bytes([good[4] ^ 0xFF]) + good[5:], "bin.checksum.bad"),
        ("runt 17", good[:17], "bin.runt"),
        ("P4CK and 13 zero bytes", b"P4CK" + b"\0" * 13, "bin.runt"),
        ("name past the end", reseal(good[:8] + u32(1000) + good[12:40]), "bin.name_len.bad"),
        ("negative name length", reseal(good[:8] + u32(-1) + good[12:]), "bin.name_len.bad"),
        ("unknown module", PacketBuilder(b"nosuchmod", 1).finish(), "bin.module.unknown"),
        ("18 bytes, module 'ab'", PacketBuilder(b"ab", 7).finish(), "bin.runt.old_releases"),
        ("unknown dialog command", PacketBuilder(b"dialog", 99).finish(), "bin.command.unknown"),
        ("dialog command -1", PacketBuilder(b"dialog", -1).finish(), "bin.command.unknown"),
        ("fields cut after the URIs", five.finish(), "bin.truncated"),
        ("socket length past the end", reseal(past_end), "bin.truncated"),
        ("maximum datagram, unknown module", pad.finish(), "bin.module.unknown"),
        ("maximum datagram, foreign socket", big, None),
        ("cut inside the Call-ID", reseal(good[:30]), "bin.truncated"),
        ("deleted cut before to_tag", reseal(make(3, call_id=b"c", from_tag=b"f").encode()[:-4]), "bin.truncated"),
        ("negative string length", reseal(head + u32(-5) + good[len(head) + 4:]), "bin.length.negative"),
        ("bytes after the last field", reseal(good + b"\0\0"), "bin.trailing.bytes"),
        ("backslash escapes nothing", vars_raw(b"a\\x#b|"), "bin.pairs.bad"),
        ("second '#' in a pair", vars_raw(b"a#b#c|"), "bin.pairs.bad"),
        ("'|' without '#'", vars_raw(b"ab|"), "bin.pairs.bad"),
        ("last pair not closed", vars_raw(b"a#b"), "bin.pairs.bad"),
        ("NUL and non-UTF-8 bytes", created_with(call_id=b"a\0b\xff", vars=((b"k\0", b"\xc3(\x01"),)),
         "bin.string.nul"),
        ("every flag bit, unknown state", created_with(flags=0xFFFFFFFF, state=9, user_flags=0xFFFFFFFF), None),
        ("escapes in both pairs", created_with(vars=((b"a|#\\", b"\\|#"),), profiles=((b"p", b""),)), None),
        ("updated", make(2, **foreign).encode(), None),
        ("deleted", make(3, call_id=b"c", from_tag=b"f", to_tag=b"t").encode(), None),
        ("bad marker (not BIN to either)", b"P4CX" + good[4:], None),
        ("empty datagram", b"", None),
        ("runt 1", b"P", None),
    ]


def ul_catalogue() -> list[tuple[str, bytes, str | None]]:
    """The same for usrloc's ul packets: cut fields, bad lengths, raw C integers of a size
    pybin refuses (a C receiver memcpy()s sizeof bytes whatever the length says), and good
    packets at the edges (32-bit senders' 4-byte time_t, extreme values, every bit)."""
    now = 1_800_000_000
    binding = dict(domain=b"location", aor=b"alice", contact=b"sip:alice@10.0.0.7:5090", call_id=b"ul-1@h",
                   user_agent=b"hostile", cseq=1, expires=now + 60, q=500, sock=b"udp:10.0.0.100:5060",
                   methods=0xFFFFFFFF, last_modified=now)
    good = usrloc.make(3, **binding).encode()
    record = usrloc.make(1, domain=b"location", aor=b"alice").encode()
    delete = usrloc.make(5, **{k: binding[k] for k in ("domain", "aor", "contact", "call_id", "cseq")}).encode()
    head = good[: 8 + 4 + 2 + 4]  # marker, checksum, name length, "ul", command

    def contact(upto: str | None = None, **raw: bytes) -> bytes:
        """A contact_insert whose raw fields' bytes are given as they are; cut before `upto`."""
        b = PacketBuilder(b"ul", 3)
        for name, kind in CONTACT_FIELDS:
            if name == upto:
                break
            if kind == "int":
                b.push_int(7)
            else:
                b.push_str(raw.get(name, bytes(RAW_SIZES[name])) if kind == RAW else name.encode())
        return b.finish()

    only_domain = PacketBuilder(b"ul", 2)
    only_domain.push_str(b"location")
    return [
        ("ul record_insert cut inside the aor", reseal(record[:-2]), "bin.truncated"),
        ("ul record_delete without its aor", only_domain.finish(), "bin.truncated"),
        ("ul command 6", PacketBuilder(b"ul", 6).finish(), "bin.command.unknown"),
        ("ul command 0", PacketBuilder(b"ul", 0).finish(), "bin.command.unknown"),
        ("ul expires in 5 bytes", contact(expires=b"\1" * 5), "bin.raw_int.bad"),
        ("ul q in 0 bytes", contact(q=b""), "bin.raw_int.bad"),
        ("ul last_modified in 2 bytes (the last field)", contact(last_modified=b"\1\2"), "bin.raw_int.bad"),
        ("ul expires length past the end", reseal(contact(upto="expires") + u32(60000) + bytes(8)), "bin.truncated"),
        ("ul cut before cseq", contact(upto="cseq"), "bin.truncated"),
        ("ul cut inside methods", reseal(contact(upto="last_modified")[:-2]), "bin.truncated"),
        ("ul contact_delete cut inside cseq", reseal(delete[:-1]), "bin.truncated"),
        ("ul negative contact length", reseal(good[:len(head) + 12 + 4 + 5] + u32(-5) + good[len(head) + 25 + 4:]),
         "bin.length.negative"),
        ("ul bytes after last_modified", reseal(good + b"\0"), "bin.trailing.bytes"),
        ("ul contact_delete with an insert's 17 fields", reseal(head[:-4] + u32(5) + good[len(head):]),
         "bin.trailing.bytes"),
        ("ul NUL and non-UTF-8 in the aor", usrloc.make(1, domain=b"location", aor=b"a\0b\xff").encode(),
         "bin.string.nul"),
        ("ul 32-bit sender: 4-byte time_t", usrloc.make(3, **{**binding, "expires": RawInt(now + 60, 4),
                                                              "last_modified": RawInt(-1, 4)}).encode(), None),
        ("ul extremes in 8 bytes", usrloc.make(3, **{**binding, "expires": RawInt((1 << 63) - 1, 8),
                                                     "q": RawInt(-(1 << 63), 8),
                                                     "last_modified": RawInt(-1, 8)}).encode(), None),
        ("ul every bit", usrloc.make(3, **{**binding, "flags": 0xFFFFFFFF, "cflags": 0xFFFFFFFF,
                                           "cseq": 0xFFFFFFFF, "q": 1000}).encode(), None),
        ("ul permanent, empty strings", usrloc.make(4, domain=b"location", aor=b"bob", expires=0, q=0).encode(),
         None),
        ("ul record_delete", usrloc.make(2, domain=b"location", aor=b"alice").encode(), None),
        ("ul contact_delete", delete, None),
    ]


def field_offsets(data: bytes) -> list[int]:
    """Where each 4-byte integer or length of a good dialog or ul packet starts."""
    packet = parse_header(data)
    reader = PacketReader(data, packet.payload_offset)
    offsets = [8, packet.payload_offset - 4]
    fields = PAYLOADS[packet.module].messages[packet.command].FIELDS
    for _, kind in fields:
        offsets.append(reader.offset)
        reader.pop_int() if kind == "int" else reader.pop_str()
    return offsets


def mutants(seeds: list[bytes], count: int, rng: random.Random) -> list[bytes]:
    """Seeded random damage: bytes changed, lengths set to edge values, cuts, inserts."""
    out = []
    for _ in range(count):
        seed = rng.choice(seeds)
        data = bytearray(seed)
        for _ in range(rng.randint(1, 3)):
            kind = rng.choices(range(5), weights=(3, 3, 1, 2, 1))[0]
            if kind == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind == 1:
                at = rng.choice([o for o in field_offsets(seed) if o + 4 <= len(data)] or [0])
                rest = len(data) - at - 4
                value = rng.choice([0, 1, 2, 99, 0x7FFFFFFF, 0x80000000, -1, -2, 65535, rest, rest + 1, rest - 1])
                data[at : at + 4] = u32(value)
            elif kind == 2:
                del data[rng.randrange(len(data) + 1) :]
            elif kind == 3:
                at = rng.randrange(len(data) + 1)
                data[at:at] = rng.choice([b"\\", b"#", b"|", b"\0", b"\xff", b"\\|", rng.randbytes(5)])
            else:
                at = rng.randrange(len(data) + 1)
                del data[at : at + rng.randint(1, 8)]
        mutated = bytes(data[:MAX_UDP4])
        out.append(reseal(mutated) if rng.random() < 0.7 else mutated)
    return out


def pybin_says(data: bytes) -> dict[str, Any] | RemoteProtocolError | None:
    """pybin's JSON object, its error, or None for a datagram that is not BIN to it."""
    if data[:4] != b"P4CK":
        return None
    try:
        return packet_to_json(data)
    except RemoteProtocolError as err:
        return err


def check_frames(frames: list[Node], datagrams: list[bytes], names: list[str]) -> None:
    assert len(frames) == len(datagrams)
    for layers, data, name in zip(frames, datagrams, names):
        says = pybin_says(data)
        where = f"{name} ({data[:48].hex()}...)"
        if says is None:
            assert layers.get("bin") is None, where
        elif isinstance(says, RemoteProtocolError):
            groups = [group for _, group in layers.get("bin").experts()]
            assert MALFORMED in groups, f"{where}: pybin refuses it ({says}), the dissector does not say so"
        else:
            assert_same(layers, says, where)


def seeds(module: str, cases: list[tuple[str, bytes, str | None]]) -> list[bytes]:
    """The corpus's packets of one module and the catalogue's good small ones."""
    corpus = [d.data for c in CAPTURES for d in read_datagrams(c)]
    good = [data for _, data, expert in cases
            if expert is None and len(data) < 2000 and isinstance(pybin_says(data), dict)]
    return [data for data in corpus + good if pybin_says(data)["module"] == module]  # type: ignore[index]


@needs_tshark
def test_hostile_datagrams_are_flagged_never_a_lua_error(tmp_path: Path) -> None:
    cases = catalogue() + ul_catalogue()
    dialog_mutants = mutants(seeds("dialog", cases), 600, random.Random(20))
    ul_mutants = mutants(seeds("ul", cases), 400, random.Random(21))
    datagrams = [data for _, data, _ in cases] + dialog_mutants + ul_mutants
    names = ([name for name, _, _ in cases] + [f"dialog mutant {i}" for i in range(600)]
             + [f"ul mutant {i}" for i in range(400)])
    capture = tmp_path / "hostile.pcap"
    write_pcap(capture, [CapturedDatagram(1.0 + i / 1000, ("10.0.0.1", 5062), ("10.0.0.2", 5062), data)
                         for i, data in enumerate(datagrams)])
    frames = tshark(capture, tmp_path)
    check_frames(frames, datagrams, names)
    for (name, data, expert), layers in zip(cases, frames):
        if expert is not None:
            assert expert in [n for n, _ in layers.get("bin").experts()], name
    for made in (dialog_mutants, ul_mutants):  # the mutants reach both sides of every rule
        refused = sum(isinstance(pybin_says(d), RemoteProtocolError) for d in made)
        accepted = sum(isinstance(pybin_says(d), dict) for d in made)
        assert refused > 100 and accepted > 50


@needs_tshark
def test_decode_as_flags_a_wrong_marker(tmp_path: Path) -> None:
    good = make(3, call_id=b"c", from_tag=b"f", to_tag=b"t").encode()
    capture = tmp_path / "port.pcap"
    write_pcap(capture, [CapturedDatagram(1.0, ("10.0.0.1", 5999), ("10.0.0.2", 5999), data)
                         for data in (b"P4CX" + good[4:], good)])
    wrong, right = tshark(capture, tmp_path, "-d", "udp.port==5999,bin")
    assert ("bin.marker.bad", MALFORMED) in wrong.get("bin").experts()
    assert_same(right, packet_to_json(good), "a good packet on port 5999")


def snapped(source: Path, target: Path, snaplen: int) -> None:
    """A copy of a classic little-endian pcap as tcpdump -s SNAPLEN would have written it."""
    data = source.read_bytes()
    out, at = bytearray(data[:24]), 24
    while at < len(data):
        seconds, micros, included, original = struct.unpack_from("<IIII", data, at)
        kept = min(included, snaplen)
        out += struct.pack("<IIII", seconds, micros, kept, original) + data[at + 16 : at + 16 + kept]
        at += 16 + included
    target.write_bytes(out)


@needs_tshark
@pytest.mark.parametrize("payload", [4, 12, 30, 100, 300])
def test_a_capture_cut_short_is_not_called_malformed(tmp_path: Path, payload: int) -> None:
    """tcpdump's snaplen cuts datagrams: the dissector shows what the capture holds,
    says it is cut, and blames nobody's packet."""
    corpus = [d.data for c in CAPTURES for d in read_datagrams(c)]
    whole = tmp_path / "whole.pcap"
    write_pcap(whole, [CapturedDatagram(1.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), d) for d in corpus])
    snapped(whole, tmp_path / "cut.pcap", 14 + 20 + 8 + payload)
    frames = tshark(tmp_path / "cut.pcap", tmp_path)
    assert len(frames) == len(corpus)
    compared = 0
    for layers, data in zip(frames, corpus):
        obj, root = packet_to_json(data), layers.get("bin")
        experts = root.experts()
        assert ("bin.short_capture" in [n for n, _ in experts]) == (payload < len(data))
        assert MALFORMED not in [group for _, group in experts]
        if payload < len(data):
            assert root.get("bin.checksum_ok") is None
        if payload < 16 + len(obj["module"]):
            assert root.get("bin.command") is None
            continue
        got, _ = view(layers, obj)
        assert (got["module"], got["command"]) == (obj["module"], obj["command"])
        module = next(key for key in obj if key not in TOP)  # "dialog" or "ul"
        assert got[module] is not None
        assert {k: v for k, v in shown(obj[module]).items() if k in got[module]} == got[module]
        compared += len(got[module])
    assert compared >= (0 if payload < 100 else 2 * len(corpus))  # fields before the cut are shown
