"""The pybin command line, run in-process: outputs, the round trip, and bad input."""

from __future__ import annotations

import io
import json

import pytest

from pybin import usrloc
from pybin.cli import main
from pybin.dialog import DIALOG_FIELDS
from pybin.pcap import CapturedDatagram, write_pcap

DIALOG_KEYS = [name for name, _ in DIALOG_FIELDS]


def run(capsys, monkeypatch, argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_json_prints_every_field(capsys, monkeypatch, basic_calls, basic_calls_path):
    code, out, err = run(capsys, monkeypatch, ["decode", str(basic_calls_path), "--json"])
    assert code == 0 and err == ""
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == len(basic_calls) == 21
    first = objs[0]
    assert list(first) == ["module", "command", "checksum_ok", "hex", "dialog"]
    assert (first["module"], first["command"], first["checksum_ok"]) == ("dialog", 1, True)
    assert first["hex"] == basic_calls[0].data.hex()
    assert list(first["dialog"]) == DIALOG_KEYS
    assert first["dialog"]["vars"] == [["acct", "a|b#c\\d"]]
    assert first["dialog"]["profiles"] == [["caller", "alice"], ["inbound", ""]]
    assert first["dialog"]["h_id"] == 562474275
    assert list(objs[-1]["dialog"]) == DIALOG_KEYS[:3]


def test_decode_then_encode_reproduces_every_hex(capsys, monkeypatch, basic_calls_path):
    _, decoded, _ = run(capsys, monkeypatch, ["decode", str(basic_calls_path), "--json"])
    code, encoded, err = run(capsys, monkeypatch, ["encode"], decoded)
    assert code == 0 and err == ""
    assert encoded.split() == [json.loads(line)["hex"] for line in decoded.splitlines()]


def _ul_capture(tmp_path, order=None):
    from pybin.usrloc import RawInt
    from pybin.wire import ByteOrder

    order = order or ByteOrder.LITTLE
    messages = [
        usrloc.make(1, domain=b"location", aor=b"alice"),
        usrloc.make(3, domain=b"location", aor=b"alice", contact=b"sip:alice@10.0.0.7", call_id=b"c1",
                    expires=1796574254, q=500, sock=b"udp:10.0.0.100:5060", cseq=1, methods=47,
                    last_modified=1796573954),
        usrloc.make(4, domain=b"location", aor=b"alice", contact=b"sip:alice@10.0.0.7", call_id=b"c1",
                    expires=RawInt(1796574554, 4), q=-1, sock=b"udp:10.0.0.100:5060", cseq=2,
                    last_modified=RawInt(1796574254, 4)),  # a 32-bit sender's
        usrloc.make(5, domain=b"location", aor=b"alice", contact=b"sip:alice@10.0.0.7", call_id=b"c1", cseq=2),
        usrloc.make(2, domain=b"location", aor=b"alice"),
    ]
    items = [CapturedDatagram(10.0 + i, ("10.0.0.11", 5062), ("10.0.0.12", 5062), m.encode(order))
             for i, m in enumerate(messages)]
    path = tmp_path / "ul.pcap"
    write_pcap(path, items)
    return path, items


def test_ul_packets_decode_to_json_and_encode_back_byte_exact(capsys, monkeypatch, tmp_path):
    path, items = _ul_capture(tmp_path)
    code, decoded, err = run(capsys, monkeypatch, ["decode", str(path), "--json"])
    assert code == 0 and err == ""
    objs = [json.loads(line) for line in decoded.splitlines()]
    assert [list(o) for o in objs] == [["module", "command", "checksum_ok", "hex", "ul"]] * 5
    assert [o["command"] for o in objs] == [1, 3, 4, 5, 2]
    assert list(objs[1]["ul"]) == [name for name, _ in usrloc.CONTACT_FIELDS]
    assert objs[1]["ul"]["expires"] == {"value": 1796574254, "size": 8}
    assert objs[1]["ul"]["q"] == {"value": 500, "size": 4}
    assert objs[2]["ul"]["last_modified"] == {"value": 1796574254, "size": 4}
    assert objs[3]["ul"] == {"domain": "location", "aor": "alice", "contact": "sip:alice@10.0.0.7",
                             "call_id": "c1", "cseq": 2}
    code, encoded, err = run(capsys, monkeypatch, ["encode"], decoded)
    assert code == 0 and encoded.split() == [item.data.hex() for item in items]
    # the careful reader (json.loads) gives the same bytes for the same objects, respaced
    respaced = "\n".join(json.dumps(o, indent=None, separators=(",", ":")) for o in objs) + "\n"
    assert run(capsys, monkeypatch, ["encode"], respaced)[1].split() == [item.data.hex() for item in items]


def test_ul_text_lines_and_stats(capsys, monkeypatch, tmp_path):
    from pybin.wire import ByteOrder

    path, _ = _ul_capture(tmp_path, ByteOrder.BIG)
    code, out, err = run(capsys, monkeypatch, ["decode", str(path), "--stats", "--big-endian"])
    assert code == 0
    assert out.splitlines() == [
        "10.000000 10.0.0.11:5062 → 10.0.0.12:5062 ul record_insert domain=location aor=alice",
        "11.000000 10.0.0.11:5062 → 10.0.0.12:5062 ul contact_insert domain=location aor=alice "
        "contact=sip:alice@10.0.0.7 call_id=c1 cseq=1 expires=1796574254 q=500",
        "12.000000 10.0.0.11:5062 → 10.0.0.12:5062 ul contact_update domain=location aor=alice "
        "contact=sip:alice@10.0.0.7 call_id=c1 cseq=2 expires=1796574554 q=-1",
        "13.000000 10.0.0.11:5062 → 10.0.0.12:5062 ul contact_delete domain=location aor=alice "
        "contact=sip:alice@10.0.0.7 call_id=c1 cseq=2",
        "14.000000 10.0.0.11:5062 → 10.0.0.12:5062 ul record_delete domain=location aor=alice",
    ]
    assert err.splitlines()[0] == ("stats: packets 5: ul record_insert 1, ul record_delete 1, ul contact_insert 1, "
                                   "ul contact_update 1, ul contact_delete 1")


@pytest.mark.parametrize(
    "ul, message",
    [
        ({"aor": "a", "expires": 5}, "expires must be an object {\"value\": V, \"size\": 4 or 8}, got 5"),
        ({"expires": {"value": 5, "size": 3}}, "expires: a C integer is 4 or 8 bytes here, not 3"),
        ({"q": {"value": 2**31, "size": 4}}, "q must be an integer in -2147483648..2147483647, got 2147483648"),
        ({"state": 1}, "unknown field 'state' for ul command 3"),
    ],
)
def test_bad_ul_lines_are_one_line_errors(capsys, monkeypatch, ul, message):
    line = json.dumps({"module": "ul", "command": 3, "ul": ul})
    code, out, err = run(capsys, monkeypatch, ["encode"], line + "\n")
    assert (code, out) == (2, "")
    assert err == f"pybin: line 1: {message}\n"


def test_a_line_with_both_modules_fields_is_refused(capsys, monkeypatch):
    line = json.dumps({"module": "ul", "command": 1, "dialog": {"call_id": "x"}, "ul": {"aor": "a"}})
    code, _, err = run(capsys, monkeypatch, ["encode"], line + "\n")
    assert code == 2 and err == "pybin: line 1: a packet has one module's fields, this one has dialog and ul\n"


def test_non_utf8_bytes_survive_the_json_round_trip(capsys, monkeypatch):
    from pybin.dialog import make

    data = make(1, call_id=b"\xff\xfe-id", vars=((b"k\x80", b"\xc3("),)).encode()
    line = json.dumps({"module": "dialog", "command": 1, "dialog": {"call_id": "\udcff\udcfe-id", "vars": [["k\udc80", "\udcc3("]]}})
    code, out, _ = run(capsys, monkeypatch, ["encode"], line + "\n")
    assert code == 0
    assert out.strip() == data.hex()


def test_human_decode_one_line_per_packet(capsys, monkeypatch, basic_calls_path):
    code, out, _ = run(capsys, monkeypatch, ["decode", str(basic_calls_path)])
    lines = out.splitlines()
    assert code == 0 and len(lines) == 21
    assert "dialog created call_id=1-26919@10.77.0.20" in lines[0]
    assert "state=3" in lines[0]
    assert lines[-1].split()[1:4] == ["10.77.0.12:5062", "→", "10.77.0.11:5062"]


@pytest.mark.parametrize(
    "stdin, message",
    [
        ("not json\n", "line 2: not JSON"),
        ('{"module": "dialog", "command": 1, "dialog": {"call_id": "x", "nope": 1}}\n', "unknown field 'nope'"),
        ('{"module": "dialog", "command": 1, "dialog": {"h_id": "7"}}\n', "h_id must be a JSON integer"),
        ('{"module": "dialog", "command": 5, "dialog": {}}\n', "unknown dialog command 5"),
        ('{"flavour": 1}\n', "unknown field 'flavour'"),
        ('[1, 2]\n', "must be a JSON object"),
    ],
)
def test_encode_bad_input_is_one_line_and_nonzero(capsys, monkeypatch, stdin, message):
    good = '{"module": "dialog", "command": 3, "dialog": {"call_id": "a"}}\n'
    code, out, err = run(capsys, monkeypatch, ["encode"], good + stdin)
    assert code == 2
    assert len(out.splitlines()) == 1  # the good packet before the bad line is out
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_decode_not_a_capture(capsys, monkeypatch, tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"hello world")
    code, out, err = run(capsys, monkeypatch, ["decode", str(path)])
    assert code == 2 and out == ""
    assert err == f"pybin: {path}: not a pcap or pcapng capture (starts with 68656c6c)\n"


def test_decode_keeps_good_packets_before_a_truncated_one(capsys, monkeypatch, tmp_path, basic_calls):
    path = tmp_path / "cut.pcap"
    good = basic_calls[:2]
    bad = CapturedDatagram(3.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), basic_calls[2].data[:40])
    write_pcap(path, [*good, bad])
    code, out, err = run(capsys, monkeypatch, ["decode", str(path), "--json"])
    assert code == 2
    assert [json.loads(line)["hex"] for line in out.splitlines()] == [d.data.hex() for d in good]
    assert "packet 3" in err and "call_id: 18 bytes at offset 26 run past the end" in err and err.count("\n") == 1


def test_decode_missing_file(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, ["decode", str(tmp_path / "none.pcap")])
    assert code == 3 and "No such file" in err


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_send_reaches_a_socket(capsys, monkeypatch):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        port = sink.getsockname()[1]
        lines = '{"module": "dialog", "command": 3, "dialog": {"call_id": "c1"}}\n' * 2
        code, _, err = run(capsys, monkeypatch, ["send", f"127.0.0.1:{port}"], lines)
        assert code == 0 and err == f"sent 2 packets to 127.0.0.1:{port}\n"
        from pybin.dialog import decode

        assert decode(sink.recv(65535)).call_id == b"c1"
        assert decode(sink.recv(65535)).call_id == b"c1"


def test_listen_decodes_live_packets_and_reports_drops(basic_calls):
    import socket
    import subprocess
    import sys

    port = _free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pybin", "listen", f"127.0.0.1:{port}", "--json", "--count", "2", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr.readline() == f"listening on 127.0.0.1:{port}\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"P4CKgarbage-garbage", ("127.0.0.1", port))
            sender.sendto(basic_calls[0].data, ("127.0.0.1", port))
            sender.sendto(basic_calls[-1].data, ("127.0.0.1", port))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert [json.loads(line)["hex"] for line in out.splitlines()] == [
        basic_calls[0].data.hex(),
        basic_calls[-1].data.hex(),
    ]
    assert "dropped: module name runs past the end: name length 761620321 in a 19-byte datagram" in err
    assert err.rstrip().endswith("received 2 packets, dropped 1")


def test_summary_line_lives_in_textio_and_cli_still_offers_it():
    from pybin import cli, textio

    assert cli.summary_line is textio.summary_line
    obj = {"module": "ul", "command": 7, "checksum_ok": False, "hex": "00" * 30, "dialog": None}
    assert textio.summary_line(obj, "p ") == "p ul cmd=7 BAD-CHECKSUM 30 bytes"


@pytest.mark.parametrize(
    "addr, message",
    [("10.0.0.1", "not an address"), ("h:70000", "not an address"), ("[::1]:0", "port 0")],
)
def test_bad_addresses_are_refused_by_the_endpoint_rules(capsys, addr, message):
    with pytest.raises(SystemExit) as exit_:
        main(["listen", addr])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_ipv6_addresses_parse_like_the_endpoint():
    from pybin.cli import parse_hostport

    assert parse_hostport("[::1]:5062") == ("::1", 5062)
    assert parse_hostport("10.0.0.1:5062") == ("10.0.0.1", 5062)


def test_decode_of_a_capture_without_bin_says_so(capsys, monkeypatch, tmp_path):
    path = tmp_path / "sip.pcap"
    write_pcap(path, [CapturedDatagram(1.0, ("10.0.0.1", 5060), ("10.0.0.2", 5060), b"OPTIONS sip:x SIP/2.0\r\n\r\n")])
    code, out, err = run(capsys, monkeypatch, ["decode", str(path), "--json"])
    assert (code, out) == (0, "")
    assert err == f"pybin: {path}: no BIN packets (1 UDP datagrams, none starting with P4CK)\n"


def test_decode_stats_count_per_module_and_command_on_stderr(capsys, monkeypatch, tmp_path, basic_calls):
    from pybin.wire import PacketBuilder

    other = PacketBuilder("tm", 1).finish()
    ul = usrloc.make(3, domain=b"location", aor=b"alice").encode()
    bad = basic_calls[0].data[:4] + b"\0\0\0\0" + basic_calls[0].data[8:]
    sip = b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    items = [*basic_calls, CapturedDatagram(9.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), other),
             CapturedDatagram(9.2, ("10.0.0.1", 5062), ("10.0.0.2", 5062), ul),
             CapturedDatagram(9.5, ("10.0.0.1", 5062), ("10.0.0.2", 5062), bad),
             CapturedDatagram(10.0, ("10.0.0.1", 5060), ("10.0.0.2", 5060), sip)]
    path = tmp_path / "mixed.pcap"
    write_pcap(path, items)
    code, out, err = run(capsys, monkeypatch, ["decode", str(path), "--stats"])
    assert code == 0 and len(out.splitlines()) == 24
    assert err.splitlines() == [
        "stats: packets 24: dialog created 10, dialog updated 6, dialog deleted 6, tm cmd=1 1, ul contact_insert 1",
        "stats: bad checksum 1",
        "stats: dropped 1: NOT_BIN 1",
    ]


def test_decode_stats_name_the_packet_that_stopped_it(capsys, monkeypatch, tmp_path, basic_calls):
    path = tmp_path / "cut.pcap"
    bad = CapturedDatagram(3.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), basic_calls[2].data[:40])
    write_pcap(path, [*basic_calls[:2], bad])
    code, out, err = run(capsys, monkeypatch, ["decode", str(path), "--stats"])
    assert code == 2 and len(out.splitlines()) == 2
    assert err.splitlines()[:3] == ["stats: packets 2: dialog created 2", "stats: bad checksum 0",
                                    "stats: dropped 1: TruncatedPacket 1"]
    assert err.splitlines()[3].startswith("pybin: ") and "packet 3" in err


class _Flushes(io.BytesIO):
    """A pipe's stand-in that remembers what had arrived at every flush."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def flush(self):
        self.seen.append(self.getvalue().count(b"\n"))


@pytest.mark.parametrize("flag, expected", [([], [0, 21]), (["--line-buffered"], list(range(22)))])
def test_output_is_flushed_per_line_only_when_asked(monkeypatch, basic_calls_path, flag, expected):
    sink = _Flushes()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(sink, encoding="utf-8"))
    assert main(["decode", str(basic_calls_path), "--json", *flag]) == 0
    assert sorted(set(sink.seen)) == expected  # lines out at each flush


def test_text_decode_passes_bytes_that_are_not_utf8_through(capsysbinary, tmp_path):
    from pybin.dialog import make

    data = make(3, call_id=b"\xff\xfe-id", from_tag=b"f", to_tag=b"t").encode()
    path = tmp_path / "odd.pcap"
    write_pcap(path, [CapturedDatagram(1.5, ("10.0.0.1", 5062), ("10.0.0.2", 5062), data)])
    assert main(["decode", str(path)]) == 0
    out, _ = capsysbinary.readouterr()
    assert out == "1.500000 10.0.0.1:5062 → 10.0.0.2:5062 dialog deleted call_id=".encode() + b"\xff\xfe-id tags=f/t\n"


def run_bytes(capsys, monkeypatch, argv, stdin: bytes):
    """Like run, but stdin is a real text layer over bytes (as a pipe is), not a StringIO."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="surrogateescape"))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_reads_a_pipe_the_same_as_text(capsys, monkeypatch, basic_calls_path):
    _, decoded, _ = run(capsys, monkeypatch, ["decode", str(basic_calls_path), "--json"])
    lines = decoded.splitlines(keepends=True)
    spaced = json.dumps(json.loads(lines[1]), indent=None, separators=(",", ":")) + "\n"
    stdin = "".join([lines[0], spaced, "\n", lines[2].replace("\n", "\r\n"), *lines[3:]])
    code, out, err = run_bytes(capsys, monkeypatch, ["encode"], stdin.encode())
    assert (code, err) == (0, "")
    assert out.split() == [json.loads(line)["hex"] for line in lines]
    assert run(capsys, monkeypatch, ["encode"], stdin)[1] == out


@pytest.mark.parametrize(
    "stdin, message",
    [
        (b"not json\n", "line 2: not JSON"),
        (b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "x", "nope": 1}}\n',
         "line 2: unknown field 'nope'"),
        (b'\r{"module": "dialog", "command": 5, "dialog": {}}\n', "line 3: unknown dialog command 5"),
        (b'{"module": "dialog", "command": 1, "checksum_ok": true, "hex": "", "dialog": {"h_id": 4294967296}}\n',
         "line 2: h_id must be an integer in 0..4294967295"),
    ],
)
def test_encode_errors_from_a_pipe_name_the_text_line(capsys, monkeypatch, stdin, message):
    good = b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "a", "from_tag": "", "to_tag": ""}}\n'
    code, out, err = run_bytes(capsys, monkeypatch, ["encode"], good + stdin)
    assert code == 2 and len(out.splitlines()) == 1
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_stdout_without_bytes_gets_text(basic_calls_path):
    import contextlib

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        assert main(["decode", str(basic_calls_path)]) == 0
    assert len(sink.getvalue().splitlines()) == 21 and "→" in sink.getvalue()
