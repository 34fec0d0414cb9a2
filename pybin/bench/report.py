"""``python -m pybin.bench``: the figures the README quotes, as a table or JSON.

Not a test: it prints measurements of this machine — the codec, the endpoint under
load, the command line end to end beside the naive script (``pybin.bench.naive``), and
``pybin relay`` forwarding at the endpoint's target rate beside the naive forwarder.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import codec, e2e, relay
from .codec import TARGET_CODEC
from .e2e import TARGET_RATIO

OK = {True: "yes", False: "NO"}
E2E_LABELS = {
    "decode_text": "pybin decode",
    "decode_json": "pybin decode --json",
    "encode": "pybin encode",
    "listen_json": "pybin listen --json",
}


def _endpoint_rows(label: str, ep: dict[str, Any], met: str) -> list[tuple[str, str, str, str]]:
    return [
        (f"{label}: offered", f"{ep['offered']:,} at {ep['offered_rate']:,} /s", f"{ep['target_rate']:,.0f} /s", "-"),
        (f"{label}: received", f"{ep['received']:,} (lost {ep['lost']:,})", "lost 0", met),
        (f"{label}: handled rate", f"{ep['achieved_rate']:,} /s", f"{ep['target_rate']:,.0f} /s", met),
    ]


def _e2e_rows(e2e: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, label in E2E_LABELS.items():
        fig = e2e[key]
        cpu = f", CPU {fig['cpu_ratio']}x" if fig.get("cpu_ratio") else ""
        lost = f", lost {fig['lost_pybin']:,} / {fig['lost_naive']:,}" if "lost_pybin" in fig else ""
        same = "" if fig["same_output"] else ", OUTPUT DIFFERS"
        rows.append((
            f"{label}, end to end",
            f"{fig['pybin_per_s']:,} /s vs naive {fig['naive_per_s']:,} /s = {fig['ratio']}x{cpu}{lost}{same}",
            f">= {TARGET_RATIO:g}x naive",
            OK[fig["met"]],
        ))
    return rows


def table(result: dict[str, Any]) -> str:
    codec, met = result["codec"], result["met"]
    ok = OK
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
    e2e = result.get("end_to_end")
    if e2e:
        rows += _e2e_rows(e2e)
    forwarding = result.get("relay")
    if forwarding:
        rows += relay.rows(forwarding)
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
    if e2e:
        listen = e2e["listen_json"]
        lines.append(
            f"end to end: {e2e['decode_json']['packets']:,} packets ({e2e['capture_bytes']:,}-byte capture), "
            f"each side its own process, best of {e2e['repeats']}, naive = python -m pybin.bench.naive; "
            f"listen: {listen['packets']:,} packets offered at {listen['offered_per_s']:,} /s"
        )
    if forwarding:
        lines.append(
            f"relay: {forwarding['seconds']:g} s at {forwarding['runs'][0]['target_rate']:,.0f} /s from a sender "
            "process through each forwarder process (no fault) to a receiver, one after the other; "
            "naive = python -m pybin.bench.naive relay (blocking recv/sendto); "
            f"load average {forwarding['load_average_1min']} after it"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybin.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="a short run (seconds, not minutes)")
    parser.add_argument("--rate", type=float, default=codec.TARGET_RATE, help="packets/s offered to the endpoint")
    parser.add_argument("--count", type=int, help="packets offered to the endpoint (default 100000, 20000 with --quick)")
    parser.add_argument("--capture-packets", type=int, help="packets in the end-to-end capture (default 100000, 20000 with --quick)")
    parser.add_argument("--listen-count", type=int, default=20_000, help="packets offered to each listener (default 20000)")
    parser.add_argument("--listen-rate", type=float, help="packets/s offered to the listeners (default: as fast as one sender goes)")
    parser.add_argument("--no-end-to-end", action="store_true", help="only the codec and endpoint figures")
    parser.add_argument("--relay-seconds", type=float,
                        help="seconds of traffic through each relay at --rate (default 4, 1 with --quick)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or (args.count is not None and args.count < 2) or (args.listen_rate or 1) <= 0:
        parser.error("rates must be positive and --count at least 2")
    result = codec.run(args.quick, args.rate, args.count)
    if not args.no_end_to_end:
        repeats = 2 if args.quick else 3
        packets = args.capture_packets or (20_000 if args.quick else 100_000)
        figures = e2e.run(codec.find_capture(), packets, args.listen_count, args.listen_rate, repeats)
        result["end_to_end"] = {**figures, "repeats": repeats}
        result["met"].update({f"end_to_end_{key}": figures[key]["met"] for key in E2E_LABELS})
        result["relay"] = relay.run(args.relay_seconds or (1.0 if args.quick else 4.0), args.rate)
        result["met"]["relay"] = result["relay"]["met"]
    try:
        print(json.dumps(result, indent=2) if args.json else table(result), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        sys.stdout = None  # type: ignore[assignment]
    return 0
