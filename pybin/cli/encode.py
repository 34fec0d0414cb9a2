"""``pybin encode`` and ``pybin send``: JSON lines on stdin to packets (hex, or datagrams)."""

from __future__ import annotations

import argparse
import socket
import sys
from binascii import hexlify
from typing import Any

from .common import (EXIT_IO, CliError, Output, byte_order, line_buffered_flag, order_flag,
                     packets_from_stdin, parse_hostport, socket_for)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("encode", help="JSON lines on stdin → packet hex per line")
    line_buffered_flag(p)
    order_flag(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("send", help="send packets given as JSON lines on stdin")
    p.add_argument("dest", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--source", type=parse_hostport, metavar="HOST:PORT", help="bind here first")
    order_flag(p)
    p.set_defaults(func=cmd_send)


def cmd_encode(args: argparse.Namespace) -> int:
    out = Output(args.line_buffered)
    for data in packets_from_stdin(byte_order(args)):
        out.line(hexlify(data))
    out.flush()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    host, port = args.dest
    sock = socket_for(*args.source, bind=True) if args.source else socket_for(host, port, False)
    sent = 0
    try:
        target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4]
        for data in packets_from_stdin(byte_order(args)):
            try:
                sock.sendto(data, target)
            except OSError as err:
                raise CliError(f"send to {host}:{port} failed: {err.strerror}", EXIT_IO) from None
            sent += 1
    finally:
        sock.close()
        print(f"sent {sent} packets to {host}:{port}", file=sys.stderr)
    return 0
