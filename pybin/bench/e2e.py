"""End-to-end figures: the ``pybin`` command line against the naive script, same run.

Each side runs as its own process, one after the other and best of ``repeats``, on
a capture generated here (the shared 1.10.5 packets over and over, every call with
its own Call-ID); both must print the same bytes, or the comparison means nothing.
Figures are wall-clock packets per second of the whole process (start-up included);
the CPU time is given beside them, since other work on the machine inflates wall
time but not CPU time.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..dialog import decode
from ..endpoint import send_datagrams
from ..pcap import read_datagrams

PYBIN = [sys.executable, "-m", "pybin"]
NAIVE = [sys.executable, "-m", "pybin.bench.naive"]
TARGET_RATIO = 3.0


def make_capture(path: Path, template: Path, count: int) -> list[bytes]:
    """``count`` BIN packets in a classic Ethernet pcap; returns the distinct datagrams."""
    packets = [d.data for d in read_datagrams(template)]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    datagrams = []
    for i in range(count):
        msg = decode(packets[i % len(packets)])
        data = msg._replace(call_id=b"%d-%s" % (i // len(packets), msg.call_id)).encode()
        if i < len(packets):
            datagrams.append(data)
        udp = struct.pack(">HHHH", 5062, 5062, 8 + len(data), 0) + data
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0x4000, 64, 17, 0,
                         b"\x0a\x4d\x00\x0b", b"\x0a\x4d\x00\x0c") + udp
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_800_000_000 + i // 1000, (i % 1000) * 997, len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return datagrams


def _run(argv: list[str], stdin: Path | None, stdout: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process, its output to a file."""
    with open(stdin or os.devnull, "rb") as source, open(stdout, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=source, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"pybin.bench: {' '.join(argv[1:])} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _compare(label: str, count: int, repeats: int, runs: dict[str, tuple[list[str], Path | None]],
             work: Path) -> dict[str, Any]:
    """Run pybin and naive alternately; best wall and CPU time of each, and whether they agree."""
    best = {side: (float("inf"), float("inf")) for side in runs}
    for _ in range(repeats):
        for side, (argv, stdin) in runs.items():
            wall, cpu = _run(argv, stdin, work / f"{label}.{side}")
            best[side] = (min(best[side][0], wall), min(best[side][1], cpu))
    same = (work / f"{label}.pybin").read_bytes() == (work / f"{label}.naive").read_bytes()
    return _figures(count, best["pybin"], best["naive"], same)


def _figures(count: int, pybin: tuple[float, float], naive: tuple[float, float], same: bool) -> dict[str, Any]:
    return {
        "packets": count,
        "pybin_per_s": round(count / pybin[0]) if pybin[0] < float("inf") else 0,
        "naive_per_s": round(count / naive[0]) if naive[0] < float("inf") else 0,
        "ratio": round(naive[0] / pybin[0], 2),
        "cpu_ratio": round(naive[1] / pybin[1], 2) if 0 < pybin[1] < float("inf") else None,
        "same_output": same,
        "met": same and naive[0] / pybin[0] >= TARGET_RATIO,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listen_figures(datagrams: list[bytes], count: int, rate: float | None, repeats: int,
                   work: Path) -> dict[str, Any]:
    """``pybin listen --json`` and the naive listener, each with the same 32 MB receive
    buffer, ``count`` packets each, zero loss required, outputs compared.

    With no ``rate`` the listener is stopped (SIGSTOP) while the packets are offered
    as fast as one sending process goes, and timed from SIGCONT to its exit: its
    capacity, whatever the sender manages on a busy machine. With a ``rate`` the
    packets are offered live at that rate and timed from the first send.
    """
    best = {side: (float("inf"), float("inf")) for side in ("pybin", "naive")}
    lost = dict.fromkeys(best, 0)
    offered = []
    for _ in range(repeats):
        for side in best:
            port = _free_port()
            argv = (PYBIN + ["listen", f"127.0.0.1:{port}", "--json", "--count", str(count)]
                    if side == "pybin" else NAIVE + ["listen", str(port), str(count)])
            output = work / f"listen.{side}"
            with open(output, "wb") as sink:
                proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE)
            assert proc.stderr is not None
            proc.stderr.readline()  # "listening ...": the socket is bound
            if rate is None:
                proc.send_signal(signal.SIGSTOP)
            start = time.perf_counter()
            send_datagrams(("127.0.0.1", port), itertools.islice(itertools.cycle(datagrams), count), rate=rate)
            offered.append(count / (time.perf_counter() - start))
            if rate is None:
                start = time.perf_counter()
                proc.send_signal(signal.SIGCONT)
            # a listener that lost packets waits for ever: give it up after a generous while
            watchdog = threading.Timer(30 + count / 1000, proc.kill)
            watchdog.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            watchdog.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.stderr.close()
            lines = output.read_bytes().count(b"\n")
            lost[side] = max(lost[side], count - lines)
            if lines == count:
                cpu = usage.ru_utime + usage.ru_stime
                best[side] = (min(best[side][0], wall), min(best[side][1], cpu))
    same = (work / "listen.pybin").read_bytes() == (work / "listen.naive").read_bytes()
    figures = _figures(count, best["pybin"], best["naive"], same)
    figures.update(offered_per_s=round(min(offered)), target_rate=rate,
                   lost_pybin=lost["pybin"], lost_naive=lost["naive"])
    figures["met"] = figures["met"] and lost["pybin"] == 0
    return figures


def run(template: Path, count: int, listen_count: int, listen_rate: float | None, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pybin-bench-") as tmp:
        work = Path(tmp)
        capture = work / "capture.pcap"
        datagrams = make_capture(capture, template, count)
        text = _compare("text", count, repeats, {"pybin": (PYBIN + ["decode", str(capture)], None),
                                                  "naive": (NAIVE + ["decode", str(capture)], None)}, work)
        as_json = _compare("json", count, repeats, {"pybin": (PYBIN + ["decode", str(capture), "--json"], None),
                                                     "naive": (NAIVE + ["decode", str(capture), "--json"], None)}, work)
        lines = work / "json.pybin"
        encode = _compare("hex", count, repeats, {"pybin": (PYBIN + ["encode"], lines),
                                                   "naive": (NAIVE + ["encode"], lines)}, work)
        listen = listen_figures(datagrams, listen_count, listen_rate, repeats, work)
        return {
            "capture_bytes": capture.stat().st_size,
            "decode_text": text,
            "decode_json": as_json,
            "encode": encode,
            "listen_json": listen,
        }
