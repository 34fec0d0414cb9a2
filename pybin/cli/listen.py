"""``pybin listen HOST:PORT``: decode live BIN packets as they arrive."""

from __future__ import annotations

import argparse
import select
import sys
import time
from typing import Any

from ..errors import PybinError
from ..jsonio import packet_json_line
from ..textio import packet_summary
from .common import Output, Tally, byte_order, order_flag, output_flags, parse_hostport, socket_for


def add_parser(sub: Any) -> None:
    p = sub.add_parser("listen", help="decode live packets arriving on HOST:PORT")
    p.add_argument("addr", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--count", type=int, help="stop after N packets")
    p.add_argument("--timeout", type=float, help="stop after S seconds")
    output_flags(p)
    order_flag(p)
    p.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace) -> int:
    from ..endpoint import DEFAULT_RCVBUF, set_rcvbuf

    host, port = args.addr
    sock = socket_for(host, port, bind=True)
    set_rcvbuf(sock, DEFAULT_RCVBUF)  # a burst must wait in the kernel, not be lost there
    sock.setblocking(False)
    order = byte_order(args)
    as_json = args.json
    out = Output(args.line_buffered)
    tally = Tally(order) if args.stats else None
    received = dropped = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    places: dict[Any, bytes] = {}
    recvfrom = sock.recvfrom
    print(f"listening on {host}:{port}", file=sys.stderr)
    try:
        while args.count is None or received < args.count:
            try:
                data, src = recvfrom(65535)
            except BlockingIOError:
                out.flush()  # idle: show what we have before waiting
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                continue
            try:
                if as_json:
                    line = packet_json_line(data, order)
                else:
                    place = places.get(src)
                    if place is None:
                        place = places[src] = f"{src[0]}:{src[1]} ".encode()
                    line = packet_summary(data, place, order)
            except PybinError as err:
                dropped += 1
                if tally is not None:
                    tally.drop(err)
                out.flush()
                print(f"{src[0]}:{src[1]}: dropped: {err}", file=sys.stderr)
                continue
            received += 1
            out.line(line)
            if tally is not None:
                tally.packet(data)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        out.flush()
        print(f"received {received} packets, dropped {dropped}", file=sys.stderr)
        if tally is not None:
            tally.report()
    return 0
