"""The relay figures of ``python -m pybin.bench``: ``pybin relay`` between a paced
sender and a receiver, beside the naive forwarder, in the same run.

Three processes, as a user runs it: a sender (its own process, so that it does not
share a GIL with anyone) paced at the target rate; the forwarder under test (``pybin
relay`` with no fault, the same with ``--log``, and the naive blocking
recvfrom/sendto loop of ``pybin.bench.naive``), each a subprocess started through its
command line; and the receiver, this process, counting what arrives. A packet counts
as delivered only if it reached the receiver; the forwarder's CPU time (getrusage of
the child) is given per packet, since on a busy machine wall time lies.

``python -m pybin.bench.relay`` prints these figures alone.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..endpoint import DEFAULT_RCVBUF, send_datagrams, set_rcvbuf
from ..pcap import read_datagrams
from .codec import TARGET_RATE, _kernel_rcvbuf_errors, find_capture

PYBIN = [sys.executable, "-m", "pybin"]
NAIVE = [sys.executable, "-m", "pybin.bench.naive"]
#: how long the receiver waits for one more packet once the sender has finished
SETTLE = 1.0


def _sender(addr: tuple[str, int], datagrams: list[bytes], count: int, pps: float, go: Any, report: Any) -> None:
    go.wait()
    start = time.perf_counter()
    send_datagrams(addr, itertools.islice(itertools.cycle(datagrams), count), rate=pps)
    report.put((start, time.perf_counter()))


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_forwarder(side: str, sink_port: int, work: Path) -> tuple[subprocess.Popen[bytes], int, Path | None]:
    """Start one forwarder; (process, the port it reads, its log or None)."""
    log = work / "relay.jsonl" if side == "pybin relay --log" else None
    if side == "naive":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = NAIVE + ["relay", str(port), str(sink_port)]
    else:
        argv = PYBIN + ["relay", "127.0.0.1:0", f"127.0.0.1:{sink_port}"] + (["--log", str(log)] if log else [])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    first = proc.stderr.readline().decode()  # bound: the forwarder says so
    if side != "naive":
        match = re.match(r"relaying 127\.0\.0\.1:(\d+) ", first)
        if not match:
            proc.kill()
            raise SystemExit(f"pybin.bench: pybin relay did not start: {first.strip()}")
        port = int(match[1])
    return proc, port, log


def forward_run(side: str, datagrams: list[bytes], count: int, pps: float, work: Path) -> dict[str, Any]:
    """Offer ``count`` datagrams at ``pps`` through one forwarder; count what arrives."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        rcvbuf = set_rcvbuf(sink, DEFAULT_RCVBUF)
        sink.bind(("127.0.0.1", 0))
        proc, port, log = _start_forwarder(side, sink.getsockname()[1], work)
        try:
            return _measure(proc, port, log, sink, side, datagrams, count, pps, rcvbuf)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _measure(proc: subprocess.Popen[bytes], port: int, log: Path | None, sink: socket.socket, side: str,
             datagrams: list[bytes], count: int, pps: float, rcvbuf: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    go, report = context.Event(), context.Queue()
    sender = context.Process(target=_sender, args=(("127.0.0.1", port), datagrams, count, pps, go, report),
                             daemon=True)
    sender.start()
    kernel_before = _kernel_rcvbuf_errors()
    cpu_before = _cpu_seconds(proc.pid)
    buffer = bytearray(65536)
    sink.settimeout(10.0)  # the sender starts after its imports: the first packet may take a while
    go.set()
    got = 0
    first = last = 0.0
    try:
        got += sink.recv_into(buffer) > 0
        first = last = time.perf_counter()
        sink.settimeout(SETTLE)
        while got < count:
            try:
                sink.recv_into(buffer)
            except TimeoutError:
                if not sender.is_alive():
                    break  # the sender is done and nothing came for a while: the rest is lost
                continue
            got += 1
            last = time.perf_counter()
    except TimeoutError:
        pass  # not even one packet
    sender.join(10)
    sent_from, sent_until = report.get(timeout=10)
    kernel_after = _kernel_rcvbuf_errors()
    cpu_after = _cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stderr is not None
    tail = proc.stderr.read().decode()
    proc.stderr.close()
    counters = re.search(r"relay: received (\d+), .* sent (\d+)", tail)
    forwarded = int(counters[1]) if counters else got
    busy = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    span = last - first
    return {
        "forwarder": side,
        "offered": count,
        "target_rate": pps,
        "offered_rate": round(count / (sent_until - sent_from)),
        "received_by_forwarder": int(counters[1]) if counters else None,
        "delivered": got,
        "lost": count - got,
        "delivered_rate": round((got - 1) / span) if span > 0 and got > 1 else 0,
        # the forwarder's CPU time while the traffic ran, per packet it read: what other
        # work on the machine does not inflate (wall-clock rates above are inflated)
        "cpu_us_per_packet": round(busy / forwarded * 1e6, 2) if busy is not None and forwarded else None,
        # ... and the rate that CPU cost allows on one core of its own
        "one_core_rate": round(forwarded / busy) if busy else None,
        # the whole process, start-up included
        "cpu_seconds_total": round(usage.ru_utime + usage.ru_stime, 3),
        "log_bytes_per_packet": round(log.stat().st_size / forwarded) if log is not None and log.exists()
        and forwarded else None,
        "kernel_rcvbuf_errors": (
            None if kernel_before is None or kernel_after is None else kernel_after - kernel_before
        ),
        "rcvbuf_bytes": rcvbuf,
    }


def run(seconds: float, pps: float = TARGET_RATE) -> dict[str, Any]:
    """Each forwarder at ``pps`` for ``seconds``; the relay must deliver every packet."""
    datagrams = [d.data for d in read_datagrams(find_capture())]
    count = int(pps * seconds)
    with tempfile.TemporaryDirectory(prefix="pybin-bench-relay-") as tmp:
        runs = [forward_run(side, datagrams, count, pps, Path(tmp))
                for side in ("naive", "pybin relay", "pybin relay --log")]
    plain = runs[1]
    # judged only when the sender managed the rate (on a busy machine it may not): then
    # no loss, and delivered at (within 5% of) the rate
    judged = plain["offered_rate"] >= pps * 0.95
    return {
        "runs": runs,
        "seconds": seconds,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "met": (plain["lost"] == 0 and plain["delivered_rate"] >= pps * 0.95) if judged else None,
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for fig in result["runs"]:
        label = "naive forwarder" if fig["forwarder"] == "naive" else fig["forwarder"]
        log = f", log {fig['log_bytes_per_packet']} B/packet" if fig["log_bytes_per_packet"] else ""
        target = f"{fig['target_rate']:,.0f} /s, lost 0" if fig["forwarder"] == "pybin relay" else "-"
        met = {True: "yes", False: "NO", None: "not judged: the sender fell short"}[result["met"]] \
            if fig["forwarder"] == "pybin relay" else "-"
        out.append((
            f"{label}, end to end",
            f"{fig['delivered']:,} of {fig['offered']:,} offered at {fig['offered_rate']:,} /s "
            f"(lost {fig['lost']:,}), delivered at {fig['delivered_rate']:,} /s; "
            f"CPU {fig['cpu_us_per_packet']} µs/packet = {fig['one_core_rate'] or 0:,} /s on a core of its own{log}",
            target,
            met,
        ))
    return out


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pybin.bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.seconds, args.rate)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for row in rows(result):
        print("  ".join(row))
    print(f"load average {result['load_average_1min']} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
