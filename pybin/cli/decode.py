"""``pybin decode FILE``: every BIN packet of a pcap/pcapng capture, one line (or JSON) each."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import PybinError
from ..jsonio import packet_json_line
from ..pcap import ReadCounts, bin_rows
from ..textio import packet_summary
from .common import EXIT_IO, CliError, Output, Tally, byte_order, order_flag, output_flags


def add_parser(sub: Any) -> None:
    p = sub.add_parser("decode", help="decode every BIN packet in a pcap/pcapng capture")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object per packet")
    output_flags(p)
    order_flag(p)
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    order = byte_order(args)
    as_json = args.json
    out = Output(args.line_buffered)
    tally = Tally(order) if args.stats else None
    counts = ReadCounts()
    places: dict[tuple[str, int, str, int], bytes] = {}
    try:
        for timestamp, src, sport, dst, dport, data, _ in bin_rows(args.file, counts):
            try:
                if as_json:
                    line = packet_json_line(data, order)
                else:
                    place = places.get((src, sport, dst, dport))
                    if place is None:
                        place = places[src, sport, dst, dport] = f" {src}:{sport} → {dst}:{dport} ".encode()
                    line = packet_summary(data, b"%.6f%s" % (timestamp, place), order)
            except PybinError as err:
                if tally is not None:
                    tally.drop(err)
                raise CliError(f"{args.file}: packet {counts.bin} ({src}:{sport} → {dst}:{dport}): {err}") from None
            out.line(line)
            if tally is not None:
                tally.packet(data)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror or err}", EXIT_IO) from None
    except PybinError as err:
        raise CliError(f"{args.file}: {err}") from None
    finally:
        if tally is not None:
            if counts.udp > counts.bin:
                tally.dropped["NOT_BIN"] += counts.udp - counts.bin
            tally.report()
    if not counts.bin:
        print(f"pybin: {args.file}: no BIN packets ({counts.udp} UDP datagrams, none starting with P4CK)",
              file=sys.stderr)
    return 0
