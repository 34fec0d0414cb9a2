"""The Wireshark dissector (pybin/dissector/opensips_bin.lua) says what pybin says.

tshark runs the dissector over every capture under tests/ (found by glob, so a new
capture is covered without touching this file). Packet by packet, the fields tshark
shows must be the keys and values of ``pybin decode --json``: module, command,
checksum_ok, hex and every dialog field, vars and profiles pair by pair, each text
field's bytes exactly; and no Malformed flag on a packet pybin accepts. Also: the
big-endian preference, the SIP INVITE link and the filters the README gives, and the
Lua tables against pybin's. Hostile input: test_dissector_hostile.py.
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
    assert_same,
    needs_tshark,
    tshark,
)

from pybin import DlgFlag, DlgState
from pybin.dialog import DIALOG_FIELDS
from pybin.jsonio import packet_from_json, packet_to_json
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


def test_the_corpus_holds_dialog_packets_of_every_command() -> None:
    """So that the comparison above compares something."""
    commands = {packet_to_json(d.data)["command"] for c in CAPTURES for d in read_datagrams(c)}
    assert commands == {1, 2, 3} and len(CAPTURES) >= 7


@needs_tshark
def test_the_big_endian_preference_reads_what_a_big_endian_sender_wrote(tmp_path: Path) -> None:
    corpus = [d.data for d in read_datagrams(CAPTURES[0])]
    big = [packet_from_json(packet_to_json(data), ByteOrder.BIG) for data in corpus[:6]]
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
