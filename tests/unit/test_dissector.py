"""The Wireshark dissector (pybin/dissector/opensips_bin.lua) says what pybin says.

tshark runs the dissector over every capture under tests/ (found by glob, so a new
capture is covered without touching this file). Packet by packet, the fields tshark
shows must be the keys and values of ``pybin decode --json``: module, command,
checksum_ok, hex and every dialog or ul field, vars and profiles pair by pair, each
text field's bytes exactly, usrloc's raw C integers as value and size; and no
Malformed flag on a packet pybin accepts. Also: the big-endian preference, the SIP
INVITE and REGISTER links and the filters the README gives, and the Lua tables against
pybin's. Hostile input: test_dissector_hostile.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _tshark import (
    CAPTURES,
    LUA,
    REINVITE,
    ROOT,
    TSHARK,
    USRLOC_CAPTURES,
    assert_same,
    needs_tshark,
    tshark,
)

from pybin import DlgFlag, DlgState
from pybin.dialog import DIALOG_FIELDS
from pybin.jsonio import packet_from_json, packet_to_json
from pybin.payloads import PAYLOADS
from pybin.usrloc import CONTACT_FIELDS, ContactFlag, Method
from pybin.pcap import CapturedDatagram, read_datagrams, write_pcap
from pybin.wire import ByteOrder


@needs_tshark
@pytest.mark.parametrize("capture", CAPTURES, ids=[str(p.relative_to(ROOT / "tests")) for p in CAPTURES])
def test_every_capture_shows_what_pybin_decode_json_says(capture: Path, tmp_path: Path) -> None:
    decoded = subprocess.run([sys.executable, "-m", "pybin", "decode", "--json", str(capture)],
                             capture_output=True, text=True, timeout=300, check=True,
                             encoding="utf-8", errors="surrogateescape")
    objs = [json.loads(line) for line in decoded.stdout.splitlines()]
    frames = [f for f in tshark(capture, tmp_path) if f.get("bin") is not None]
    assert len(frames) == len(objs)
    for layers, obj in zip(frames, objs):
        assert_same(layers, obj, f"frame {layers.get('frame').get('frame.number')}")


def module_commands(captures: list[Path]) -> set[tuple[str, int]]:
    return {(obj["module"], obj["command"])
            for obj in (packet_to_json(d.data) for c in captures for d in read_datagrams(c))}


def test_the_corpus_holds_packets_of_every_command_of_both_modules() -> None:
    """So that the comparison above compares something: every dialog command, and every
    ul command in each of the captures recorded from real 1.11.11 and 2.1.5 nodes."""
    every_ul = {("ul", c) for c in range(1, 6)}
    assert module_commands(CAPTURES) == {("dialog", 1), ("dialog", 2), ("dialog", 3)} | every_ul
    assert [p.parent.name for p in USRLOC_CAPTURES] == ["1.11.11", "2.1.5"]
    assert all(p in CAPTURES and module_commands([p]) == every_ul for p in USRLOC_CAPTURES)
    assert len(CAPTURES) >= 9


@needs_tshark
def test_the_big_endian_preference_reads_what_a_big_endian_sender_wrote(tmp_path: Path) -> None:
    dialog = [d.data for d in read_datagrams(REINVITE)][:6]
    ul = {}  # the first ul packet of each command
    for d in read_datagrams(USRLOC_CAPTURES[-1]):
        ul.setdefault(packet_to_json(d.data)["command"], d.data)
    corpus = dialog + list(ul.values())
    assert len(ul) == 5 and {packet_to_json(data)["module"] for data in dialog} == {"dialog"}
    big = [packet_from_json(packet_to_json(data), ByteOrder.BIG) for data in corpus]
    capture = tmp_path / "big.pcap"
    write_pcap(capture, [CapturedDatagram(1.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), data) for data in big])
    frames = tshark(capture, tmp_path, "-o", "bin.big_endian:TRUE")
    for layers, data in zip(frames, big, strict=True):
        assert_same(layers, packet_to_json(data, ByteOrder.BIG), "big-endian")


# --- the SIP link, the filters ------------------------------------------------------


def fields(capture: Path, home: Path, *options: str) -> list[list[str]]:
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run([TSHARK, "-X", f"lua_script:{LUA}", "-r", str(capture), "-T", "fields", *options],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


@needs_tshark
def test_a_dialog_packet_links_to_the_first_invite_of_its_call(tmp_path: Path) -> None:
    rows = fields(REINVITE, tmp_path, "-e", "frame.number", "-e", "sip.Method", "-e", "sip.Call-ID",
                  "-e", "bin.dialog.call_id", "-e", "bin.dialog.sip_invite")
    first: dict[str, int] = {}
    for number, method, call_id, _, _ in rows:
        if method == "INVITE":
            first.setdefault(call_id, int(number))
    links = [(call_id, int(link)) for _, _, _, call_id, link in rows if call_id]
    assert len(links) == 8 and len(first) == 2
    assert all(link == first[call_id] for call_id, link in links)


@needs_tshark
@pytest.mark.parametrize("capture", USRLOC_CAPTURES, ids=[p.parent.name for p in USRLOC_CAPTURES])
def test_a_ul_contact_packet_links_to_the_register_before_it(capture: Path, tmp_path: Path) -> None:
    """The last REGISTER with its Call-ID before it: the refresh's update links to the
    second REGISTER of its call, not the first."""
    rows = fields(capture, tmp_path, "-e", "frame.number", "-e", "sip.Method", "-e", "sip.Call-ID",
                  "-e", "bin.command", "-e", "bin.ul.call_id", "-e", "bin.ul.sip_register")
    registers: dict[str, list[int]] = {}
    links = []
    for number, method, sip_call_id, command, call_id, link in rows:
        if method == "REGISTER":
            registers.setdefault(sip_call_id, []).append(int(number))
        if call_id:
            links.append((int(number), int(command), call_id, int(link)))
    assert len(links) == 26 and {c for _, c, _, _ in links} == {3, 4, 5}  # every contact packet
    for number, _, call_id, link in links:
        assert link == max(f for f in registers[call_id] if f < number)
    updates = [(registers[call_id], link) for _, command, call_id, link in links if command == 4]
    assert len(updates) == 2 and all(link == frames[1] != frames[0] for frames, link in updates)
    records = fields(capture, tmp_path, "-Y", "bin.module == \"ul\" && bin.command <= 2", "-e", "bin.ul.aor",
                     "-e", "bin.ul.sip_register")
    assert len(records) == 14 and all(aor and not link for aor, link in records)  # no Call-ID, no link


@needs_tshark
def test_ul_filters_pick_a_users_bindings(tmp_path: Path) -> None:
    capture = USRLOC_CAPTURES[0]
    aor = fields(capture, tmp_path, "-Y", 'bin.ul.aor == "multicontact0001"', "-e", "bin.command",
                 "-e", "bin.ul.q")
    assert aor == [["1", ""], ["3", "1000"], ["3", "500"], ["3", "-1"], ["3", "700"]]
    q = fields(capture, tmp_path, "-Y", "bin.ul.q == 500", "-e", "bin.ul.contact")
    assert sorted(c for (c,) in q) == [f"sip:{user}-2@10.250.0.200:5080" for user in
                                       ("multicontact0001", "multicontact0002", "unregister0001", "unregister0002")]
    invite = fields(capture, tmp_path, "-Y", "bin.ul.methods.invite == 1", "-e", "frame.number")
    assert len(invite) == 22  # every contact_insert and contact_update: ALL_METHODS


@needs_tshark
def test_one_filter_finds_a_calls_sip_and_bin_packets(tmp_path: Path) -> None:
    call = "reinvite-1@10.250.0.200"
    every = fields(REINVITE, tmp_path, "-e", "frame.number", "-e", "sip.Call-ID", "-e", "bin.dialog.call_id")
    sip = {int(n) for n, s, _ in every if s == call}
    bin_ = {int(n) for n, _, b in every if b == call}
    picked = fields(REINVITE, tmp_path, "-Y", f'bin.dialog.call_id == "{call}" || sip.Call-ID == "{call}"',
                    "-e", "frame.number")
    assert len(sip) > 10 and len(bin_) == 4
    assert {int(n) for (n,) in picked} == sip | bin_
    state = fields(REINVITE, tmp_path, "-Y", "bin.dialog.state == 4 && bin.dialog.flags.isinit == 1", "-e",
                   "frame.number")
    assert len(state) == 4  # the updated packets: 2 on ACK, 2 on the re-INVITE


# --- the tables match pybin's -------------------------------------------------------


def lua_table(name: str) -> str:
    text = LUA.read_text()
    start = text.index(f"local {name} = {{")
    return text[start : text.index("\n}\n", start)]


def test_the_dialog_fields_are_pybins_in_wire_order() -> None:
    rows = re.findall(r'\{"(\w+)", (STR|INT|PAIRS)', lua_table("DIALOG_FIELDS"))
    kinds = {"STR": "str", "INT": "int", "PAIRS": "pairs"}
    assert [(name, kinds[kind]) for name, kind in rows] == list(DIALOG_FIELDS)


def test_state_and_flag_names_are_pybins() -> None:
    states = dict(re.findall(r'\[(\d)\] = "(\w+)"', lua_table("DLG_STATES")))
    assert {int(k): v for k, v in states.items()} == {s.value: s.name for s in DlgState}
    flags = re.findall(r'\{0x([0-9a-f]+), "(\w+)"\}', lua_table("DLG_FLAGS"))
    assert [(int(v, 16), n) for v, n in flags] == [(f.value, f.name) for f in DlgFlag]


def test_the_ul_fields_are_pybins_in_wire_order() -> None:
    rows = re.findall(r'\{"(\w+)", (STR|INT|RAW)', lua_table("UL_CONTACT_FIELDS"))
    assert [(name, kind.lower()) for name, kind in rows] == list(CONTACT_FIELDS)


def test_every_command_is_named_as_pybin_names_it_with_pybins_fields() -> None:
    """Command words as ``pybin decode`` prints them; ul commands' fields picked by name."""
    contact = [name for name, _ in CONTACT_FIELDS]
    for module, table in ((b"dialog", "DIALOG_COMMANDS"), (b"ul", "UL_COMMANDS")):
        payload = PAYLOADS[module]
        rows = re.findall(r'\[(\d+)\] = \{name = "(\w+)", fields = (.*)\},?$', lua_table(table), re.M)
        assert {int(n): word for n, word, _ in rows} == payload.words
        if module == b"ul":
            for number, _, chosen in rows:
                names = contact if chosen == "UL_CONTACT_FIELDS" else re.findall(r'"(\w+)"', chosen)
                assert names == [name for name, _ in payload.messages[int(number)].FIELDS], number


def test_contact_flag_and_method_names_are_pybins() -> None:
    flags = re.findall(r'\{0x([0-9a-f]+), "(\w+)"\}', lua_table("UL_CONTACT_FLAGS"))
    assert [(int(v, 16), n) for v, n in flags] == [(f.value, f.name) for f in ContactFlag]
    methods = re.findall(r'\{0x([0-9a-f]+), "(\w+)"\}', lua_table("SIP_METHODS"))
    assert [(int(v, 16), n) for v, n in methods] == [(m.value, m.name) for m in Method]
