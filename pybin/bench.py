"""``python -m pybin.bench``: the codec and endpoint figures the README quotes.

Not a test: it prints measurements of this machine. Decode and encode of a real
created packet (the first of the shared 1.10.5 capture) on one core, beside a
straightforward struct-per-field decoder measured in the same run, and the
endpoint's receive rate under an offered load from a separate sender process (so
sender and receiver do not share a GIL), with zero loss required.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dialog
from .dialog import DIALOG_FIELDS, INT, PAIRS, decode_pairs
from .endpoint import BinEndpoint, send_datagrams
from .pcap import read_datagrams
from .wire import Packet

CAPTURE = "opensips-1.10.5-basic-calls.pcap"
TARGET_CODEC = 200_000
TARGET_RATE = 50_000


def _find_capture() -> Path:
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
    for datagram in read_datagrams(_find_capture()):
        return datagram.data
    raise SystemExit(f"pybin.bench: {CAPTURE} holds no BIN packet")


# -- the baseline: what one writes first -------------------------------------------------

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


def baseline_decode(data: bytes) -> dict[str, object]:
    """A straightforward decoder: header checks, then one struct.unpack_from per field."""
    if len(data) < 18 or data[:4] != b"P4CK":
        raise ValueError("not a BIN packet")
    if _U32.unpack_from(data, 4)[0] != ~zlib.crc32(data[8:]) & 0xFFFFFFFF:
        raise ValueError("bad checksum")
    offset = 8
    (name_len,) = _I32.unpack_from(data, offset)
    offset += 4
    module = data[offset : offset + name_len]
    offset += name_len
    (command,) = _I32.unpack_from(data, offset)
    offset += 4
    out: dict[str, object] = {"module": module, "command": command}
    for name, kind in DIALOG_FIELDS:
        if kind == INT:
            (out[name],) = _U32.unpack_from(data, offset)
            offset += 4
            continue
        (length,) = _I32.unpack_from(data, offset)
        offset += 4
        if length < 0 or offset + length > len(data):
            raise ValueError(f"{name} runs past the end")
        raw = data[offset : offset + length]
        offset += length
        out[name] = decode_pairs(raw) if kind == PAIRS else raw
    return out


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


# -- report ------------------------------------------------------------------------------


def run(quick: bool, pps: float = TARGET_RATE, count: int | None = None) -> dict[str, Any]:
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
        "baseline_decode_per_s": round(rate(lambda: baseline_decode(data), seconds)),
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


def _endpoint_rows(label: str, ep: dict[str, Any], met: str) -> list[tuple[str, str, str, str]]:
    return [
        (f"{label}: offered", f"{ep['offered']:,} at {ep['offered_rate']:,} /s", f"{ep['target_rate']:,.0f} /s", "-"),
        (f"{label}: received", f"{ep['received']:,} (lost {ep['lost']:,})", "lost 0", met),
        (f"{label}: handled rate", f"{ep['achieved_rate']:,} /s", f"{ep['target_rate']:,.0f} /s", met),
    ]


def table(result: dict[str, Any]) -> str:
    codec, met = result["codec"], result["met"]
    ok = {True: "yes", False: "NO"}
    rows = [
        ("measure", "figure", "target", "met"),
        ("decode (created packet)", f"{codec['decode_per_s']:,} /s", f"{TARGET_CODEC:,} /s", ok[met["decode"]]),
        ("encode (created packet)", f"{codec['encode_per_s']:,} /s", f"{TARGET_CODEC:,} /s", ok[met["encode"]]),
        ("baseline struct-per-field decode", f"{codec['baseline_decode_per_s']:,} /s", "-", "-"),
    ]
    rows += _endpoint_rows("endpoint, counting", result["endpoint"], ok[met["endpoint"]])
    decoding = result.get("endpoint_decoding")
    if decoding:
        rows += _endpoint_rows("endpoint, decoding", decoding, "-")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ep = result["endpoint"]
    lines.append("")
    lines.append(
        f"compiled codec: {'yes' if codec['compiled'] else 'no (pure Python)'}; "
        f"packet {codec['packet_bytes']} bytes; Python {result['python']}, {result['cpus']} CPUs, "
        f"load average {result['load_average_1min']} at the end"
    )
    lines.append(
        f"endpoint: sender in another process; SO_RCVBUF {ep['rcvbuf_bytes']:,} bytes; "
        f"last packet handled {ep['lag_ms']} ms after the last send; "
        f"kernel UDP RcvbufErrors during the run: {ep['kernel_rcvbuf_errors']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybin.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="a short run (seconds, not tens)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="packets/s offered to the endpoint")
    parser.add_argument("--count", type=int, help="packets offered (default 100000, 20000 with --quick)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or (args.count is not None and args.count < 2):
        parser.error("--rate must be positive and --count at least 2")
    result = run(args.quick, args.rate, args.count)
    try:
        print(json.dumps(result, indent=2) if args.json else table(result), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        sys.stdout = None  # type: ignore[assignment]
    return 0


if __name__ == "__main__":
    sys.exit(main())
