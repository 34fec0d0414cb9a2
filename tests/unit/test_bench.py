"""The bench's yardstick is honest: the naive script prints what pybin prints.

No timing here (figures are the bench's job, not a test's); only that the naive
script and the generated capture are what the bench says they are.
"""

from __future__ import annotations

import io
import json

import pytest

from pybin.bench import e2e, naive
from pybin.cli import main
from pybin.endpoint import send_datagrams
from pybin.pcap import read_datagrams


def _out(capsys, monkeypatch, fn, argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    fn(argv)
    return capsys.readouterr().out


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_naive_decode_prints_what_pybin_prints(capsys, monkeypatch, basic_calls_path, flags):
    ours = _out(capsys, monkeypatch, main, ["decode", str(basic_calls_path), *flags])
    theirs = _out(capsys, monkeypatch, naive.main, ["decode", str(basic_calls_path), *flags])
    assert theirs == ours and len(ours.splitlines()) == 21


def test_naive_encode_prints_what_pybin_prints(capsys, monkeypatch, basic_calls_path):
    lines = _out(capsys, monkeypatch, main, ["decode", str(basic_calls_path), "--json"])
    ours = _out(capsys, monkeypatch, main, ["encode"], lines)
    assert _out(capsys, monkeypatch, naive.main, ["encode"], lines) == ours
    assert ours.split() == [json.loads(line)["hex"] for line in lines.splitlines()]


def test_the_generated_capture_renumbers_every_call(tmp_path, basic_calls_path):
    path = tmp_path / "bench.pcap"
    distinct = e2e.make_capture(path, basic_calls_path, 50)
    got = list(read_datagrams(path))
    assert len(got) == 50 and len(distinct) == 21
    assert got[0].src == ("10.77.0.11", 5062) and got[0].timestamp == 1_800_000_000.0
    assert len({d.data for d in got}) == 50
    assert naive.decode(got[21].data)["dialog"]["call_id"] == "1-" + naive.decode(got[0].data)["dialog"]["call_id"][2:]


def test_the_naive_forwarder_forwards_every_byte(basic_calls):
    """The relay bench's yardstick forwards what it reads, unchanged and in order."""
    import socket
    import subprocess
    import sys

    datagrams = [d.data for d in basic_calls]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(30)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        proc = subprocess.Popen([sys.executable, "-m", "pybin.bench.naive", "relay", str(port),
                                 str(sink.getsockname()[1])], stderr=subprocess.PIPE)
        try:
            assert proc.stderr.readline() == b"listening\n"
            send_datagrams(("127.0.0.1", port), datagrams)
            got = [sink.recv(65536) for _ in datagrams]
        finally:
            proc.kill()
            proc.wait(30)
            proc.stderr.close()
    assert got == datagrams
