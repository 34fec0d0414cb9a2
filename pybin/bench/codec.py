"""The codec and endpoint figures of ``python -m pybin.bench``.

Decode and encode of a real created packet (the first of the shared 1.10.5 capture)
on one core, beside the naive script's struct-per-field decoder measured in the same
run, and the endpoint's receive rate under an offered load from a separate sender
process (so sender and receiver do not share a GIL), with zero loss required.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import dialog
from ..endpoint import BinEndpoint, send_datagrams
from ..pcap import read_datagrams
from ..wire import Packet
from . import naive

CAPTURE = "opensips-1.10.5-basic-calls.pcap"
TARGET_CODEC = 200_000
TARGET_RATE = 50_000


def find_capture() -> Path:
    """The capture ships in the repository's tests (run from a checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (
        here / "tests" / "corpus" / "vectors" / CAPTURE,
        Path.cwd() / "tests" / "corpus" / "vectors" / CAPTURE,
    ):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"pybin.bench: cannot find {CAPTURE} under tests/corpus/vectors/")


def first_created_packet() -> bytes:
    for datagram in read_datagrams(find_capture()):
        return datagram.data
    raise SystemExit(f"pybin.bench: {CAPTURE} holds no BIN packet")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: best of three runs of about ``seconds / 3`` each."""
    batch = 1000
    while True:  # size a batch to take ~20 ms
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        spent = time.perf_counter() - start
        if spent > 0.02:
            break
        batch *= 4
    per_run = max(1, int(batch * (seconds / 3) / spent))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.perf_counter() - start))
    return best


# -- the endpoint under load -------------------------------------------------------------


def _sender(addr: tuple[str, int], data: bytes, count: int, pps: float, go: Any, report: Any) -> None:
    go.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    send_datagrams(addr, (data for _ in range(count)), rate=pps)
    report.put((start, time.perf_counter()))


def _kernel_rcvbuf_errors() -> int | None:
    """UDP RcvbufErrors from /proc/net/snmp: datagrams the kernel dropped for us (or anyone)."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return None
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return None
    return int(udp[1][udp[0].index("RcvbufErrors")])


async def endpoint_run(data: bytes, count: int, pps: float, decode: bool) -> dict[str, Any]:
    """Offer ``count`` packets at ``pps`` from another process; count what arrives."""
    got = 0
    first = last = 0.0
    done = asyncio.get_running_loop().create_future()

    def on_packet(packet: Packet, source: object) -> None:
        nonlocal got, first, last
        if decode:
            dialog.decode_packet(packet)
        got += 1
        last = time.perf_counter()
        if got == 1:
            first = last
        if got == count and not done.done():
            done.set_result(None)

    async with BinEndpoint(("127.0.0.1", 0), tap=0) as endpoint:
        endpoint.register(dialog.MODULE_NAME, on_packet)
        context = multiprocessing.get_context("spawn")
        go = context.Event()
        report = context.Queue()
        proc = context.Process(
            target=_sender, args=(endpoint.address[:2], data, count, pps, go, report), daemon=True
        )
        proc.start()
        kernel_before = _kernel_rcvbuf_errors()
        await asyncio.sleep(0.5)  # let the child import before the clock starts
        go.set()
        loop = asyncio.get_running_loop()
        while not done.done():
            seen = got
            try:
                await asyncio.wait_for(asyncio.shield(done), 1.0)
            except TimeoutError:
                if got == seen and not proc.is_alive():
                    break  # sender finished and nothing arrived for a second: the rest is lost
        await loop.run_in_executor(None, proc.join, 10)
        sent_from, sent_until = report.get(timeout=10)
        kernel_after = _kernel_rcvbuf_errors()
        counters = endpoint.counters
        rcvbuf = endpoint.rcvbuf
    span = last - first
    return {
        "offered": count,
        "target_rate": pps,
        # what the sender really managed: on a busy machine it may fall short of the target
        "offered_rate": round(count / (sent_until - sent_from)),
        "received": got,
        "lost": count - got,
        "achieved_rate": round((got - 1) / span) if span > 0 else 0.0,
        # how long after the last send the last packet was handled: a backlog if large
        "lag_ms": round((last - sent_until) * 1000, 1),
        "decoded_in_callback": decode,
        "dropped": counters.dropped_total,
        "kernel_rcvbuf_errors": (
            None if kernel_before is None or kernel_after is None else kernel_after - kernel_before
        ),
        "rcvbuf_bytes": rcvbuf,
    }


def run(quick: bool, pps: float = TARGET_RATE, count: int | None = None) -> dict[str, Any]:
    """Codec rates and the endpoint under load: the figures before the end-to-end ones."""
    data = first_created_packet()
    message = dialog.decode(data)
    if message.encode() != data:
        raise SystemExit("pybin.bench: the sample packet does not re-encode byte-exact")
    seconds = 0.6 if quick else 3.0
    count = count or (20_000 if quick else 100_000)
    codec = {
        "packet_bytes": len(data),
        "compiled": dialog.COMPILED,
        "decode_per_s": round(rate(lambda: dialog.decode(data), seconds)),
        "encode_per_s": round(rate(message.encode, seconds)),
        "baseline_decode_per_s": round(rate(lambda: naive.decode(data), seconds)),
    }
    endpoint = asyncio.run(endpoint_run(data, count, pps, decode=False))
    extra = {}
    if not quick:
        extra["endpoint_decoding"] = asyncio.run(endpoint_run(data, count, pps, decode=True))
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        # other work on the machine steals the receiver's core: say how busy it was
        "load_average_1min": round(os.getloadavg()[0], 2),
        "codec": codec,
        "endpoint": endpoint,
        **extra,
        "targets": {"codec_per_s": TARGET_CODEC, "endpoint_rate": TARGET_RATE, "endpoint_lost": 0},
        "met": {
            "decode": codec["decode_per_s"] >= TARGET_CODEC,
            "encode": codec["encode_per_s"] >= TARGET_CODEC,
            # zero loss at (within 5% of) the target rate, offered and handled
            "endpoint": endpoint["lost"] == 0
            and min(endpoint["offered_rate"], endpoint["achieved_rate"]) >= pps * 0.95,
        },
    }
