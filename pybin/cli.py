"""The ``pybin`` command line: decode captures, encode and send JSON lines, listen live.

Every failure is one line on stderr and a non-zero exit; whatever was already decoded
or sent before the failure has been written out (stdout is flushed per packet).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from . import __version__
from .errors import PybinError
from .jsonio import packet_from_json, packet_to_json
from .pcap import read_datagrams
from .textio import summary_line  # harness.capture still imports it from here
from .wire import ByteOrder

EXIT_BAD_INPUT = 2
EXIT_IO = 3


class CliError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _order(args: argparse.Namespace) -> ByteOrder:
    return ByteOrder.BIG if args.big_endian else ByteOrder.LITTLE


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as the endpoint reads it; port 0 means nothing here."""
    from .endpoint import EndpointError, parse_address  # asyncio: only for commands with addresses

    try:
        host, port = parse_address(value)
    except EndpointError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 in {value!r}: give a real port")
    return host, port


def _emit(obj: dict[str, Any], as_json: bool, out: TextIO, prefix: str = "") -> None:
    out.write((json.dumps(obj) if as_json else summary_line(obj, prefix)) + "\n")
    out.flush()


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        datagrams = read_datagrams(args.file)
        for index, item in enumerate(datagrams, 1):
            try:
                obj = packet_to_json(item.data, _order(args))
            except PybinError as err:
                raise CliError(
                    f"{args.file}: packet {index} ({item.src[0]}:{item.src[1]} → "
                    f"{item.dst[0]}:{item.dst[1]}): {err}"
                ) from None
            prefix = f"{item.timestamp:.6f} {item.src[0]}:{item.src[1]} → {item.dst[0]}:{item.dst[1]} "
            _emit(obj, args.json, sys.stdout, prefix)
    except BrokenPipeError:
        raise
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror or err}", EXIT_IO) from None
    except PybinError as err:
        raise CliError(f"{args.file}: {err}") from None
    return 0


def _json_lines(stream: TextIO) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise CliError(f"line {number}: not JSON: {err.msg} at column {err.colno}") from None


def _packets_from_stdin(order: ByteOrder) -> Iterator[bytes]:
    for number, obj in _json_lines(sys.stdin):
        try:
            yield packet_from_json(obj, order)
        except PybinError as err:
            raise CliError(f"line {number}: {err}") from None


def cmd_encode(args: argparse.Namespace) -> int:
    for data in _packets_from_stdin(_order(args)):
        sys.stdout.write(data.hex() + "\n")
        sys.stdout.flush()
    return 0


def _socket_for(host: str, port: int, bind: bool) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as err:
        raise CliError(f"{host}: {err.strerror}", EXIT_IO) from None
    sock = socket.socket(info[0], socket.SOCK_DGRAM)
    if bind:
        try:
            sock.bind(info[4])
        except OSError as err:
            sock.close()
            raise CliError(f"cannot listen on {host}:{port}: {err.strerror}", EXIT_IO) from None
    return sock


def cmd_send(args: argparse.Namespace) -> int:
    host, port = args.dest
    sock = _socket_for(*args.source, bind=True) if args.source else _socket_for(host, port, False)
    sent = 0
    try:
        target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4]
        for data in _packets_from_stdin(_order(args)):
            try:
                sock.sendto(data, target)
            except OSError as err:
                raise CliError(f"send to {host}:{port} failed: {err.strerror}", EXIT_IO) from None
            sent += 1
    finally:
        sock.close()
        print(f"sent {sent} packets to {host}:{port}", file=sys.stderr)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    host, port = args.addr
    sock = _socket_for(host, port, bind=True)
    order = _order(args)
    received = dropped = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    print(f"listening on {host}:{port}", file=sys.stderr)
    try:
        while args.count is None or received < args.count:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
            try:
                data, src = sock.recvfrom(65535)
            except TimeoutError:
                break
            try:
                obj = packet_to_json(data, order)
            except PybinError as err:
                dropped += 1
                print(f"{src[0]}:{src[1]}: dropped: {err}", file=sys.stderr)
                continue
            received += 1
            _emit(obj, args.json, sys.stdout, f"{src[0]}:{src[1]} ")
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        print(f"received {received} packets, dropped {dropped}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pybin", description="OpenSIPS 1.10 Binary Internal Interface tools"
    )
    parser.add_argument("--version", action="version", version=f"pybin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def order_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--big-endian", action="store_true", help="integers in big-endian order (big-endian senders)"
        )

    p = sub.add_parser("decode", help="decode every BIN packet in a pcap/pcapng capture")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object per packet")
    order_flag(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("encode", help="JSON lines on stdin → packet hex per line")
    order_flag(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("listen", help="decode live packets arriving on HOST:PORT")
    p.add_argument("addr", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--count", type=int, help="stop after N packets")
    p.add_argument("--timeout", type=float, help="stop after S seconds")
    order_flag(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("send", help="send packets given as JSON lines on stdin")
    p.add_argument("dest", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--source", type=parse_hostport, metavar="HOST:PORT", help="bind here first")
    order_flag(p)
    p.set_defaults(func=cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as err:
        sys.stdout.flush()
        print(f"pybin: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: not an error, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
