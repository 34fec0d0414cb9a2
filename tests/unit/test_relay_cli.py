"""``pybin relay`` as a user runs it: a process between two loopback sockets.

The relay prints its bound address first (LISTEN port 0), so no port is guessed; every
wait is bounded (``Popen.wait(timeout=...)``), none is a sleep.
"""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_relay import STREAM

from pybin.cli import main
from pybin.endpoint import send_datagrams, set_rcvbuf
from pybin.relay import delivered, read_relay_log

WAIT = 30


@contextmanager
def relay_process(*options: str) -> Iterator[tuple[subprocess.Popen[str], tuple[str, int], socket.socket]]:
    """A ``pybin relay`` process towards a fresh receiving socket; yields (process, its
    address, the receiver)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        set_rcvbuf(sink, 8 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        argv = [sys.executable, "-m", "pybin", "relay", "127.0.0.1:0", "127.0.0.1:%d" % sink.getsockname()[1], *options]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()
            match = re.match(r"relaying 127\.0\.0\.1:(\d+) → 127\.0\.0\.1:\d+ \((.*)\)$", first)
            assert match, first + proc.stderr.read()
            yield proc, ("127.0.0.1", int(match[1])), sink
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(WAIT)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def read_out(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def finish(proc: subprocess.Popen[str]) -> str:
    """Wait (bounded) for the exit; the rest of stderr."""
    assert proc.wait(WAIT) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


def test_count_log_and_final_counters_end_to_end(tmp_path: Path) -> None:
    log = tmp_path / "relay.jsonl"
    with relay_process("--loss", "0.1", "--duplicate", "0.1", "--reorder", "0.1", "--corrupt", "0.1",
                       "--truncate", "0.1", "--delay", "3+-2", "--seed", "7", "--log", str(log),
                       "--count", "600") as (proc, addr, sink):
        send_datagrams(addr, STREAM)
        rest = finish(proc)
        got = read_out(sink)
    assert rest == (
        "relay: received 600, forwarded 532, dropped 68, duplicated 62, reordered 59, delayed 532, "
        "corrupted 56, truncated 64, sent 594\n"
    )
    records = read_relay_log(log)
    assert [data for _, data in delivered(records)] == got and len(got) == 594
    assert records.header["impairment"] == "loss=0.1,duplicate=0.1,reorder=0.1,delay=3±2,corrupt=0.1,truncate=0.1,seed=7"
    assert not any(r.at_close for r in records)  # --count: the held ones left on their own time


def test_selectors_from_options_and_a_calls_file(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    calls.write_bytes(b"# lose these\ncall-1@10.0.0.1\r\n\ncall-3@10.0.0.1\n")
    with relay_process("--loss", "1", "--calls", str(calls), "--only", "created", "--only", "updated|deleted",
                       "--count", "15", "--stats") as (proc, addr, sink):
        send_datagrams(addr, STREAM[:15])
        rest = finish(proc)
        got = read_out(sink)
    assert got == STREAM[:3] + STREAM[6:9] + STREAM[12:15]
    assert rest.splitlines() == [
        "relay: received 15, forwarded 9, dropped 6, duplicated 0, reordered 0, delayed 0, "
        "corrupted 0, truncated 0, sent 9",
        "stats: dialog created: drop 2",
        "stats: dialog created: forward 3",
        "stats: dialog deleted: drop 2",
        "stats: dialog deleted: forward 3",
        "stats: dialog updated: drop 2",
        "stats: dialog updated: forward 3",
    ]


def test_timeout_stops_and_reports() -> None:
    with relay_process("--timeout", "0.2") as (proc, addr, sink):
        send_datagrams(addr, STREAM[:4])
        rest = finish(proc)
        got = read_out(sink)
    assert rest.startswith("relay: received ") and rest.endswith(", sent %d\n" % len(got))
    assert got == STREAM[: len(got)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sends_what_is_held_and_reports(tmp_path: Path, signum: int) -> None:
    log = tmp_path / "relay.jsonl"
    with relay_process("--reorder", "1", "--reorder-timeout", "600000", "--log", str(log)) as (proc, addr, sink):
        send_datagrams(addr, STREAM[:5])
        # the log's lines for 0 and 1 say the relay has read 3 and 4: now 2, 3, 4 are held
        wait_for_lines(proc, log, 3)
        proc.send_signal(signum)
        rest = finish(proc)
        got = read_out(sink)
    assert got == STREAM[:5]
    assert rest.startswith("relay: received 5, forwarded 5, dropped 0, duplicated 0, reordered 5")
    assert [r.at_close for r in read_relay_log(log)] == [False, False, True, True, True]


def wait_for_lines(proc: subprocess.Popen[str], path: Path, count: int) -> None:
    """Until the log has ``count`` lines (the relay flushes it whenever its socket is
    empty); past the deadline, or if the relay exits, that is an error."""
    deadline = time.monotonic() + WAIT
    while (lines := path.read_text().count("\n")) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the relay log has {lines} lines, not {count} (exit status {proc.poll()})")
        select.select([], [], [], 0.01)  # the poll interval


@pytest.mark.parametrize(
    ("argv", "message", "status"),
    [
        (["--loss", "1.5"], "pybin: loss=1.5: a probability is between 0 and 1", 2),
        (["--delay", "5±9"], "pybin: delay=5±9: the jitter is larger than the delay", 2),
        (["--reorder-by", "two"], "pybin: --reorder-by='two': not a whole number", 2),
        (["--only", "bye"], "pybin: only: 'bye' is not a dialog command", 2),
        (["--count", "0"], "pybin: --count 0: at least 1", 2),
        (["--count", "x"], "pybin relay: argument --count: invalid int value: 'x'", 2),
        (["--frobnicate"], "pybin: unrecognized arguments: --frobnicate", 2),
        (["--calls", "/nonexistent/calls"], "pybin: --calls /nonexistent/calls: No such file or directory", 3),
        (["--log", "/nonexistent/relay.jsonl"],
         "pybin: cannot write the log /nonexistent/relay.jsonl: No such file or directory", 3),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_or_3(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     message: str, status: int) -> None:
    try:
        code = main(["relay", "127.0.0.1:0", "127.0.0.1:9", *argv])
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == status
    assert out == "" and err.startswith(message) and err.count("\n") == 1


def test_a_bad_dest_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["relay", "127.0.0.1:0", "nowhere"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "pybin relay: argument DEST: not an address (HOST:PORT or [V6]:PORT): 'nowhere'\n"
    )
